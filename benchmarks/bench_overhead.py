"""The template's training step against a plain PyTorch loop: time and operators per step.

    python benchmarks/bench_overhead.py                                  # slice recipe, CPU
    python benchmarks/bench_overhead.py --config configs/focal_onecycle.yaml --batch-size 16
    python benchmarks/bench_overhead.py --device cuda                    # on a GPU

The same network (one init, copied), batch, in-memory data and optimizer run two ways:
``Trainer.fit`` of the recipe as ``cli_main`` builds it (LitClassifier with its loss, mixing,
metrics and logging, every default callback, the recipe's precision and ``auto`` settings),
and a plain loop (forward, cross-entropy, backward, the recipe's optimizer with foreach).
The two alternate step by step in one process: a plain step runs after each template step,
so both see the same machine load. Template time per step is everything the trainer does
between two plain steps (data transfer, hooks, step, scheduler, logging). After ``--warmup``
pairs, the medians of ``--steps`` pairs are reported.

Operators per step: the top-level aten calls ``torch.profiler`` records (an op called inside
another op is not counted again; backward ops count), over ``--count`` steps of each way that
are not logging steps (Lightning's ``log_every_n_steps``). On a GPU each is roughly a launch;
``--list-ops`` also gives the count without views and metadata ops (``_ops.py``).
"""

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _ops import top_level_ops
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch.profiler import ProfilerActivity, profile

from cifar_moe.cli.main import cli_main
from cifar_moe.core.private_api import is_compiled, profile_compiled_kernels
from cifar_moe.data import write_synthetic_cifar

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DISTINCT_BATCHES = 4  # the in-memory data: this many batches, cycled


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PlainLoop:
    """Forward, cross-entropy, backward, optimizer step: the recipe's network (a copy) under
    the trainer's settled precision, channels_last and compile, with the recipe's optimizer."""

    def __init__(self, net: torch.nn.Module, module, trainer) -> None:
        self.device = trainer.strategy.root_device
        self.net = net.to(self.device)
        self.channels_last = module.channels_last
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if is_compiled(module.net):
            self.net.compile()
        self.optimizer = module.optimizer_factory(self.net.parameters())
        for group in self.optimizer.param_groups:  # the bare baseline: one foreach update
            if "foreach" in group and group.get("fused") is not True:
                group["foreach"] = True
        precision = str(trainer.precision)
        dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(precision.split("-")[0])
        self.autocast = (dtype, precision.endswith("mixed"))

    def step(self, batch) -> None:
        images, labels = (t.to(self.device, non_blocking=True) for t in batch)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        dtype, mixed = self.autocast
        with torch.autocast(self.device.type, dtype=dtype or torch.float32,
                            enabled=bool(dtype) and mixed):
            loss = F.cross_entropy(self.net(images), labels)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class Interleave(Callback):
    """Runs one plain step after each template step; times both; profiles ``count`` steps of
    each (non-logging template steps, then as many plain steps) right after the warm-up."""

    def __init__(self, plain_net, data, warmup: int, count: int) -> None:
        self.plain_net, self.data, self.warmup, self.count = plain_net, data, warmup, count
        self.plain: PlainLoop | None = None
        self.template_s: list[float] = []
        self.plain_s: list[float] = []
        self.ops = {"template": [], "plain": []}
        self._resume, self._prof = 0.0, None

    def on_train_start(self, trainer, pl_module) -> None:
        self.plain = PlainLoop(self.plain_net, pl_module, trainer)
        self.first_counted = first_quiet_window(trainer.log_every_n_steps, self.warmup,
                                                self.count)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self._resume = time.perf_counter()
        if batch_idx == self.first_counted:
            self._prof = profile(activities=[ProfilerActivity.CPU])
            self._prof.start()
        elif batch_idx == self.first_counted + self.count:
            self._prof.stop()  # the counted steps' logging and scheduler work included
            self.ops["template"] = top_level_ops(self._prof)
            self._count_plain(batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        device = self.plain.device
        synchronize(device)
        start = time.perf_counter()
        counting = self.first_counted <= batch_idx < self.first_counted + self.count
        if batch_idx >= self.warmup and not counting:
            self.template_s.append(start - self._resume)
        if not counting:
            self.plain.step(self.data[batch_idx % len(self.data)])
            synchronize(device)
            if batch_idx >= self.warmup:
                self.plain_s.append(time.perf_counter() - start)
        self._resume = time.perf_counter()

    def _count_plain(self, batch_idx: int) -> None:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(self.count):
                self.plain.step(self.data[(batch_idx + i) % len(self.data)])
            synchronize(self.plain.device)
        self.ops["plain"] = top_level_ops(prof)
        self._resume = time.perf_counter()


def first_quiet_window(every_n: int, warmup: int, count: int) -> int:
    """The first batch index >= warmup from which ``count`` batches log nothing per step
    (Lightning logs after batch i when (i + 1) % every_n == 0, in a fresh run)."""
    start = warmup
    while every_n and any((i + 1) % every_n == 0 for i in range(start, start + count)):
        start += 1
    return start


def build(config: str, device: str, batch_size: int | None, extra: list[str], root: str):
    """The CLI's model and trainer for ``config`` (no data read: batches come from memory)."""
    data_dir = Path(root) / "data"
    write_synthetic_cifar(data_dir, train_per_batch=8, test_size=8)
    args = ["--config", config, f"--data.data_dir={data_dir}", "--data.val_size=8",
            f"--trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
            "--trainer.devices=1", f"--trainer.default_root_dir={root}",
            "--trainer.max_epochs=1", "--trainer.limit_val_batches=0",
            "--trainer.num_sanity_val_steps=0"]
    args += [f"--data.batch_size={batch_size}"] if batch_size else []
    return cli_main([*args, *extra], run=False)


class Cycle:
    """``length`` batches cycling over ``data`` (a list would read as several loaders)."""

    def __init__(self, data: list, length: int) -> None:
        self.data, self.length = data, length

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        return (self.data[i % len(self.data)] for i in range(self.length))


def in_memory_batches(batch_size: int, classes: int, seed: int = 0) -> list:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch_size, 3, 32, 32, generator=generator),
             torch.randint(0, classes, (batch_size,), generator=generator))
            for _ in range(DISTINCT_BATCHES)]


