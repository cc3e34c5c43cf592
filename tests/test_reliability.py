"""Faults: exact resume after SIGTERM, bad input as one line, non-finite loss, DDP shards.

Checkpoint-file faults (kill -9, full disk) are in test_checkpointing.py."""

import os
import pickle
import shutil
import signal
import sys
import threading
import time
import weakref
from pathlib import Path

import lightning as L
import pytest
import torch
from tiny_run import TINY_NET

from cifar_moe.cli.main import cli_main
from cifar_moe.core.constants import BATCH_FOLDER
from cifar_moe.runs.listing import latest_run, read_scalars

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

TINY = [
    f"--config={CONFIG_DIR / 'quickstart.yaml'}",
    *TINY_NET, "--model.mixup_alpha=0.4",
    "--model.mix_until_epoch=2", "--data.val_size=40", "--data.num_workers=0",
    "--data.batch_size=16", "--trainer.limit_train_batches=4", "--trainer.limit_val_batches=2",
    "--trainer.enable_progress_bar=false", "--trainer.deterministic=true",
    "--trainer.max_epochs=3", "--seed_everything=7",
]


def _args(data_dir, root, *extra):
    return ["fit", *TINY, f"--data.data_dir={data_dir}", f"--trainer.default_root_dir={root}",
            *extra]


class SigtermAt(L.Callback):
    """Sends this process a real SIGTERM at a given epoch and batch."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGTERM)


class SwallowedCtrlCAt(L.Callback):
    """A real Ctrl-C whose KeyboardInterrupt Python swallows: it lands in a weakref callback
    ("Exception ignored in ..."), as one did in a sweep trial under load."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) != (self.epoch, self.batch):
            return
        target = type("Target", (), {})()
        _ = weakref.ref(target, lambda _: (os.kill(os.getpid(), signal.SIGINT), time.sleep(1)))
        del target  # the callback runs, the signal's KeyboardInterrupt is raised and dropped


LOADERS = {  # the per-image loader in-process and with persistent workers; the device path
    "workers 0": ["--data.num_workers=0", "--data.device_augment=false"],
    "persistent workers 2": ["--data.num_workers=2", "--data.persistent_workers=true",
                             "--data.device_augment=false"],
    "device path": ["--data.device_augment=true"],
}


@pytest.mark.slow
@pytest.mark.parametrize("loader", list(LOADERS))
def test_sigterm_then_resume_equals_uninterrupted(loader, synthetic_data_dir, tmp_path, capsys):
    extra = ["--data.augment.crop_padding=4", "--data.augment.brightness=0.3", *LOADERS[loader]]
    full = cli_main(_args(synthetic_data_dir, tmp_path / "full", *extra))
    # Same run, killed by SIGTERM in the middle of epoch 1 (after mixing epoch 0 ended).
    cli = cli_main(_args(synthetic_data_dir, tmp_path / "cut", *extra)[1:], run=False)
    cli.trainer.callbacks.append(SigtermAt(epoch=1, batch=2))
    with pytest.raises(SystemExit):
        cli.trainer.fit(cli.model, cli.datamodule)
    ckpts = latest_run(tmp_path / "cut" / "lightning_logs") / "checkpoints"
    assert (ckpts / "interrupted.ckpt").is_file()
    assert f"Exact resume: --ckpt_path {ckpts / 'last.ckpt'}" in capsys.readouterr().err
    resumed = cli_main(_args(synthetic_data_dir, tmp_path / "cut", *extra,
                             f"--ckpt_path={ckpts / 'last.ckpt'}"))
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    final = read_scalars(latest_run(tmp_path / "full" / "lightning_logs"))
    again = read_scalars(latest_run(tmp_path / "cut" / "lightning_logs"))
    assert final["val/acc"][-1] == again["val/acc"][-1]
    assert final["val/loss"][-1] == again["val/loss"][-1]


