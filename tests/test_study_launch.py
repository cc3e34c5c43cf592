"""A study's runs as submitit jobs (issue 35): a tiny study through submitit's local executor,
a killed job that the next study run resumes from its last checkpoint, and bad launcher
settings refused in one line before anything is written."""

import json
import time

import pytest
import torch
from test_study import QUICK, write_study
from test_sweep_launch import _kill_tree

from cifar_moe.cli.study import main
from cifar_moe.runs.study import child, submit
from cifar_moe.runs.study.plan import child_command, plan
from cifar_moe.runs.study.spec import load_study
from cifar_moe.runs.study.submit import prepare_folder
from cifar_moe.runs.sweep.launch import SubmititLauncher, last_checkpoint

LOCAL_JOBS = {"name": "submitit-local", "time": 10}
SHORT_TEST = "--trainer.limit_test_batches=2"


@pytest.mark.slow
def test_study_runs_as_submitit_jobs(synthetic_data_dir, tmp_path, capsys):
    path = write_study(tmp_path, synthetic_data_dir, [{"name": "a", "configs": [QUICK]}],
                       seeds=(0,), launcher=LOCAL_JOBS)
    assert main([str(path), f"--arg={SHORT_TEST}"]) == 0
    assert "(1 at a time, submitit-local jobs)" in capsys.readouterr().out
    for run in plan(load_study(path)):
        assert (run.folder / "result.json").is_file() and (run.folder / "stderr.log").is_file()
        assert list((run.folder / "submitit").glob("*_result.pkl"))  # it ran as a job
    [row] = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert row["aggregate"]["seeds_ok"] == 1 and (tmp_path / "out" / "results.md").is_file()

    assert main([str(path), f"--arg={SHORT_TEST}"]) == 0  # resume: nothing new
    assert "1 of 1 runs already done, 0 to run" in capsys.readouterr().out


@pytest.mark.slow
def test_killed_job_is_resumed_by_the_next_study_run(synthetic_data_dir, tmp_path):
    epochs = 6
    args = [f"--trainer.max_epochs={epochs}", SHORT_TEST]
    path = write_study(tmp_path, synthetic_data_dir,
                       [{"name": "a", "configs": [QUICK], "args": args}])
    study = load_study(path)
    [run] = plan(study)
    prepare_folder(study, run, None)  # what the study does before it submits the job
    launcher = SubmititLauncher(load_study(path, launch=LOCAL_JOBS).launch)
    first = launcher.start(child_command(study, run, None, job=True), run.folder)
    deadline = time.monotonic() + 120
    while last_checkpoint(run.folder) is None and first.poll() is None and (
            time.monotonic() < deadline):
        time.sleep(0.2)
    assert last_checkpoint(run.folder) is not None and first.poll() is None
    _kill_tree(int(first.job.job_id))  # the local executor's job id is its process id
    killed_at = torch.load(last_checkpoint(run.folder), weights_only=True)["epoch"]
    assert killed_at < epochs - 1

    # The study run again: the folder is kept and its job resumes from last.ckpt.
    assert main([str(path), "--launcher", "submitit-local", "--time", "10"]) == 0
    result = json.loads((run.folder / "result.json").read_text())
    assert result["val_epochs"] == list(range(epochs))  # the whole curve, both jobs' epochs
    restored = [line for line in (run.folder / "stderr.log").read_text().splitlines()
                if line.startswith("Restoring states from the checkpoint path at")]
    assert len(restored) == 2  # the resumed fit, then the test of its best checkpoint
    assert "last.ckpt" in restored[0]


class _Job:
    """A job that runs until it is cancelled, then ends as the CLI does after SIGINT."""

    error = None

    def __init__(self) -> None:
        self.code, self.cancels = None, 0

    def poll(self) -> int | None:
        return self.code

    def cancel(self) -> None:
        self.cancels, self.code = self.cancels + 1, 130


class _Launcher:
    """Starts :class:`_Job`s; the study is stopped (SIGTERM, Ctrl-C) while the first runs."""

    name = "fake"

    def __init__(self) -> None:
        self.jobs: list[_Job] = []

    def start(self, command: list[str], folder) -> _Job:
        assert "--lock" in command and "--parent-pid" not in command  # the job holds the folder
        self.jobs.append(_Job())
        child.cancel_jobs()
        return self.jobs[-1]


def test_a_stopped_study_cancels_its_jobs_once_and_records_no_failure(
        synthetic_data_dir, tmp_path, monkeypatch):
    path = write_study(tmp_path, synthetic_data_dir, [{"name": "a", "configs": [QUICK]}])
    study, launcher = load_study(path), _Launcher()
    [run] = plan(study)
    monkeypatch.setattr(submit, "POLL_S", 0.01)
    child.start_of_study()
    try:
        error = submit.execute_job(study, run, launcher)
        assert error == {"error": "interrupted", "returncode": 130, "interrupted": True}
        assert submit.execute_job(study, run, launcher)["interrupted"]  # no new job starts
    finally:
        child.start_of_study()
    assert [job.cancels for job in launcher.jobs] == [1]
    assert not (run.folder / "error.json").exists()  # a stopped run did not fail


@pytest.mark.parametrize(("flags", "launcher", "line"), [
    (["--launcher", "slurmm"], None, "study.yaml launcher name (or --launcher): 'slurmm' is "
                                     "not one of local, slurm, submitit-local"),
    (["--gpus", "-1"], None, "launcher gpus -1 (study.yaml or --gpus): use a whole number >= 0"),
    ([], {"name": "slurm", "gpu": 1}, "study.yaml launcher: unknown key 'gpu'; use cpus, "
                                      "gpus, mem_gb, name, partition, time"),
])
def test_bad_launcher_setting_is_one_line(synthetic_data_dir, tmp_path, capsys, flags,
                                          launcher, line):
    extra = {"launcher": launcher} if launcher else {}
    path = write_study(tmp_path, synthetic_data_dir, [{"name": "a", "configs": [QUICK]}],
                       **extra)
    with pytest.raises(SystemExit) as stop:
        main([str(path), *flags])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {line}"]
    assert not (tmp_path / "out").exists()  # refused before anything was written
