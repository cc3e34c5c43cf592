"""Tracking beside TensorBoard (MLflow, CSV) and trials as submitit jobs: a sweep through
submitit's local executor, and a job killed mid-run that resumes from its last checkpoint."""

import csv
import json
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger
from mlflow.tracking import MlflowClient
from test_sweep import as_args, read_csv, tiny_settings, write_sweep
from tiny_run import tiny_args

from cifar_moe.cli.loggers import BEST_METRIC, with_run_logger
from cifar_moe.cli.main import cli_main
from cifar_moe.cli.sweep import main
from cifar_moe.runs.sweep.launch import SubmititLauncher, last_checkpoint
from cifar_moe.runs.sweep.spec import LaunchSettings
from cifar_moe.training.run_summary import RunSummary

MLFLOW = "lightning.pytorch.loggers.MLFlowLogger"


def test_configured_loggers_go_beside_the_run_logger(tmp_path):
    run = TensorBoardLogger(tmp_path, name="run")
    mlflow = MLFlowLogger(tracking_uri=f"file:{tmp_path / 'mlruns'}")
    own = TensorBoardLogger(tmp_path, name="own")
    assert with_run_logger(None, lambda: run) is run  # Lightning's default: the run logger
    assert with_run_logger(True, lambda: run) is run
    assert with_run_logger(False, lambda: run) is False
    assert with_run_logger(mlflow, lambda: run) == [run, mlflow]
    assert with_run_logger([own, mlflow], lambda: run) == [own, mlflow]  # its own TensorBoard


@pytest.mark.slow
def test_mlflow_and_csv_log_beside_tensorboard(synthetic_data_dir, tmp_path):
    store = tmp_path / "mlruns"
    loggers = [{"class_path": MLFLOW, "init_args": {"experiment_name": "tiny",
                                                    "tracking_uri": f"file:{store}"}},
               {"class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(tmp_path / "csv")}}]
    cli = cli_main(["fit", *tiny_args(tmp_path, synthetic_data_dir, epochs=2),
                    "--model.label_smoothing=0.05", f"--trainer.logger={json.dumps(loggers)}"])
    tensorboard, mlflow, csv_logger = cli.trainer.loggers
    assert isinstance(tensorboard, TensorBoardLogger) and isinstance(mlflow, MLFlowLogger)
    assert isinstance(csv_logger, CSVLogger)
    run_dir = Path(cli.trainer.log_dir)  # the run folder is still TensorBoard's
    assert (run_dir / "config.yaml").is_file() and list(run_dir.glob("events.out.tfevents*"))
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    best = next(cb for cb in cli.trainer.callbacks if isinstance(cb, RunSummary)).best_acc

    client = MlflowClient(f"file:{store}")
    [run] = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert run.data.params["label_smoothing"] == "0.05"  # hyperparameters as fields
    assert run.data.metrics[BEST_METRIC] == pytest.approx(best)  # the final metric
    curve = client.get_metric_history(run.info.run_id, "val/acc")
    assert len(curve) == 2 and max(m.value for m in curve) == pytest.approx(best)

    with open(Path(csv_logger.log_dir) / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert float(next(r for r in rows if r.get(BEST_METRIC))[BEST_METRIC]) == pytest.approx(best)


@pytest.mark.slow
def test_sweep_trials_run_as_submitit_jobs(synthetic_data_dir, tmp_path):
    path = write_sweep(tmp_path, trials=1, launcher={"name": "submitit-local", "time": 10})
    assert main([str(path), *as_args(tiny_settings(synthetic_data_dir))]) == 0
    row = read_csv(tmp_path / "out" / "trials.csv")[0]
    assert row["state"] == "complete" and float(row["val/acc"]) >= 0
    assert list((tmp_path / "out" / "trial-0" / "submitit").glob("*_result.pkl"))


def _kill_tree(pid: int) -> None:
    """kill -9 a job and everything it started, as a node failure would."""
    root = psutil.Process(pid)
    tree = [*root.children(recursive=True), root]
    for proc in tree:
        proc.kill()
    psutil.wait_procs(tree, timeout=30)


@pytest.mark.slow
def test_killed_job_restarts_from_its_last_checkpoint(synthetic_data_dir, tmp_path):
    folder = tmp_path / "trial"
    command = [sys.executable, "-m", "cifar_moe", "fit",
               *tiny_args(folder, synthetic_data_dir, epochs=12)]
    launcher = SubmititLauncher(LaunchSettings(name="submitit-local", time=10))
    first = launcher.start(command, folder)
    deadline = time.monotonic() + 240
    while last_checkpoint(folder) is None and first.poll() is None and (
            time.monotonic() < deadline):
        time.sleep(0.2)
    assert last_checkpoint(folder) is not None and first.poll() is None
    _kill_tree(int(first.job.job_id))  # the local executor's job id is its process id
    killed_at = torch.load(last_checkpoint(folder), weights_only=True)["epoch"]
    assert killed_at < 11

    second = launcher.start(command, folder)  # the job started again
    while second.poll() is None and time.monotonic() < deadline + 240:
        time.sleep(0.5)
    assert second.poll() == 0, (folder / "stderr.log").read_text()[-2000:]
    last = last_checkpoint(folder)
    assert torch.load(last, weights_only=True)["epoch"] == 11
    runs = {p.parent for p in folder.glob("lightning_logs/**/checkpoints")}
    assert runs == {last.parent.parent}  # resumed in its run folder, not a fresh run
    # the second job (and only it) restored the first job's last.ckpt
    restored = [line for line in (folder / "stderr.log").read_text().splitlines()
                if line.startswith("Restoring states from the checkpoint path at")]
    assert restored == [f"Restoring states from the checkpoint path at {last}"]
