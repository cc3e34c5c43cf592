"""A study interrupted (issue 36): a killed study's child stops with it, and its folder is
waited for (or refused) by a re-run; SIGTERM stops the runs too and exits 143 with one line
on how to resume."""

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from study_records import result_record
from tiny_run import TINY_NET

from cifar_moe.cli.study import main
from cifar_moe.runs.study import child, lock, runner
from cifar_moe.runs.study.plan import plan
from cifar_moe.runs.study.spec import load_study

REPO_ROOT = Path(__file__).resolve().parents[1]
QUICK = str(REPO_ROOT / "configs" / "quickstart.yaml")


# --- a run folder still held by a killed study's child ----------------------------------


def _held_study(tmp_path: Path, data_dir: Path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"data": {"data_dir": str(data_dir)}, "seeds": [0],
                                    "out": str(tmp_path / "out"),
                                    "rows": [{"name": "a", "configs": [QUICK]}]}))
    run = plan(load_study(path))[0]
    run.folder.mkdir(parents=True)
    (run.folder / "last.ckpt").write_text("the orphan's")  # half-finished: wiped on a run
    # what the killed study's child still holds; the test closes it
    holder = open(run.lock_path, "w")  # noqa: SIM115
    holder.write("424242")
    holder.flush()
    fcntl.flock(holder, fcntl.LOCK_EX)
    return path, run, holder


def test_a_held_run_folder_is_refused_in_one_line_and_kept(synthetic_data_dir, tmp_path,
                                                           monkeypatch, capsys):
    path, run, holder = _held_study(tmp_path, synthetic_data_dir)
    monkeypatch.setattr(lock, "RUN_WAIT_S", 0.5)
    try:
        assert main([str(path)]) == 2
    finally:
        holder.close()
    captured = capsys.readouterr()
    assert f"waiting for {run.folder}: a run of an earlier study process still holds it" \
        in captured.out
    assert captured.err.strip().splitlines() == [
        f"error: run folder {run.folder} is still in use by process 424242 (a run of an "
        "earlier study process that was killed?); wait for it to end or kill 424242, then "
        "run the study again"]
    assert (run.folder / "last.ckpt").is_file()  # not wiped under the running child


def test_a_held_run_folder_is_waited_for_then_run(synthetic_data_dir, tmp_path, monkeypatch,
                                                  capsys):
    path, run, holder = _held_study(tmp_path, synthetic_data_dir)
    started = []

    def stand_in(study, run, threads, on_wait=None):  # the run, without training
        started.append(time.monotonic())
        shutil.rmtree(run.folder)
        run.folder.mkdir()
        (run.folder / "result.json").write_text(json.dumps(result_record(0.5, [0.5])))

    monkeypatch.setattr(child, "execute", stand_in)
    released = []

    def held_until_waited_for(lock_path, folder, wait_s=None, on_wait=None):
        # the old child lets go only once the study has said it waits (a timer raced a
        # study that, under load, started after the timer had already let go)
        def told():
            on_wait()
            released.append(time.monotonic())
            holder.close()
        return lock.hold_run_folder(lock_path, folder, wait_s, told)

    monkeypatch.setattr(runner, "hold_run_folder", held_until_waited_for)
    assert main([str(path)]) == 0
    assert started and started[0] >= released[0]  # only once the old child let go
    assert "waiting for" in capsys.readouterr().out
    assert not (run.folder / "last.ckpt").exists()


# --- real processes: kill -9 and SIGTERM of the study ----------------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state  # a zombie has stopped; only its reaper is missing


def _tiny_study(tmp_path: Path, data_dir: Path, epochs: int, seeds=(0,)) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"data_dir": str(data_dir), "val_size": 40, "num_workers": 0,
                 "batch_size": 16},
        "seeds": list(seeds), "out": str(tmp_path / "out"),
        "args": [*TINY_NET, f"--trainer.max_epochs={epochs}", "--trainer.limit_train_batches=3",
                 "--trainer.limit_val_batches=2", "--trainer.accelerator=cpu"],
        "rows": [{"name": "quick", "configs": [QUICK]}]}))
    return path


def _start(path: Path, lock_path: Path) -> tuple[subprocess.Popen, int]:
    """The study in its own process, and its first child's pid once that has started."""
    proc = subprocess.Popen([sys.executable, "-m", "cifar_moe.study", str(path)],
                            cwd=REPO_ROOT, start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        pid = lock_path.read_text().strip() if lock_path.is_file() else ""
        if pid:
            return proc, int(pid)
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"no run started: {proc.communicate()}")


@pytest.mark.slow
@pytest.mark.parametrize("when", ["starting", "training"])
def test_kill_9_of_the_study_stops_its_child_and_a_rerun_finishes(when, synthetic_data_dir,
                                                                  tmp_path):
    path = _tiny_study(tmp_path, synthetic_data_dir, epochs=25)
    run = plan(load_study(path))[0]
    proc, pid = _start(path, run.lock_path)
    # starting: still importing (it checks its parent once it can); training: its watch
    # thread is what notices
    deadline = time.monotonic() + 60
    while when == "training" and not any(run.folder.rglob("*.ckpt")):
        assert time.monotonic() < deadline, "the run never got to training"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # the study only: its child is left behind
    proc.communicate()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the orphaned run trains on"
    assert not (run.folder / "result.json").exists()  # it stopped, it did not finish
    if when == "training":  # (once: a whole run's seconds)
        assert main([str(path)]) == 0  # the re-run gets the folder, runs it from the start
        assert (run.folder / "result.json").is_file()


@pytest.mark.slow
def test_sigterm_of_the_study_exits_143_with_how_to_resume(synthetic_data_dir, tmp_path):
    path = _tiny_study(tmp_path, synthetic_data_dir, epochs=40, seeds=(0, 1))
    run = plan(load_study(path))[0]
    proc, pid = _start(path, run.lock_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == (
        "stopped by SIGTERM (quick, seed 0); 0 of 2 runs are finished and kept; run the "
        "same command again to resume (the interrupted runs start again)")
    assert not _alive(pid)  # its run was stopped too, not left training
    assert not (run.folder / "result.json").exists()  # stopped, not waited for to the end
    assert not (run.folder / "error.json").exists()  # stopped, not failed
    assert not (tmp_path / "out" / "runs" / "quick" / "seed1").exists()  # nothing new began
