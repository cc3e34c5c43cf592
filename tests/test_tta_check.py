"""benchmarks/tta_check.py: an evaluation-only candidate scored on the same checkpoints as the
incumbent (docs/protocols/selection.md). A real tiny fold study, then the check on its runs:
the incumbent's scoring reproduces each run's recorded accuracy, the paired gain is the
hand-computed mean of the per-fold differences, and each run's scores are saved beside its
record, so the check pools them once the checkpoints are gone (a fresh clone)."""

import re
import statistics
import sys
from pathlib import Path

import pytest
import yaml
from tiny_run import TINY_NET

from cifar_moe.cli.study import main as study_main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import tta_check  # noqa: E402

FOLD_LINE = re.compile(r"fold (\d) \(fold\d-seed0\): flip ([\d.]+) %, flip_translate ([\d.]+) %")
LAST = re.compile(r"flip_translate - flip: ([+-][\d.]+) points, SE ([\d.]+), "
                  r"95 % CI .* \((\d) folds\); adopt: (yes|no); validate ")


@pytest.mark.slow
def test_the_check_rescores_each_run_and_pairs_the_two_ways(synthetic_data_dir, tmp_path,
                                                            capsys):
    data = {"data_dir": str(synthetic_data_dir), "num_folds": 5, "num_workers": 0,
            "batch_size": 32, "eval_batch_size": 100}
    spec = {"data": data, "seeds": [0], "folds": [0, 1, 2, 3, 4], "out": str(tmp_path / "out"),
            "args": [*TINY_NET, "--trainer.max_epochs=2", "--trainer.accelerator=cpu",
                     "--model.tta=flip"],
            "rows": [{"name": "quick", "configs": [str(ROOT / "configs" / "quickstart.yaml")]}]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert study_main([str(path), "--jobs", "2"]) == 0
    row = tmp_path / "out" / "runs" / "quick"
    before = sorted(row.rglob("*"))
    capsys.readouterr()  # the study's own lines
    tta_check.main([str(row)])
    out = [line for line in capsys.readouterr().out.splitlines()
           if line.startswith(("fold ", "flip_translate - flip"))]
    saved = sorted(row.glob(f"*/{tta_check.RECORD}"))
    assert sorted(row.rglob("*")) == sorted(before + saved)  # nothing else written
    assert len(saved) == 5
    folds = [FOLD_LINE.fullmatch(line) for line in out[:-1]]
    assert all(folds), out  # no line says the rescoring differs from the recorded accuracy
    assert [int(f[1]) for f in folds] == [0, 1, 2, 3, 4]
    diffs = [float(f[3]) - float(f[2]) for f in folds]
    last = LAST.match(out[-1])
    assert last, out[-1]
    assert float(last[1]) == pytest.approx(statistics.fmean(diffs), abs=0.011)
    assert float(last[2]) == pytest.approx(statistics.stdev(diffs) / 5 ** 0.5, abs=0.011)
    assert last[3] == "5"
    mean, se = statistics.fmean(diffs), statistics.stdev(diffs) / 5 ** 0.5
    assert last[4] == ("yes" if mean > 2 * se else "no")
    for ckpt in row.rglob("*.ckpt"):  # a fresh clone: the records, no checkpoints
        ckpt.unlink()
    tta_check.main([str(row)])
    again = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith(("fold ", "flip_translate - flip"))]
    assert [line.replace(f" (from {tta_check.RECORD})", "") for line in again[:-1]] == out[:-1]
    assert all(line.endswith(f"(from {tta_check.RECORD})") for line in again[:-1])
    assert again[-1].split("; validate")[0] == out[-1].split("; validate")[0]


def test_folds_7_to_9_never_select(tmp_path):
    run = tmp_path / "fold8-seed0"
    (run / "lightning_logs/g/seed0-1/checkpoints").mkdir(parents=True)
    (run / "lightning_logs/g/seed0-1/checkpoints/last.ckpt").write_bytes(b"")
    (run / "result.json").write_text('{"final_val_acc": 0.5}')
    (run / "inputs.json").write_text('{"args": ["--data.val_fold=8"]}')
    assert tta_check.run_parts(run)[0] == 8
    with pytest.raises(SystemExit, match="no finished run on folds 0-6"):
        tta_check.main([str(tmp_path)])


def test_a_record_that_is_not_the_fits_evaluation_is_shown_and_left_out(tmp_path, capsys):
    # two runs with saved scores and no checkpoint; fold 1's record is from another fit
    for fold, recorded, flip, candidate in ((0, 0.5, 0.5, 0.75), (1, 0.625, 0.5, 0.25)):
        run = tmp_path / f"fold{fold}-seed0"
        run.mkdir()
        (run / "result.json").write_text(f'{{"final_val_acc": {recorded}}}')
        (run / "inputs.json").write_text(f'{{"args": ["--data.val_fold={fold}"]}}')
        (run / tta_check.RECORD).write_text(
            f'{{"fold": {fold}, "acc": {{"flip": {flip}, "flip_translate": {candidate}}}, '
            '"seconds": {"flip": 1.0, "flip_translate": 2.0}}')
    tta_check.main([str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("fold 0 (fold0-seed0): flip 50.00 %, flip_translate 75.00 % "
                      f"(from {tta_check.RECORD})")
    assert out[1].endswith("(recorded 62.50 %: NOT the fit's evaluation, left out)")
    assert out[2].startswith("flip_translate - flip: +25.00 points, SE nan, no interval (1 folds)")
