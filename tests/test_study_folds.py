"""Fold studies: each run is one (row, fold, seed) validated on its fold; the table's means,
95 % CIs, paired differences to the reference row, image floors and Holm p-values, checked
against sums done by hand; ``--folds`` reports a subset beside the whole study."""

import json
from pathlib import Path

import pytest
import yaml
from study_records import fold_record, scored_test_tags
from tiny_run import TINY_NET

from cifar_moe.cli.study import main
from cifar_moe.data.folds import fold_split
from cifar_moe.runs.study.plan import NO_TEST, child_command, inputs_of, plan
from cifar_moe.runs.study.report import results_names
from cifar_moe.runs.study.spec import load_study
from cifar_moe.runs.study.stats import unpack_bits

QUICK = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")


def _write(folder: Path, rows: list[dict], **top) -> Path:
    spec = {"data": {"data_dir": str(folder / "data"), "val_size": 40}, "seeds": [0, 1],
            "folds": [0, 1], "out": str(folder / "out"), "rows": rows, **top}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# --- the YAML and the plan -------------------------------------------------------------


def test_each_run_is_a_row_at_a_fold_and_a_seed(tmp_path):
    path = _write(tmp_path, [
        {"name": "ref", "configs": [QUICK]},
        {"name": "few", "configs": [QUICK], "folds": [1, 2], "seeds": [0],
         "args": ["--data.train_fraction=0.25"]}])
    study = load_study(path)
    runs = plan(study)  # seed by seed, fold by fold: whole folds of all rows first
    assert [(r.row.slug, r.fold, r.seed) for r in runs] == [
        ("ref", 0, 0), ("ref", 1, 0), ("few", 1, 0), ("few", 2, 0), ("ref", 0, 1),
        ("ref", 1, 1)]
    assert runs[2].folder == study.out / "runs" / "few" / "fold1-seed0"
    tail = child_command(study, runs[2], None)
    tail = tail[tail.index("--") + 1:]
    # the row's own args, then the fold and the seed, forced last
    assert tail[-4:] == ["--data.train_fraction=0.25", "--data.val_fold=1",
                         "--seed_everything=0", "--trainer.enable_progress_bar=false"]
    # the fold is one of the run's recorded inputs: fold 1's run is not fold 2's
    assert inputs_of(study, runs[2])["args"] != inputs_of(study, runs[3])["args"]


def test_a_study_without_folds_keeps_its_seed_folders(tmp_path):
    path = _write(tmp_path, [{"name": "ref", "configs": [QUICK]}])
    spec = yaml.safe_load(path.read_text())
    del spec["folds"]
    path.write_text(yaml.safe_dump(spec))
    study = load_study(path)
    assert [r.folder.name for r in plan(study)] == ["seed0", "seed1"]
    assert not study.analysed and study.primary_metric == "test_acc"
    assert all("--data.val_fold" not in a for a in child_command(study, plan(study)[0], None))


