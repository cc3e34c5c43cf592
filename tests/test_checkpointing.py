"""Checkpoint files (and the study's records) survive kills and full disks; last.ckpt is every
epoch; never non-finite."""

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from cifar_moe.cli.main import cli_main
from cifar_moe.runs.listing import best_checkpoint, latest_run
from cifar_moe.training.faults import AtomicCheckpointIO, remove_stale_partials
from tests.test_reliability import _args

CHILD = Path(__file__).with_name("ckpt_child.py")
REPO = Path(__file__).resolve().parents[1]


def _child(mode, data_dir, run_dir, tmpdir) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(CHILD), mode, str(data_dir), str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)


def _leaked(tmpdir: Path) -> list[Path]:
    """Files left in $TMPDIR (torch's own compile cache folder aside)."""
    return [p for p in tmpdir.rglob("*") if p.is_file() and "torchinductor" not in str(p)]


def _whole(path: Path) -> bool:
    saved = torch.load(path, weights_only=True, map_location="cpu")
    return isinstance(saved, dict) and "state_dict" in saved and "optimizer_states" in saved


@pytest.mark.slow
def test_kill9_during_saves_never_breaks_a_checkpoint(synthetic_data_dir, tmp_path):
    """Log folder 'on another filesystem' than $TMPDIR (rename fails with EXDEV); kill -9 x5."""
    tmpdir, run = tmp_path / "tmpdir", tmp_path / "run"
    tmpdir.mkdir()
    ckpts, rng, previous_pid = run / "checkpoints", random.Random(0), None
    for _ in range(5):
        child = _child("loop", synthetic_data_dir, run, tmpdir)
        assert "READY\n" in iter(child.stdout.readline, ""), "the child never got ready"
        # The child's start-up removed what the previous kill left half-written.
        assert not [p for p in ckpts.glob(".*.partial") if f".{previous_pid}." in p.name]
        time.sleep(rng.uniform(0.05, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait()
        previous_pid = child.pid
        for name in ("last.ckpt", "best-001.ckpt"):
            assert _whole(ckpts / name), name
        assert not _leaked(tmpdir)
        visible = sorted(p.name for p in ckpts.iterdir() if not p.name.startswith("."))
        assert visible == ["best-001.ckpt", "last.ckpt"]  # a partial file is never named so
    assert _whole(best_checkpoint(run))


@pytest.mark.slow
def test_disk_full_during_save_keeps_the_previous_file(synthetic_data_dir, tmp_path):
    tmpdir, run = tmp_path / "tmpdir", tmp_path / "run"
    tmpdir.mkdir()
    child = _child("full", synthetic_data_dir, run, tmpdir)
    out, _ = child.communicate(timeout=120)
    assert "SAVE FAILED" in out, out
    ckpts = run / "checkpoints"
    assert _whole(ckpts / "last.ckpt")
    assert sorted(p.name for p in ckpts.iterdir()) == ["best-001.ckpt", "last.ckpt"]
    assert not _leaked(tmpdir)


def _no_space(*args, **kwargs):
    """os.fsync of a full disk."""
    raise OSError(28, "No space left on device")


def test_atomic_save_failure_leaves_old_file_and_no_partial(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"v": torch.ones(3)}, target)
    monkeypatch.setattr(os, "fsync", _no_space)
    with pytest.raises(OSError, match="No space left"):
        AtomicCheckpointIO().save_checkpoint({"v": torch.zeros(3)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["v"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_study_records_are_atomic_and_two_writers_do_not_collide(tmp_path, monkeypatch):
    from cifar_moe.core.atomic_files import write_json_atomic

    target = tmp_path / "results.json"
    write_json_atomic(target, {"v": 1})
    names = []
    real_mkstemp = tempfile.mkstemp

    def recorded_mkstemp(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        names.append(name)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", recorded_mkstemp)
    write_json_atomic(target, {"v": 2})
    write_json_atomic(target, {"v": 3})
    assert len(set(names)) == 2  # a render beside a study's own render gets its own file
    monkeypatch.setattr(os, "fsync", _no_space)
    with pytest.raises(OSError, match="No space left"):
        write_json_atomic(target, {"v": 4})
    assert json.loads(target.read_text()) == {"v": 3}  # the old record is intact
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_stale_partials_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    import socket

    host = socket.gethostname().replace(".", "-")
    stale = tmp_path / f".last.ckpt.{host}.{dead}.abc123.partial"
    live = tmp_path / f".last.ckpt.{host}.{os.getppid()}.abc123.partial"
    for path in (stale, live):
        path.write_bytes(b"half")
    assert remove_stale_partials(tmp_path) == [stale]
    assert live.exists()


class StopAt(L.Callback):
    """SIGTERM to this process at the start of ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow
def test_last_ckpt_every_epoch_even_without_improvement(synthetic_data_dir, tmp_path, capsys):
    # train/mixing is 1 in epoch 0 and 0 after: the monitored value never improves again.
    args = _args(synthetic_data_dir, tmp_path, "--checkpoint.monitor=train/mixing",
                 "--model.mix_until_epoch=1", "--trainer.max_epochs=5")[1:]
    cli = cli_main(args, run=False)
    cli.trainer.callbacks.append(StopAt(epoch=3))
    with pytest.raises(SystemExit):
        cli.trainer.fit(cli.model, cli.datamodule)
    ckpts = latest_run(tmp_path / "lightning_logs") / "checkpoints"
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["epoch"] == 2
    assert f"Exact resume: --ckpt_path {ckpts / 'last.ckpt'}" in capsys.readouterr().err


@pytest.mark.slow
def test_non_finite_weights_are_never_saved(synthetic_data_dir, tmp_path, capsys):
    # lr 1e6 with weight decay: the weights overflow while the loss can stay finite.
    with pytest.raises(SystemExit) as info:
        cli_main(_args(synthetic_data_dir, tmp_path, "--model.optimizer.init_args.lr=1e6",
                       "--model.scheduler=null", "--model.label_smoothing=0"))
    assert info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: non-finite"), line
    named = line.split("newest finite checkpoint: ", 1)[-1].split("Newest finite checkpoint: ")
    ckpts = latest_run(tmp_path / "lightning_logs") / "checkpoints"
    for path in ckpts.glob("*.ckpt"):
        state = torch.load(path, weights_only=True)["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())
    assert named  # the line names a checkpoint (or says none finished)