def run(args) -> dict:
    profile_compiled_kernels()  # a compiled step's fused kernels count as ops (_ops.py)
    with tempfile.TemporaryDirectory() as root:
        impl = [f"--model.net.init_args.impl={args.impl}"]
        cli = build(args.config, args.device, args.batch_size, impl + args.fit_args, root)
        batch = cli.datamodule.hparams.batch_size
        data = in_memory_batches(batch, len(cli.model.class_names))
        total = args.warmup + args.count + args.steps + 1
        # Set before fit, on the module's own net: the plain copy starts from the same weights.
        timer = Interleave(copy.deepcopy(cli.model.net), data, args.warmup, args.count)
        cli.trainer.callbacks.append(timer)
        # No validation runs, so a recipe's early stopping has no metric (and does no
        # per-step work): it is left out.
        cli.trainer.callbacks[:] = [c for c in cli.trainer.callbacks
                                    if not isinstance(c, EarlyStopping)]
        cli.trainer.fit(cli.model, train_dataloaders=Cycle(data, total))
    steps = max(args.count, 1)
    return {"template_ms": 1e3 * statistics.median(timer.template_s),
            "plain_ms": 1e3 * statistics.median(timer.plain_s),
            "template_ops": len(timer.ops["template"]) / steps,
            "plain_ops": len(timer.ops["plain"]) / steps, "batch": batch,
            "working": {way: sum(w for _, w in ops) / steps for way, ops in timer.ops.items()},
            "ops": timer.ops}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIG_DIR / "slice.yaml"), help="a recipe")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch-size", type=int, help="default: the recipe's")
    parser.add_argument("--impl", choices=("mixture", "aggregate", "auto"), default="mixture",
                        help="expert convs' implementation (mixture: the path a GPU takes)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed pairs first")
    parser.add_argument("--steps", type=int, default=20, help="timed pairs (median)")
    parser.add_argument("--count", type=int, default=2, help="profiled steps per way")
    parser.add_argument("--list-ops", action="store_true", help="print each way's op counts")
    parser.add_argument("--fit-args", action="append", default=[], metavar="ARG",
                        help="repeatable: one more CLI argument "
                             "(e.g. --fit-args=--model.compile=false)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    if args.steps < 1 or args.count < 1 or args.warmup < 1:
        parser.error("--steps, --count and --warmup: use 1 or more")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_flush_denormal(True)  # as cli_main does
    result = run(args)
    if args.list_ops:
        from collections import Counter
        for way in ("template", "plain"):
            counts = Counter(name for name, _ in result["ops"][way])
            print(f"{way}: " + ", ".join(f"{n} {c / args.count:g}"
                                         for n, c in counts.most_common()))
        print(f"working ops/step (no views or metadata ops): template "
              f"{result['working']['template']:.0f}, plain {result['working']['plain']:.0f}")
    print(f"{Path(args.config).name}, batch {result['batch']}, {args.device}, "
          f"torch {torch.__version__}", file=sys.stderr)
    print(f"overhead: template {result['template_ms']:.1f} ms/step, plain loop "
          f"{result['plain_ms']:.1f} ms/step, ratio "
          f"{result['template_ms'] / result['plain_ms']:.2f}; ops/step template "
          f"{result['template_ops']:.0f}, plain {result['plain_ops']:.0f}")


if __name__ == "__main__":
    main()
