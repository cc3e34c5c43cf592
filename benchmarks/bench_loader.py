"""Training-loader throughput vs a model's training throughput, on this machine's CPU.

    python benchmarks/bench_loader.py

Loader: CIFAR10DataModule's train DataLoader (flip + random crop pad 4 + colour jitter
0.2/0.2/0.2/0.05, batch 256) over the real slice when it is beside the checkout, else a
generated folder; images/s for num_workers 0, 1 and 2. Model: a small conv net (the
quickstart network) doing forward + backward + SGD step on in-memory batches of 256,
2 threads, fp32. If the loader's img/s is well above the model's, data is not what limits
CPU training. Each figure is the median over timed passes after a warm-up.
"""

import statistics
import tempfile
import time

import torch

from cifar_moe.data import CIFAR10DataModule, write_synthetic_cifar
from cifar_moe.models import MoENet
from cifar_moe.paths import REAL_SLICE_DIR, real_slice_available

BATCH = 256
AUG = {"flip_p": 0.5, "crop_padding": 4, "brightness": 0.2, "contrast": 0.2,
       "saturation": 0.2, "hue": 0.05}


def loader_rate(data_dir: str, workers: int, batches: int = 12) -> float:
    dm = CIFAR10DataModule(data_dir=data_dir, val_size=0, batch_size=BATCH,
                           num_workers=workers, persistent_workers=True, **AUG)
    dm.setup("fit")
    loader = dm.train_dataloader()
    rates = []
    for _ in range(2):  # pass 1 includes worker start-up; the median keeps the steady state
        it = iter(loader)
        next(it)
        start, seen = time.perf_counter(), 0
        for _ in range(batches):
            seen += len(next(it)[1])
        rates.append(seen / (time.perf_counter() - start))
    return statistics.median(rates)


def model_rate(steps: int = 5) -> float:
    torch.manual_seed(0)
    net = MoENet(stem_width=32, widths=[64, 128, 256], pool_after=[0, 1, 2], num_experts=2)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - start)
    return BATCH / statistics.median(times)


def main() -> None:
    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    if real_slice_available():
        data_dir, source = str(REAL_SLICE_DIR), "real slice"
    else:
        data_dir, source = tempfile.mkdtemp(), "generated folder"
        write_synthetic_cifar(data_dir, train_per_batch=1000, test_size=100)
    model = model_rate()
    print(f"CPU, {torch.get_num_threads()} threads, batch {BATCH}, data: {source}\n")
    print("| num_workers | loader img/s | quickstart-net train img/s | loader / model |")
    print("|---|---|---|---|")
    for workers in (0, 1, 2):
        rate = loader_rate(data_dir, workers)
        print(f"| {workers} | {rate:.0f} | {model:.0f} | {rate / model:.1f}x |")


if __name__ == "__main__":
    main()
