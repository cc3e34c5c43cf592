"""benchmarks/data_size_curve.py: routing's effect at each training fraction from the run
records of one study per fraction (records written as the study child writes them)."""

import json
import statistics
import sys
from pathlib import Path

import pytest
import yaml
from study_records import fold_record

from cifar_moe.runs.study.plan import plan
from cifar_moe.runs.study.spec import load_study
from cifar_moe.runs.study.stats import t_quantile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import data_size_curve  # noqa: E402

# 8 validation images per fold; (routed, static) correctness by fraction and fold
BITS = {
    0.25: {6: ("11000000", "11100000"), 7: ("11110000", "11110000"), 8: ("10000000", "11100000")},
    1.0: {6: ("11111100", "11110000"), 7: ("11111110", "11111100"), 8: ("11111000", "11111000"),
          9: ("11111111", "11110000")},
}


def write_study(folder: Path, fraction: float, folds=(6, 7, 8, 9), seeds=(0,)) -> Path:
    args = [] if fraction == 1.0 else [f"--data.train_fraction={fraction}"]
    spec = {"data": {"data_dir": str(folder)}, "folds": list(folds), "seeds": list(seeds),
            "args": args, "metric": "final_val_acc", "reference": "static_flops",
            "primary": "routed", "out": str(folder / f"out{fraction}"),
            "rows": [{"name": "routed", "configs": ["configs/slice.yaml"]},
                     {"name": "static_flops", "configs": ["configs/slice.yaml"]}]}
    path = folder / f"study{fraction}.yaml"
    path.write_text(yaml.safe_dump(spec))
    for run in plan(load_study(path)):
        bits = BITS[fraction].get(run.fold) if run.seed == 0 else None
        if bits or run.seed:  # fold 9 at 25 %: not run yet; seed 1: all wrong
            bits = bits or ("00000000", "11111111")
            run.folder.mkdir(parents=True)
            record = fold_record(bits[0] if run.row.name == "routed" else bits[1])
            (run.folder / "result.json").write_text(json.dumps(record))
    return path


def test_each_fraction_pairs_its_finished_folds_and_the_trend_pairs_the_common_ones(
        tmp_path, capsys):
    paths = [write_study(tmp_path, 1.0), write_study(tmp_path, 0.25)]  # any order
    data_size_curve.main([str(p) for p in paths])
    lines = capsys.readouterr().out.splitlines()
    d25 = [-1 / 8, 0.0, -2 / 8]
    d100 = [2 / 8, 1 / 8, 0.0, 4 / 8]
    half25 = t_quantile(0.975, 2) * statistics.stdev(d25) / 3 ** 0.5
    assert lines[0] == (
        f"25 % of the data: routed {100 * 7 / 24:.1f} %, static_flops {100 * 10 / 24:.1f} %, "
        f"difference {100 * statistics.fmean(d25):+.1f} points "
        f"[{100 * (statistics.fmean(d25) - half25):+.1f}, "
        f"{100 * (statistics.fmean(d25) + half25):+.1f}] (3 pairs)")
    assert lines[1].startswith(f"100 % of the data: routed {100 * 26 / 32:.1f} %")
    assert lines[1].endswith("(4 pairs)")
    change = [b - a for a, b in zip(d25, d100[:3], strict=True)]  # fold 9 has no 25 % pair
    half = t_quantile(0.975, 2) * statistics.stdev(change) / 3 ** 0.5
    low, high = statistics.fmean(change) - half, statistics.fmean(change) + half
    verdict = "grows" if low > 0 else "shrinks" if high < 0 else "no trend detectable"
    assert lines[2] == (f"trend: d100 - d25 {100 * statistics.fmean(change):+.1f} points, 95 % "
                        f"CI [{100 * low:+.1f}, {100 * high:+.1f}] (3 folds): {verdict}")


def test_the_pairs_are_those_every_study_plans_whatever_the_order(tmp_path, capsys):
    # the whole study (folds 0-9 x seeds 0-1) first: its extra pairs stay out of the curve
    paths = [write_study(tmp_path, 1.0, folds=range(10), seeds=(0, 1)),
             write_study(tmp_path, 0.25)]
    data_size_curve.main([str(p) for p in paths])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("(3 pairs)")
    assert lines[1].startswith(f"100 % of the data: routed {100 * 26 / 32:.1f} %")
    assert lines[1].endswith("(4 pairs)")


def test_one_pair_says_its_interval_is_the_image_floor(tmp_path, capsys):
    paths = [write_study(tmp_path, 1.0, folds=(9,)), write_study(tmp_path, 0.25)]
    data_size_curve.main([str(p) for p in paths])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "25 % of the data: no pair finished yet"
    assert lines[1].endswith("(1 pair: image floor only)")


def test_two_studies_of_one_fraction_are_one_line(tmp_path):
    (tmp_path / "again").mkdir()
    paths = [write_study(tmp_path, 1.0), write_study(tmp_path / "again", 1.0)]
    with pytest.raises(SystemExit) as info:
        data_size_curve.main([str(p) for p in paths])
    assert str(info.value) == ("give one study per training fraction, at least two "
                               "(got fractions 1, 1)")
