"""The sweep command on real Optuna storage and real CLI trials: the issue's done-when run,
a failing trial, resume, pruning, Ctrl-C, and the one-line refusals."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from interruptible import sigint_as_in_a_terminal
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from paced import PACED
from tiny_run import TINY_ROUTED_NET

from cifar_moe.cli.main import argument_problem, cli_main
from cifar_moe.cli.sweep import main
from cifar_moe.runs.sweep.budget import counted, requeue, trials_left
from cifar_moe.runs.sweep.launch import last_checkpoint
from cifar_moe.runs.sweep.plots import write_plots

REPO_ROOT = Path(__file__).resolve().parents[1]
QUICK = str(REPO_ROOT / "configs" / "quickstart.yaml")
SLICE_SWEEP = REPO_ROOT / "configs" / "sweeps" / "slice_lr_wd.yaml"
SMOOTHING = {"model.label_smoothing": {"type": "float", "low": 0.0, "high": 0.2}}


def tiny_settings(data_dir: Path, epochs: int = 1) -> list[str]:
    """KEY=VALUE settings that make a quickstart trial a seconds-long run on the data."""
    return [f"data.data_dir={data_dir}", "data.val_size=40", "data.num_workers=0",
            "data.batch_size=16", f"trainer.max_epochs={epochs}",
            "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
            "trainer.accelerator=cpu", *(a[2:] for a in TINY_ROUTED_NET)]


def as_args(settings: list[str]) -> list[str]:
    return [f"--arg={s}" for s in settings]


def write_sweep(folder: Path, space: dict | None = None, **extra) -> Path:
    """A sweep of the quickstart recipe over its label smoothing (by default)."""
    spec = {"configs": [QUICK], "space": space or SMOOTHING, "trials": 2,
            "out": str(folder / "out"), **extra}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def journal_study(out: Path, name: str = "sweep") -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(out / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize(("change", "says"), [
    ({"space": {"model.label_smoothing": {"type": "float", "low": 0.2, "high": 0.1}}},
     "low (0.2) must be below high (0.1)"),
    ({"space": {"model.label_smoothing": {"type": "float", "low": 0.0, "high": 1, "log": True}}},
     "a log range needs low > 0"),
    ({"space": {"model.loss": {"type": "choice", "choices": [1]}}}, "type: float|int|categorical"),
    ({"pruner": "patient"}, "'patient' is not one of none, median, hyperband"),
    ({"trials": 0}, "use a whole number >= 1"),
    ({"colour": "blue"}, "unknown key 'colour'"),
    ({"fixed": {"model.label_smoothing": 0.1}}, "both searched (space) and set"),
])
def test_sweep_yaml_mistakes_are_one_line(tmp_path, capsys, change, says):
    path = write_sweep(tmp_path, **change)
    with pytest.raises(SystemExit) as stop:
        main([str(path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and says in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_mistyped_search_key_stops_before_any_trial(tmp_path, capsys, synthetic_data_dir):
    path = write_sweep(tmp_path, space={"model.label_smothing": SMOOTHING[
        "model.label_smoothing"]})
    with pytest.raises(SystemExit) as stop:
        main([str(path), *as_args(tiny_settings(synthetic_data_dir))])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "label_smothing" in err and "no trial was started" in err
    assert not list((tmp_path / "out").glob("trial-*"))


def test_budget_counts_retries_once_and_skips_surplus(tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "j.journal")))
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for value in (0.1, 0.2):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, value)
    interrupted = study.ask()
    interrupted.suggest_float("x", 0, 1)
    requeue(study, storage, interrupted.number, "interrupted; queued again")
    trials = study.get_trials()
    retry = trials[-1]
    assert retry.state == TrialState.WAITING and retry.params == interrupted.params
    assert counted(trials) == [0, 1, 3]  # 2 is replaced by its retry
    assert trials_left(study, 3) == 1  # the queued retry is still to run
    surplus = study.ask()  # pops the retry
    assert surplus.number == 3 and surplus.params == interrupted.params
    assert trials[2].user_attrs["error"] == "interrupted; queued again"


def test_plots_say_why_they_are_not_drawn(tmp_path):
    study = optuna.create_study(direction="maximize")
    assert set(write_plots(study, tmp_path).values()) == {"not drawn: no trial has completed yet"}
    study.enqueue_trial({"x": 0.5})
    study.enqueue_trial({"x": 0.5})
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    notes = write_plots(study, tmp_path)
    assert notes["param_importances"] == ("not drawn: the completed trials share the same "
                                          "value of every parameter")
    assert notes["optimization_history"] == "optimization_history.png"
    assert (tmp_path / "optimization_history.png").stat().st_size > 1000


@pytest.mark.slow
def test_done_when_sweep_writes_best_yaml_that_reproduces_the_trial(
        synthetic_data_dir, tmp_path):
    out = tmp_path / "out"
    # The slice recipe's network shrunk (a 3x3 conv stem: the whitening stem needs 24
    # channels); 2 epochs of 4 batches, as its OneCycle needs 2 warm-up steps.
    tiny = ["model.net.init_args.stem=conv", "model.net.init_args.stem_width=8",
            "model.net.init_args.widths=[8, 16]", "model.net.init_args.pool_after=[0, 1]",
            "model.net.init_args.routed_blocks=[1]",
            f"data.data_dir={synthetic_data_dir}", "data.val_size=40", "data.batch_size=16"]
    code = main([str(SLICE_SWEEP), "--trials", "4", "--jobs", "2", "--out", str(out),
                 "--arg", "trainer.max_epochs=2", "--arg", "trainer.limit_train_batches=4",
                 "--arg", "trainer.limit_val_batches=2", *as_args(tiny)])
    assert code == 0
    rows = read_csv(out / "trials.csv")
    assert [r["state"] for r in rows] == ["complete"] * 4
    assert sorted(r["folder"] for r in rows) == [f"trial-{n}" for n in range(4)]
    for name in ("optimization_history", "param_importances", "parallel_coordinate"):
        assert (out / f"{name}.png").stat().st_size > 1000
    best = max(rows, key=lambda r: float(r["val/acc"]))
    assert f"Best: trial {best['number']}" in (out / "summary.md").read_text()
    # best.yaml parses with the CLI and holds the best trial's values ...
    best_yaml = out / "best.yaml"
    assert argument_problem(["fit", f"--config={best_yaml}"]) is None
    saved = yaml.safe_load(best_yaml.read_text())
    assert saved["model"]["scheduler"]["init_args"]["max_lr"] == pytest.approx(
        float(best["model.scheduler.init_args.max_lr"]))
    assert saved["model"]["mix_until_epoch"] == int(best["model.mix_until_epoch"])
    # ... and a fit of it runs with the trial's own config (but for its folder and reporter)
    cli = cli_main(["fit", f"--config={best_yaml}", f"--trainer.default_root_dir={tmp_path}"])
    reproduced = yaml.safe_load(Path(cli.trainer.log_dir, "config.yaml").read_text())
    trial = yaml.safe_load(next((out / best["folder"]).glob(
        "lightning_logs/**/config.yaml")).read_text())
    for config in (reproduced, trial):
        config["trainer"].pop("default_root_dir")
        config["trainer"].pop("callbacks")
        config["trainer"].pop("enable_progress_bar")
    assert reproduced == trial


@pytest.mark.slow
def test_failed_trial_is_recorded_and_a_rerun_resumes_the_budget(
        synthetic_data_dir, tmp_path, capsys):
    path = write_sweep(tmp_path, space={"data.val_size": {
        "type": "categorical", "choices": [40, 100000]}}, name="sweep")
    out = tmp_path / "out"
    out.mkdir()
    storage = JournalStorage(JournalFileBackend(str(out / "optuna.journal")))
    study = optuna.create_study(study_name="sweep", storage=storage, direction="maximize")
    study.enqueue_trial({"data.val_size": 100000})  # more than the data holds: fails at setup
    study.enqueue_trial({"data.val_size": 40})
    settings = [s for s in tiny_settings(synthetic_data_dir) if not s.startswith("data.val")]
    assert main([str(path), *as_args(settings)]) == 0  # the failure does not end the sweep
    rows = read_csv(out / "trials.csv")
    assert [r["state"] for r in rows] == ["fail", "complete"]
    assert "val_size" in rows[0]["error"] and "\n" not in rows[0]["error"]
    assert "trial 0: " in (out / "summary.md").read_text()
    capsys.readouterr()
    assert main([str(path), "--trials", "3", *as_args(settings)]) == 0
    assert "2 of 3 trials done, 1 to run" in capsys.readouterr().out
    assert len(read_csv(out / "trials.csv")) == 3


@pytest.mark.slow
def test_pruned_trial_stops_early_and_is_recorded(synthetic_data_dir, tmp_path):
    # val/acc never exceeds 2, so a threshold of 2 prunes at the first validation
    path = write_sweep(tmp_path, pruner={"name": "threshold", "lower": 2.0}, trials=1,
                       name="sweep")
    assert main([str(path), *as_args(tiny_settings(synthetic_data_dir, epochs=3))]) == 1
    row = read_csv(tmp_path / "out" / "trials.csv")[0]
    assert row["state"] == "pruned" and row["pruned_epoch"] == "0"
    last = last_checkpoint(tmp_path / "out" / "trial-0")
    assert torch.load(last, weights_only=True, map_location="cpu")["epoch"] == 0  # stopped
    trial = journal_study(tmp_path / "out").trials[0]
    assert trial.intermediate_values.keys() == {0}


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_rerun_resumes_the_trial(synthetic_data_dir, tmp_path):
    path = write_sweep(tmp_path, trials=1, name="sweep")
    out = tmp_path / "out"
    pace = json.dumps({"class_path": PACED, "init_args": {"seconds": 0.5}})
    command = [sys.executable, "-m", "cifar_moe.sweep", str(path),
               *as_args([*tiny_settings(synthetic_data_dir, epochs=12),
                         f"trainer.callbacks+={pace}"])]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "tests")}  # the trials import paced
    sweep = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env,
                             preexec_fn=sigint_as_in_a_terminal)
    deadline = time.monotonic() + 240
    while not (last := last_checkpoint(out / "trial-0")) and sweep.poll() is None and (
            time.monotonic() < deadline):
        time.sleep(0.2)
    assert last is not None, sweep.communicate()
    sweep.send_signal(signal.SIGINT)
    _, err = sweep.communicate(timeout=180)
    assert sweep.returncode == 130, err
    assert "run the same command again to resume" in err
    row = read_csv(out / "trials.csv")[0]
    assert row["state"] == "fail" and row["error"] == "interrupted; queued again"
    assert (last.parent / "interrupted.ckpt").is_file()  # the trial saved its work
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=400,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert "[trial 1] started (resumed) in trial-0" in done.stdout
    rows = read_csv(out / "trials.csv")
    assert [(r["state"], r["folder"]) for r in rows] == [("fail", "trial-0"),
                                                          ("complete", "trial-0")]
    runs = {p.parent for p in (out / "trial-0").glob("lightning_logs/**/checkpoints")}
    assert runs == {last.parent.parent}  # the rerun went on in the same run folder
    assert torch.load(last, weights_only=True, map_location="cpu")["epoch"] == 11
    assert os.path.getsize(out / "best.yaml") > 0