def test_a_ctrl_c_that_python_swallowed_still_stops_the_fit(synthetic_data_dir, tmp_path,
                                                              capsys):
    cli = cli_main(_args(synthetic_data_dir, tmp_path)[1:], run=False)
    cli.trainer.callbacks.append(SwallowedCtrlCAt(epoch=1, batch=1))
    dropped, previous, sys.unraisablehook = [], sys.unraisablehook, lambda u: dropped.append(u)
    try:
        with pytest.raises(SystemExit):
            cli.trainer.fit(cli.model, cli.datamodule)
    finally:
        sys.unraisablehook = previous
    assert [type(u.exc_value) for u in dropped] == [KeyboardInterrupt]  # swallowed once
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    assert "interrupted in epoch 2, step 6" in capsys.readouterr().err
    ckpts = latest_run(tmp_path / "lightning_logs") / "checkpoints"
    saved = torch.load(ckpts / "interrupted.ckpt", weights_only=False, map_location="cpu")
    assert (saved["epoch"], saved["global_step"]) == (1, 6)  # stopped at the next batch


@pytest.mark.slow
def test_non_finite_loss_stops_with_step_and_checkpoint(synthetic_data_dir, tmp_path, capsys):
    args = _args(synthetic_data_dir, tmp_path, "--model.optimizer.init_args.lr=1e30",
                 "--model.scheduler=null")
    with pytest.raises(SystemExit) as info:
        cli_main(args)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert info.value.code == 2
    assert err.startswith("error: non-finite training loss") and "at step" in err
    assert "last good checkpoint" in err


def _broken_copy(src, dst, name, **changes):
    shutil.copytree(src / BATCH_FOLDER, dst / BATCH_FOLDER)
    path = dst / BATCH_FOLDER / name
    if not changes:
        path.write_bytes(path.read_bytes()[:500])
        return dst
    with open(path, "rb") as fh:
        batch = pickle.load(fh)
    batch.update(changes)
    with open(path, "wb") as fh:
        pickle.dump(batch, fh)
    return dst


