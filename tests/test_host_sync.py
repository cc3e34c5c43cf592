"""No training step between logging steps reads a value back from the device (issue 37).

On CPU every read-back method of ``torch.Tensor`` is wrapped while the steps run, and each
call is counted against its step; with CUDA, ``torch.cuda.set_sync_debug_mode("error")``
also fails on the syncs a C++ operator makes by itself. A step's window runs from its
``on_train_batch_start`` to the next one, so the progress bar, loggers, callbacks,
optimizer and scheduler of that step are all inside it. Steps whose window holds a logging
step, a validation or the epoch's end may read values; they are not counted. Nor is the
first step, which builds lazy state once (the mixer's Beta distribution validates its
parameters when it is built).
"""

import traceback
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import lightning as L
import pytest
import torch

from cifar_moe.cli.main import cli_main
from cifar_moe.training.train_totals import logs_this_step

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

READ_BACKS = ("item", "cpu", "tolist", "numpy", "__array__", "__bool__", "__float__",
              "__int__", "__index__")
# Anything a DataLoader runs (sampler, dataset transforms, collate) works on host tensors by
# design, before the batch reaches the device; device-side augmentation runs later, outside.
# Except TrivialAugmentWide (torchvision's, the slice recipe's, one call per image): it draws
# each image's operation and magnitude as CPU scalars (torch.randint / torch.rand, no device)
# and reads those back, host values whatever the batch's device.
HOST_ONLY = ("torch/utils/data/", "torchvision/transforms/v2/_auto_augment.py")


class ReadBackCounter(L.Callback):
    """Counts host read-backs per quiet (non-logging) training step."""

    def __init__(self) -> None:
        self.per_step: dict[int, list[str]] = {}
        self._stack: ExitStack | None = None
        self._step: int | None = None

    def _record(self, name: str) -> None:
        where = traceback.extract_stack()[:-2]  # less this method and the wrapper
        if not any(h in frame.filename for frame in where for h in HOST_ONLY):
            self.per_step[self._step].append(f"{name} at {where[-1].filename}:{where[-1].lineno}")

    def _wrap(self, name: str):
        original = getattr(torch.Tensor, name)

        def counted(tensor, *args, **kwargs):
            self._record(name)
            return original(tensor, *args, **kwargs)
        return counted

    def _stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._stop()
        if trainer.global_step == 0 or logs_this_step(trainer):
            return
        self._step = trainer.global_step
        self.per_step[self._step] = []
        self._stack = ExitStack()
        for name in READ_BACKS:
            self._stack.enter_context(mock.patch.object(torch.Tensor, name, self._wrap(name)))
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("error")
            self._stack.callback(torch.cuda.set_sync_debug_mode, "default")

    def on_validation_start(self, trainer, pl_module) -> None:
        self._stop()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._stop()


def _fit(base_args: list[str], *extra: str) -> ReadBackCounter:
    device = ["--trainer.accelerator=gpu"] if torch.cuda.is_available() else []
    cli = cli_main([*base_args, *device, "--trainer.limit_train_batches=9",
                    "--trainer.log_every_n_steps=4", "--trainer.enable_progress_bar=true",
                    "--routing.on_train=true", *extra], run=False)
    counter = ReadBackCounter()
    cli.trainer.callbacks.insert(0, counter)  # first: its epoch-end hook runs before others
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return counter


@pytest.mark.slow
@pytest.mark.parametrize("extra", [
    (),  # the quickstart recipe: cross-entropy, label smoothing, OneCycle
    ("--model.loss=focal", "--model.class_weights={cat: 1.2, dog: 1.1}",
     "--model.mixup_alpha=0.2", "--model.cutmix_alpha=1.0",
     "--model.net.init_args.router_aux_weight=0.01", "--model.net.init_args.block=residual"),
], ids=["quickstart", "focal_mixing_aux_residual"])
def test_training_steps_between_logging_steps_read_nothing_back(tiny_fit_args, extra):
    counter = _fit(tiny_fit_args(), *extra)
    assert len(counter.per_step) == 6  # 9 steps, less the first and the 4th and 8th (logging)
    assert {step: calls for step, calls in counter.per_step.items() if calls} == {}


@pytest.mark.slow
def test_the_slice_recipe_with_its_own_settings_reads_nothing_back(real_data_dir, tmp_path):
    # configs/slice.yaml as users run it: its network, batch 128, whole-batch augmentation on
    # the device path (TrivialAugment too), bf16 autocast, the whitening stem, flip TTA; only
    # the length is cut
    counter = _fit(["--config", str(CONFIGS / "slice.yaml"), f"--data.data_dir={real_data_dir}",
                    f"--trainer.default_root_dir={tmp_path}", "--trainer.max_epochs=1",
                    "--trainer.limit_val_batches=2"])
    assert len(counter.per_step) == 6
    assert {step: calls for step, calls in counter.per_step.items() if calls} == {}


@pytest.mark.slow
def test_the_counter_sees_a_read_back(tiny_fit_args, monkeypatch):
    """The check itself: a training step that calls ``.item()`` is caught."""
    from cifar_moe.training.module import LitClassifier

    step = LitClassifier.training_step

    def reading_step(self, batch, batch_idx):
        out = step(self, batch, batch_idx)
        out["loss"].item()
        return out
    monkeypatch.setattr(LitClassifier, "training_step", reading_step)
    counter = _fit(tiny_fit_args())
    calls = [c for calls in counter.per_step.values() for c in calls]
    assert calls and all(c.startswith("item at ") and "test_host_sync.py" in c for c in calls)
