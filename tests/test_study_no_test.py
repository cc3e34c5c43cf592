"""A study whose metric is not test_acc (every fold study by default) never scores the test
images: its children get ``--no-test``, record ``test_acc: null``, and its tables, figure and
progress lines show its metric; split studies test each run as before, and fold runs made
before ``--no-test`` (with a test accuracy) are kept and render."""

import json
from pathlib import Path

import pytest
import yaml
from study_records import fold_record

from cifar_moe.cli.study import main
from cifar_moe.core.errors import UserError
from cifar_moe.runs.study.plan import NO_TEST, child_command, plan, scores_test
from cifar_moe.runs.study.runner import check_finished_runs
from cifar_moe.runs.study.spec import load_study

QUICK = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml")


def _write(folder: Path, folds: bool = True, **top) -> Path:
    spec = {"data": {"data_dir": str(folder / "data"), "val_size": 40}, "seeds": [0, 1],
            **({"folds": [0, 1]} if folds else {}), "out": str(folder / "out"),
            "rows": [{"name": "ref", "configs": [QUICK]}, {"name": "new", "configs": [QUICK]}],
            **top}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _own_options(study, run) -> list[str]:
    cmd = child_command(study, run, None)
    return cmd[:cmd.index("--")]


@pytest.mark.parametrize(("folds", "metric", "tested"), [
    (True, None, False), (True, "best_val_acc", False), (True, "test_acc", True),
    (False, None, True), (False, "final_val_acc", False)])
def test_the_child_scores_the_test_images_only_for_a_test_acc_study(tmp_path, folds, metric,
                                                                    tested):
    study = load_study(_write(tmp_path, folds, **({"metric": metric} if metric else {})))
    assert scores_test(study) is tested
    for run in plan(study):
        assert (NO_TEST not in _own_options(study, run)) is tested
        # a submitit job runs the same argv: the flag is the study's, not the launcher's
        job = child_command(study, run, None, job=True)
        assert (NO_TEST not in job[:job.index("--")]) is tested


def _records(folder: Path, test_acc) -> Path:
    """A finished two-row fold study; ``test_acc`` None: made with --no-test."""
    path = _write(folder, reference="ref")
    for slug, runs in (("ref", ("1100", "1000", "1110", "1100")),
                       ("new", ("1110", "1100", "1111", "1000"))):
        for (fold, seed), bits in zip([(0, 0), (1, 0), (0, 1), (1, 1)], runs, strict=True):
            run = folder / "out" / "runs" / slug / f"fold{fold}-seed{seed}"
            run.mkdir(parents=True)
            record = {**fold_record(bits), "test_acc": test_acc}
            (run / "result.json").write_text(json.dumps(record))
    return path


def test_runs_without_test_accuracy_render_their_metric(tmp_path):
    from cifar_moe.analysis.plots import study_figure

    assert main([str(_records(tmp_path, None)), "--render"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {row["name"]: row for row in results["rows"]}
    assert rows["new"]["aggregate"]["test_acc_mean"] is None
    assert rows["new"]["aggregate"]["test_acc_std"] is None
    assert rows["new"]["stats"]["vs_reference"]["n"] == 4  # final val acc, paired
    table = (tmp_path / "out" / "results.md").read_text()
    assert "test acc" not in table
    assert "Validation accuracy of the final epoch's model on the run's held-out fold;" in table
    assert "| row | final val acc % (mean +/- std) | seed: final val acc % |" in table
    # ref's final val acc per run: .5 .25 .75 .5
    assert "| ref | 50.0 +/- 20.4 | f0 s0: 50.0, f1 s0: 25.0, f0 s1: 75.0, f1 s1: 50.0 |" in table
    study_figure(results)  # bars of final val acc, not a KeyError on test_acc


def test_fold_runs_made_before_no_test_are_kept_and_render(tmp_path):
    path = _records(tmp_path, 0.5)
    study = load_study(path)
    check_finished_runs(study, study.rows)  # kept: nothing to run again
    assert main([str(path), "--render"]) == 0
    table = (tmp_path / "out" / "results.md").read_text()
    assert "f0 s0: 50.0, f1 s0: 50.0, f0 s1: 50.0, f1 s1: 50.0" in table  # their test acc
    assert "| row | test acc % (mean +/- std) | seed: test acc % |" in table


def test_a_study_turned_to_test_acc_refuses_runs_that_did_not_score_it(tmp_path):
    _records(tmp_path, None)
    spec = yaml.safe_load((tmp_path / "study.yaml").read_text())
    spec["metric"] = "test_acc"
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(spec))
    study = load_study(tmp_path / "study.yaml")
    with pytest.raises(UserError, match=r"8 finished runs .* without scoring the test images"):
        check_finished_runs(study, study.rows)
