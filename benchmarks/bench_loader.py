"""Training-loader throughput vs a model's training throughput, on this machine's CPU.

    python benchmarks/bench_loader.py [--data-dir DIR]

Loader: CIFAR10DataModule's train DataLoader (configs/mixup_cosine.yaml's augmentation, flip
+ random crop pad 4 + colour jitter 0.2/0.2/0.2, plus hue 0.05; batch 256) over
``--data-dir`` (default: the real slice beside the
checkout) or, where that has no ``cifar-10-batches-py/``, a generated folder; images/s for
num_workers 0, 1 and 2. Model: the quickstart network (configs/quickstart.yaml) doing
forward + backward + SGD step on in-memory batches of 256, 2 threads, fp32. If the loader's
img/s is well above the model's, data is not what limits CPU training.

Each figure is the median over timed windows after a warm-up (worker start-up and the
first batches are not timed). The load average is printed because a shared machine's
other work lowers every figure. Runs in about a minute on 2 cores.
"""

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch
import yaml
from _checkout import CONFIG_DIR, DEFAULT_SLICE_DIR

from cifar_moe.core.constants import BATCH_FOLDER
from cifar_moe.data import AugmentSettings, CIFAR10DataModule, write_synthetic_cifar
from cifar_moe.models import MoENet

BATCH = 256
RECIPE = CONFIG_DIR / "mixup_cosine.yaml"
# The recipe's augmentation plus a hue shift, so the costliest jitter step is timed too.
AUG = replace(AugmentSettings.of(yaml.safe_load(RECIPE.read_text())["data"]["augment"]), hue=0.05)


def _forever(loader) -> Iterator:
    # Epoch after epoch, so a window may span an epoch boundary (as training does).
    while True:
        yield from loader


def loader_rate(data_dir: str, workers: int, warmup: int = 3, window: int = 12,
                repeats: int = 3) -> float:
    """Median images/s of the training loader over ``repeats`` windows of batches."""
    dm = CIFAR10DataModule(data_dir=data_dir, val_size=0, batch_size=BATCH,
                           num_workers=workers, persistent_workers=True, augment=AUG)
    dm.setup("fit")
    batches = _forever(dm.train_dataloader())
    for _ in range(warmup):  # includes starting the worker processes
        next(batches)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        seen = sum(len(next(batches)[1]) for _ in range(window))
        rates.append(seen / (time.perf_counter() - start))
    return statistics.median(rates)


def model_rate(steps: int = 5) -> float:
    """Median images/s of forward + backward + SGD step of the quickstart network."""
    torch.manual_seed(0)
    net = MoENet(stem_width=32, widths=[64, 128, 256], pool_after=[0, 1, 2], num_experts=2)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        if step:  # step 0 is the warm-up (allocator, kernel selection)
            times.append(time.perf_counter() - start)
    return BATCH / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=DEFAULT_SLICE_DIR,
                        help="data_dir holding cifar-10-batches-py/ (default: $CIFAR_MOE_DATA, "
                             "else the real slice beside the checkout)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    data_dir = source = args.data_dir
    if not (Path(data_dir) / BATCH_FOLDER).is_dir():
        data_dir, source = tempfile.mkdtemp(), "generated folder (5,000 train images)"
        write_synthetic_cifar(data_dir, train_per_batch=1000, test_size=100)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"CPU ({os.cpu_count()} cores, load average {load}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, batch {BATCH}, data: {source}\n")
    model = model_rate()
    print("| num_workers | loader img/s | quickstart-net train img/s | loader / model |")
    print("|---|---|---|---|")
    for workers in (0, 1, 2):
        rate = loader_rate(data_dir, workers)
        print(f"| {workers} | {rate:.0f} | {model:.0f} | {rate / model:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
