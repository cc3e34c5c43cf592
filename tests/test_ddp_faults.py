"""DDP faults with two CPU processes (gloo), through the CLI in a subprocess: SIGTERM to
rank 1, kill -9 of rank 1, and Ctrl-C (SIGINT to the whole process group), after the
first epoch.

Before ``stop_together``: SIGTERM to rank 1 hung both processes (90 s and more, nothing
saved), and kill -9 of rank 1 ended rank 0 with a traceback."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from interruptible import sigint_as_in_a_terminal
from tiny_run import TINY_NET

REPO_ROOT = Path(__file__).resolve().parents[1]
STOP_WITHIN_S = 30  # generous for a loaded 2-core CI machine; a hang lasts until killed


def _start_ddp_fit(data_dir: Path, root: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "cifar_moe", "fit",
        f"--config={REPO_ROOT / 'configs' / 'quickstart.yaml'}", *TINY_NET,
        f"--data.data_dir={data_dir}", "--data.val_size=40", "--data.batch_size=16",
        "--data.num_workers=0", "--trainer.max_epochs=500", "--trainer.strategy=ddp",
        "--trainer.devices=2", "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    # Its own process group, as a terminal's foreground job: Ctrl-C reaches both ranks.
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=sigint_as_in_a_terminal)


def _rank1_after_first_epoch(rank0: subprocess.Popen, folder: Path) -> int:
    """Rank 1's pid (Lightning starts it as rank 0's child), once an epoch has finished."""
    deadline = time.monotonic() + 240
    while not (folder / "last.ckpt").is_file():
        assert rank0.poll() is None, rank0.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no epoch finished in 240 s"
        time.sleep(0.2)
    children = Path(f"/proc/{rank0.pid}/task/{rank0.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in "ZX"  # exited; only waiting to be reaped


def _fault(tmp_path, data_dir, signum, group=False) -> tuple[subprocess.CompletedProcess, Path,
                                                              float]:
    """Signal rank 1 (or, with ``group``, both ranks) after the first epoch; rank 0's result."""
    # A fresh root: the fit claims lightning_logs/<config name>/seed<S>-1.
    folder = tmp_path / "lightning_logs" / "quickstart" / "seed0-1" / "checkpoints"
    rank0 = _start_ddp_fit(data_dir, tmp_path)
    try:
        rank1 = _rank1_after_first_epoch(rank0, folder)
        if group:
            os.killpg(rank0.pid, signum)
        else:
            os.kill(rank1, signum)
        start = time.monotonic()
        _, err = rank0.communicate(timeout=STOP_WITHIN_S)
        took = time.monotonic() - start
        deadline = time.monotonic() + 10
        while not _gone(rank1) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _gone(rank1), "rank 1 outlived rank 0"
    finally:
        if rank0.poll() is None:
            rank0.kill()
            rank0.communicate()
    return subprocess.CompletedProcess(rank0.args, rank0.returncode, "", err), folder, took


def _one_line(stderr: str, start: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith(start)]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def _loads(path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert state and all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


@pytest.mark.slow
def test_sigterm_to_rank1_stops_both_ranks_with_a_checkpoint(synthetic_data_dir, tmp_path):
    done, folder, took = _fault(tmp_path, synthetic_data_dir, signal.SIGTERM)
    assert done.returncode == 143, done.stderr[-3000:]
    line = _one_line(done.stderr, "interrupted")
    assert "signal on rank 1" in line and f"--ckpt_path {folder / 'last.ckpt'}" in line
    _loads(folder / "interrupted.ckpt")
    _loads(folder / "last.ckpt")
    assert took < STOP_WITHIN_S


@pytest.mark.slow
def test_kill9_of_rank1_ends_rank0_with_one_line(synthetic_data_dir, tmp_path):
    done, folder, took = _fault(tmp_path, synthetic_data_dir, signal.SIGKILL)
    assert done.returncode == 1, done.stderr[-3000:]
    line = _one_line(done.stderr, "stopped on rank 0")
    assert "another process of this DDP run ended" in line
    assert f"--ckpt_path {folder / 'last.ckpt'}" in line
    _loads(folder / "interrupted.ckpt")  # rank 0 saved what it held, without a collective
    assert not list(folder.glob("*.tmp*")), list(folder.iterdir())
    assert took < STOP_WITHIN_S


@pytest.mark.slow
def test_ctrl_c_reaches_both_ranks_and_they_stop_together(synthetic_data_dir, tmp_path):
    done, folder, took = _fault(tmp_path, synthetic_data_dir, signal.SIGINT, group=True)
    assert done.returncode == 130, done.stderr[-3000:]
    line = _one_line(done.stderr, "interrupted")
    assert "signal on ranks 0-1" in line and f"--ckpt_path {folder / 'last.ckpt'}" in line
    _loads(folder / "interrupted.ckpt")
    assert took < STOP_WITHIN_S