BAD = {
    "fold out of range": ({"folds": [0, 10]}, "folds: expected a non-empty list of distinct "
                          "fold numbers from 0 to 9 (data.num_folds = 10)"),
    "duplicate fold": ({"folds": [1, 1]}, "folds: expected a non-empty list of distinct"),
    "fold of num_folds": ({"data": {"num_folds": 3}, "folds": [3]}, "from 0 to 2"),
    "val_fold in data": ({"data": {"val_fold": 2}}, "data val_fold: each run gets its fold"),
    "val_fold in row args": ({"row_args": ["--data.val_fold=3"]},
                             "rows[0] args: each run gets --data.val_fold from folds"),
    "val_fold flag without its value": ({"row_args": ["--data.val_fold"]},
                                        "rows[0] args: each run gets --data.val_fold from folds"),
    "unknown metric": ({"metric": "val_loss"}, "metric: 'val_loss' is not one of "
                       "final_val_acc, best_val_acc, test_acc"),
    "unknown reference": ({"reference": "nope"}, "reference: 'nope' is not a row; use one "
                          "of 'ref'"),
    "primary without reference": ({"primary": "ref"}, "primary: needs a reference row"),
    "primary is the reference": ({"reference": "ref", "primary": "ref"},
                                 "primary: 'ref' is the reference row"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_fold_settings_are_one_line(case, tmp_path, capsys):
    change, expected = BAD[case]
    row = {"name": "ref", "configs": [QUICK], "args": change.pop("row_args", [])}
    path = _write(tmp_path, [row])
    spec = yaml.safe_load(path.read_text())
    spec["data"].update(change.pop("data", {}))
    spec.update(change)
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SystemExit) as info:
        main([str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and expected in err[0], err
    assert err[0].startswith("error: study.yaml")
    assert not (tmp_path / "out").exists()


# --- the statistics, from run records written by hand ------------------------------------

# Four validation images per fold; each string is one run's per-image correctness.
REF = {(0, 0): "1100", (0, 1): "1110", (1, 0): "1000", (1, 1): "1100"}  # 0.5 .75 .25 .5
NEW = {(0, 0): "1110", (0, 1): "1111", (1, 0): "1100", (1, 1): "1000"}  # .75 1 .5 .25
ALT = {(1, 0): "1110", (1, 1): "1101"}  # .75 .75, on fold 1 only


def _hand_study(folder: Path) -> Path:
    path = _write(folder, [
        {"name": "ref", "configs": [QUICK]}, {"name": "new", "configs": [QUICK]},
        {"name": "alt", "configs": [QUICK], "folds": [1]},
        {"name": "alt2", "configs": [QUICK]}], reference="ref", primary="new")
    for slug, runs, minutes in (("ref", REF, 1.0), ("new", NEW, 2.0), ("alt", ALT, 1.0),
                                ("alt2", NEW, 2.0)):
        for (fold, seed), bits in runs.items():
            run = folder / "out" / "runs" / slug / f"fold{fold}-seed{seed}"
            run.mkdir(parents=True)
            (run / "result.json").write_text(json.dumps(fold_record(bits, minutes * 60)))
    return path


def test_cis_and_paired_differences_match_a_hand_calculation(tmp_path):
    assert main([str(_hand_study(tmp_path)), "--render"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["metric"] == "final_val_acc" and results["reference"] == "ref"
    rows = {row["name"]: row["stats"] for row in results["rows"]}
    t3, t1 = 3.182446, 12.706205  # t(0.975) on 3 and on 1 degrees of freedom
    # new: 0.75 1 .5 .25 -> mean .625, sd sqrt(.3125 / 3) = .322749
    new = rows["new"]
    assert new["n"] == 4 and new["mean"] == 0.625
    assert new["half_width"] == pytest.approx(t3 * 0.322749 / 2, abs=1e-6)
    # floor: 8 distinct images (2 folds x 4; seeds rerun them): 1.96 sqrt(.625 .375 / 8)
    assert new["image_floor"] == pytest.approx(
        {"images": 8, "se": 0.171163, "half_width": 0.335474}, abs=1e-6)
    assert new["fit_minutes_mean"] == 2.0 and new["acc_pct_per_minute"] == 31.25
    # new - ref over 4 pairs: .25 .25 .25 -.25 -> mean .125, sd .25, t = 1, p = .391002
    diff = new["vs_reference"]
    assert (diff["n"], diff["mean"], diff["sd"]) == (4, 0.125, 0.25)
    assert (diff["low"], diff["high"]) == pytest.approx((0.125 - t3 * 0.125,
                                                         0.125 + t3 * 0.125), abs=1e-6)
    assert diff["p"] == pytest.approx(0.391002, abs=1e-6) and diff["p_holm"] is None
    # per image, averaged over seeds: fold 0 (0 0 .5 .5), fold 1 (0 0 0 0): mean .125,
    # mean square .0625 -> SE sqrt((.0625 - .015625) / 8) = .076547, x 1.96 = .150028
    assert diff["image_floor"]["half_width"] == pytest.approx(0.150028, abs=1e-6)
    # alt - ref on fold 1's two seeds only: .5 .25 -> mean .375, sd .176777, t = 3 on 1 df
    alt = rows["alt"]["vs_reference"]
    assert alt["pairs"] == [[1, 0], [1, 1]] and alt["mean"] == 0.375
    assert alt["half_width"] == pytest.approx(t1 * 0.176777 / 2 ** 0.5, abs=1e-5)
    assert alt["p"] == pytest.approx(0.204833, abs=1e-6)  # 1 - 2 atan(3) / pi
    # e = (0 .5 .5 .5): SE sqrt((.1875 - .140625) / 4) = .108253, x 1.96 = .212172
    assert alt["image_floor"]["half_width"] == pytest.approx(0.212172, abs=1e-6)
    # Holm over the two secondary rows: .204833 x 2 = .409666, then max(.409666, .391002)
    assert alt["p_holm"] == pytest.approx(0.409666, abs=1e-6)
    assert rows["alt2"]["vs_reference"]["p_holm"] == pytest.approx(0.409666, abs=1e-6)
    assert "vs_reference" not in rows["ref"]
    table = (tmp_path / "out" / "results.md").read_text()
    assert ("| new | 4 | 62.5 | [11.1, 113.9] | +/- 33.5 | +12.5 | [-27.3, +52.3] | +/- 15.0 "
            "| 4 | 0.391 | (primary) | 2.0 | 31.25 |") in table
    assert ("| alt | 2 | 75.0 | [75.0, 75.0] | +/- 42.4 | +37.5 | [-121.3, +196.3] | +/- 21.2 "
            "| 2 | 0.205 | 0.410 | 1.0 | 75.00 |") in table
    assert "| ref | 4 | 50.0 | [17.5, 82.5] | +/- 34.6 | reference |" in table
    assert "f0 s0: 50.0, f1 s0: 50.0, f0 s1: 50.0, f1 s1: 50.0" in table  # per-run test acc


def test_folds_option_reports_a_subset_beside_the_whole_study(tmp_path, capsys):
    path = _hand_study(tmp_path)
    out = tmp_path / "out"
    assert main([str(path), "--render"]) == 0
    whole = (out / "results.md").read_bytes()
    assert main([str(path), "--render", "--folds", "1"]) == 0
    assert (out / "results.md").read_bytes() == whole  # the whole study's table stays
    subset = json.loads((out / "results_folds1.json").read_text())
    new = next(row for row in subset["rows"] if row["name"] == "new")["stats"]
    # fold 1 only: new .5 .25 vs ref .25 .5 -> differences .25 -.25, mean 0
    assert new["n"] == 2 and new["mean"] == 0.375 and new["vs_reference"]["mean"] == 0.0
    assert subset["folds_shown"] == [1]
    assert "only the runs on folds 1." in (out / "results_folds1.md").read_text()
    assert (out / "curves_folds1.png").is_file()
    assert results_names([9, 7, 8]) == ("results_folds7-9.json", "results_folds7-9.md",
                                        "curves_folds7-9.png")
    assert results_names([0, 3])[1] == "results_folds0_3.md"
    capsys.readouterr()
    for bad in ("4", "1,1", "x"):
        with pytest.raises(SystemExit):
            main([str(path), "--render", "--folds", bad])
        err = capsys.readouterr().err.strip()
        assert err == f"error: --folds {bad}: give distinct folds of the study, " \
                      "comma-separated, from 0, 1"


# --- a real tiny fold study --------------------------------------------------------------


@pytest.mark.slow
def test_tiny_two_row_two_fold_study_validates_each_run_on_its_fold(synthetic_data_dir,
                                                                      tmp_path):
    # 200 training images in 3 folds: fold 0 holds 67, fold 2 holds 66 (their sizes differ,
    # so a run that validated on another fold would show it). One validation batch of 100.
    data = {"data_dir": str(synthetic_data_dir), "num_folds": 3, "num_workers": 0,
            "batch_size": 32, "eval_batch_size": 100}
    args = [*TINY_NET, "--trainer.max_epochs=3", "--trainer.accelerator=cpu",
            "--trainer.limit_test_batches=1"]
    spec = {"data": data, "seeds": [0], "folds": [0, 2], "out": str(tmp_path / "out"),
            "args": args, "reference": "quick", "rows": [
                {"name": "quick", "configs": [QUICK]},
                {"name": "half data", "configs": [QUICK], "args": ["--data.train_fraction=0.5"]}]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main([str(path), "--jobs", "2"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {row["name"]: row for row in results["rows"]}
    values = {}
    for name, row in rows.items():
        for run in row["runs"]:
            fold = run["fold"]
            assert run["status"] == "ok" and Path(run["folder"]).name == f"fold{fold}-seed0"
            assert run["val_images"] == len(fold_split(200, fold, 3)[1]) == {0: 67, 2: 66}[fold]
            bits = unpack_bits(run["val_correct_final"], run["val_images"])
            assert sum(bits) / len(bits) == pytest.approx(run["final_val_acc"], abs=1e-6)
            assert run["final_val_acc"] == run["val_acc_curve"][-1]
            assert f"--data.val_fold={fold}" in run["argv"]
            # A fold study never scores the test images (docs/protocols): no test/* curves.
            assert run["test_acc"] is None and NO_TEST in run["argv"]
            assert scored_test_tags(Path(run["folder"])) == []
            # every other image trains; half of them with train_fraction 0.5 (3 epochs)
            train = 200 - run["val_images"]
            assert run["train_images"] == 3 * (round(train / 2) if name == "half data" else train)
            values[name, fold] = run["final_val_acc"]
    # By hand: two runs per row, so t(0.975, 1) = 12.706205 and half = t * |a - b| / 2
    for name in rows:
        a, b = values[name, 0], values[name, 2]
        stats = rows[name]["stats"]
        assert stats["mean"] == pytest.approx((a + b) / 2)
        assert stats["half_width"] == pytest.approx(12.706205 * abs(a - b) / 2, abs=1e-6)
    d0 = values["half data", 0] - values["quick", 0]
    d2 = values["half data", 2] - values["quick", 2]
    diff = rows["half data"]["stats"]["vs_reference"]
    assert diff["pairs"] == [[0, 0], [2, 0]] and diff["mean"] == pytest.approx((d0 + d2) / 2)
    assert diff["half_width"] == pytest.approx(12.706205 * abs(d0 - d2) / 2, abs=1e-6)
    assert rows["quick"]["stats"]["image_floor"]["images"] == 67 + 66
