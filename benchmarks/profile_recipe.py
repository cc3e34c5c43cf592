"""Where a steady training step of a recipe spends its time: torch.profiler over real steps.

    python benchmarks/profile_recipe.py focal_onecycle            # GPU: after compile warm-up
    python benchmarks/profile_recipe.py slice --skip 5 --steps 5  # CPU smoke run

The recipe is fitted through ``cli_main`` (its data module, LightningModule, callbacks and
``auto`` settings) on the real slice repeated ``--tiled`` times, for ``--skip`` + ``--steps``
training batches of one epoch and one validation batch (early stopping needs val/acc). The
first ``--skip`` batches (compile, cuDNN autotuning, allocator growth) are not profiled.
Printed: wall time per step, device (kernel) time per step and their ratio (how busy the GPU
is), GPU operations per step, and the ops with the most self device and self CPU time.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from _checkout import DEFAULT_SLICE_DIR
from _epochs import fit_args, write_tiled
from _timing import device_name, synchronize
from lightning.pytorch.callbacks import Callback
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from cifar_moe.cli.main import cli_main
from cifar_moe.core.private_api import is_compiled


class StepProfiler(Callback):
    """Profiles training batches ``skip`` .. ``skip + steps - 1`` of the first epoch.

    Args:
        skip: batches run before profiling starts (warm-up, compile).
        steps: batches profiled.
    """

    def __init__(self, skip: int = 30, steps: int = 20) -> None:
        self.skip, self.steps, self.prof, self.wall_s = skip, steps, None, 0.0
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.skip:
            synchronize(pl_module.device)
            cuda = pl_module.device.type == "cuda"
            self.prof = profile(activities=[ProfilerActivity.CPU]
                                + ([ProfilerActivity.CUDA] if cuda else []))
            self.prof.start()
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.prof is not None and batch_idx == self.skip + self.steps - 1:
            synchronize(pl_module.device)
            self.wall_s = time.perf_counter() - self._start
            self.prof.stop()


def summary(prof, wall_s: float, steps: int, rows: int) -> list[str]:
    """Per-step wall and kernel time, launches per step, and the top ops."""
    # GPU-timeline events minus user annotations (e.g. Lightning's "Optimizer.step#SGD.step"
    # span, which wraps the whole closure: forward, backward and step), so each is a kernel,
    # copy or memset and their times do not overlap.
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA
               and not getattr(e, "is_user_annotation", False)]
    kernel_s = sum(e.time_range.elapsed_us() for e in kernels) / 1e6
    lines = [f"wall per step: {1e3 * wall_s / steps:.2f} ms over {steps} steps",
             f"kernel time per step: {1e3 * kernel_s / steps:.2f} ms "
             f"(GPU busy {kernel_s / wall_s:.0%} of the wall time)" if kernels else
             "kernel time: no CUDA kernels (CPU run)",
             f"GPU operations (kernels, copies, memsets) per step: {len(kernels) / steps:.0f}", ""]
    table = prof.key_averages()
    if kernels:
        lines += [table.table(sort_by="self_device_time_total", row_limit=rows), ""]
    return [*lines, table.table(sort_by="self_cpu_time_total", row_limit=rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="a recipe in configs/, e.g. focal_onecycle")
    parser.add_argument("--skip", type=int, default=30, help="warm-up batches, not profiled")
    parser.add_argument("--steps", type=int, default=20, help="batches profiled")
    parser.add_argument("--tiled", type=int, default=2, help="copies of the slice to train on")
    parser.add_argument("--rows", type=int, default=15, help="ops listed per table")
    parser.add_argument("--data-dir", default=DEFAULT_SLICE_DIR, help="the real slice")
    parser.add_argument("--fit-args", action="append", default=[], metavar="ARG",
                        help="repeatable: one more fit argument")
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # as cli_main does
    with tempfile.TemporaryDirectory() as tmp:
        images = write_tiled(args.data_dir, args.tiled, tmp)
        batches = args.skip + args.steps
        fit = fit_args(args.recipe, tmp, 1, max(images // 10, 1), str(Path(tmp) / "runs"),
                       str(Path(tmp) / "epochs.json"), None, args.fit_args)
        fit += [f"--trainer.limit_train_batches={batches}", "--trainer.limit_val_batches=1",
                "--trainer.num_sanity_val_steps=0"]
        spec = {"class_path": "__main__.StepProfiler",
                "init_args": {"skip": args.skip, "steps": args.steps}}
        cli = cli_main([*fit, f"--trainer.callbacks+={json.dumps(spec)}"])
    profiler = next(c for c in cli.trainer.callbacks if type(c).__name__ == "StepProfiler")
    if profiler.prof is None or not profiler.wall_s:
        sys.exit(f"error: the epoch ended before {batches} batches; use a larger --tiled")
    print(f"{args.recipe}: {device_name(cli.trainer.strategy.root_device)}, "
          f"torch {torch.__version__}, precision {cli.trainer.precision}, "
          f"device path {cli.datamodule.uses_device_path}, channels_last "
          f"{cli.model.channels_last}, compiled "
          f"{is_compiled(cli.model.net)}")
    print("\n".join(summary(profiler.prof, profiler.wall_s, args.steps, args.rows)))


if __name__ == "__main__":
    main()