BAD = {  # case: (extra arguments, text the one line must contain)
    "typo": (["--model.lrr=0.1"], "--model.lrr"),
    "wrong type": (["--data.batch_size=abc"], "data.batch_size"),
    "K < 1": (["--model.net.init_args.num_experts=0"], "num_experts"),
    "empty widths": (["--model.net.init_args.widths=[]", "--model.net.init_args.pool_after=[]"],
                     "widths"),
    "negative lr": (["--model.optimizer.init_args.lr=-0.1"], "learning rate"),
    "zero lr": (["--model.optimizer.init_args.lr=0", "--model.scheduler=null"], "lr is 0"),
    "class name": (["--model.loss=focal", "--model.class_weights={kat: 1.2}"], "'kat'"),
    "val_size": (["--data.val_size=100000"], "data.val_size"),
    "block type": (["--model.net.init_args.block=dense"], "block"),
    "expert impl": (["--model.net.init_args.impl=fast"], "impl"),
    "batch_size 0": (["--data.batch_size=0"], "data.batch_size is 0"),
    "missing data": (["--data.data_dir=/nonexistent/cifar", "--data.download=false"],
                     "data.data_dir"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_clear_line(case, synthetic_data_dir, tmp_path, capsys):
    extra, expected = BAD[case]
    with pytest.raises(SystemExit) as info:
        cli_main(_args(synthetic_data_dir, tmp_path, *extra))
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2
    assert err[-1].startswith("error: ") and expected in err[-1], err[-1]
    assert "Traceback" not in "\n".join(err)
    assert not (tmp_path / "lightning_logs").exists()  # nothing written


@pytest.mark.parametrize(("name", "changes", "expected"), [
    ("data_batch_2", {}, "data_batch_2 is truncated"),
    ("test_batch", {"labels": [11] * 50}, "labels range 11..11"),
])
def test_bad_batch_files_are_one_line(synthetic_data_dir, tmp_path, capsys, name, changes,
                                      expected):
    data = _broken_copy(synthetic_data_dir, tmp_path / "data", name, **changes)
    with pytest.raises(SystemExit):
        cli_main(_args(data, tmp_path / "runs"))
    assert expected in capsys.readouterr().err.strip().splitlines()[-1]


def test_unwritable_log_dir_is_one_line(synthetic_data_dir, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit):
        cli_main(_args(synthetic_data_dir, blocker / "logs"))
    assert "trainer.default_root_dir" in capsys.readouterr().err.splitlines()[-1]


def test_mixing_beyond_max_epochs_warns(synthetic_data_dir, tmp_path):
    with pytest.warns(UserWarning, match="mix_until_epoch"):
        cli_main(_args(synthetic_data_dir, tmp_path, "--model.mix_until_epoch=50",
                       "--trainer.max_epochs=1", "--trainer.limit_train_batches=1"))


@pytest.mark.slow
def test_checkpoint_of_another_network_is_refused(synthetic_data_dir, tmp_path, capsys):
    cli_main(_args(synthetic_data_dir, tmp_path, "--trainer.max_epochs=2"))
    ckpt = latest_run(tmp_path / "lightning_logs") / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit):
        cli_main(_args(synthetic_data_dir, tmp_path, "--model.net.init_args.num_experts=3",
                       f"--ckpt_path={ckpt}"))
    line = capsys.readouterr().err.splitlines()[-1]
    assert "holds another network than the config asks for (num_experts: 2 -> 3)" in line
    # A checkpoint from before a network setting existed (saved without it) still loads.
    saved = torch.load(ckpt, weights_only=False)
    del saved["hyper_parameters"]["net"]["init_args"]["expert_init_spread"]
    older = tmp_path / "older.ckpt"
    torch.save(saved, older)
    cli_main(["test", *_args(synthetic_data_dir, tmp_path / "eval")[1:], f"--ckpt_path={older}"])


def test_epoch_shards_are_disjoint_and_cover_under_ddp():
    """Two 'ranks' of the device path's sampler: same permutation, disjoint shards, all covered,
    a new order every epoch, for several seeds and an odd set size."""
    from cifar_moe.data.epoch_order import EpochShuffle

    n = 281
    for seed in (0, 7, 2**40 + 3):
        orders = []
        for epoch in range(3):
            shards = [EpochShuffle(n, seed, keyed=False, rank=r, world=2) for r in (0, 1)]
            for shard in shards:
                shard.set_epoch(epoch)
            a, b = (list(shard) for shard in shards)
            assert len(a) == len(b) == 141
            assert set(a) | set(b) == set(range(n))
            assert len(set(a) & set(b)) <= 1  # only the one padding repeat of an odd size
            orders.append(a)
        assert orders[0] != orders[1] != orders[2]


def test_a_fit_in_a_worker_thread_trains(synthetic_data_dir, tmp_path):
    # Python lets only the main thread set signal handlers; a fit started from a thread
    # (a notebook helper, a service) must train, not stop on the Ctrl-C guard
    cli = cli_main(_args(synthetic_data_dir, tmp_path)[1:], run=False)
    errors = []

    def fit():
        try:
            cli.trainer.fit(cli.model, cli.datamodule)
        except BaseException as error:  # handed to the main thread, which asserts on it
            errors.append(error)

    worker = threading.Thread(target=fit)
    worker.start()
    worker.join()
    assert errors == []
    assert cli.trainer.current_epoch == cli.trainer.max_epochs


class SigintHandlerSeen(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen = signal.getsignal(signal.SIGINT)


def test_an_ignored_ctrl_c_stays_ignored_during_a_fit(synthetic_data_dir, tmp_path):
    # a job started with `&` inherits SIGINT ignored; the fit must not start answering it
    cli = cli_main(_args(synthetic_data_dir, tmp_path)[1:], run=False)
    seen = SigintHandlerSeen()
    cli.trainer.callbacks.append(seen)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        cli.trainer.fit(cli.model, cli.datamodule)
        assert seen.seen is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
