"""Speed suite: data paths vs synthetic data, per network, plus augmentation throughput.

    python benchmarks/bench_suite.py            # about 4 minutes on 2 CPU cores
    python benchmarks/bench_suite.py --quick

Table 1 (augmentation only): training batches/s of the classic per-image DataLoader
path (2 workers) and of the device-resident batch path, with each recipe's augmentation.
Table 2 (training): img/s of forward + backward + SGD step at each recipe's batch size,
fed by (a) synthetic in-memory tensors, (b) the classic DataLoader path, (c) the device
path; the ratio of each path to synthetic; the projected time of a 50,000-image epoch
(50,000 / measured img/s, a projection, not a measured epoch); the peak resident memory of
a fresh process running that row. On a GPU the same rows run there and add TFLOP/s and
MFU; with no GPU those columns say "unmeasured". Data: a generated folder in the CIFAR
layout (timing does not depend on pixel values).
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from cifar_moe.data import CIFAR10DataModule, write_synthetic_cifar
from cifar_moe.models.presets import build_net

AUG = {
    "seed A aug": {"flip_p": 0.5, "crop_padding": 4, "brightness": 0.2, "contrast": 0.2,
                   "saturation": 0.2},
    "seed B aug": {"flip_p": 0.3, "crop_padding": 0, "rotation_degrees": 10, "brightness": 0.15,
                   "contrast": 0.15, "saturation": 0.15, "hue": 0.075},
}
ROWS = {  # name: (preset, overrides, batch size, augmentation)
    "seed_a": ("seed_a", {}, 256, "seed A aug"),
    "seed_b": ("seed_b", {}, 128, "seed B aug"),
    "k1_control": ("seed_b", {"num_experts": 1}, 128, "seed B aug"),
    "resnet18": ("resnet18", {}, 128, "seed B aug"),
}


def datamodule(data_dir, batch, aug, device_augment, workers=2) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(data_dir=data_dir, val_size=0, batch_size=batch, num_workers=workers,
                           device_augment=device_augment, **AUG[aug])
    dm.setup("fit")
    return dm


def batches(dm, device):
    """Endless (images, labels) on ``device`` through the data module's own train path."""
    while True:
        for batch in dm.train_dataloader():
            batch = batch.to(device) if torch.is_tensor(batch) else [t.to(device) for t in batch]
            yield dm.on_after_batch_transfer(batch, 0)


def rate(step, source, batch: int, iters: int) -> float:
    """img/s: median of ``iters`` timed steps after 5 warm-up steps (cuDNN picks algorithms
    and the allocator grows during the first ones)."""
    times = []
    for i in range(iters + 5):
        start = time.perf_counter()
        step(*next(source))
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if i >= 5:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}  # dense bf16 tensor-core peak, SXM


def forward_flops(net) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.randn(1, 3, 32, 32, device=next(net.parameters()).device))
    net.train()
    return counter.get_total_flops()


def train_row(name: str, data_dir: str, iters: int, device: str) -> dict:
    preset, overrides, batch, aug = ROWS[name]
    torch.manual_seed(0)
    net = build_net(preset, **overrides).to(device)
    gpu = device == "cuda"
    if gpu:  # the GPU setting the template offers: bf16 autocast + channels_last
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step(images, labels):
        opt.zero_grad(set_to_none=True)
        if gpu:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=gpu):
            loss = torch.nn.functional.cross_entropy(net(images), labels)
        loss.backward()
        opt.step()

    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    synthetic = iter(lambda: (x, y), None)
    out = {"synthetic": rate(step, synthetic, batch, iters)}
    for path, on_device in (("classic", False), ("device", True)):
        source = batches(datamodule(data_dir, batch, aug, on_device), device)
        out[path] = rate(step, source, batch, iters)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if gpu:
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["tflops"] = 3 * forward_flops(net) * out["synthetic"] / 1e12
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
        out["mfu"] = out["tflops"] / peak if peak else None
    return out


def augment_table(data_dir: str, iters: int) -> list[str]:
    lines = ["| augmentation | classic, 2 workers img/s | device path img/s | device / classic |",
             "|---|---|---|---|"]
    for aug in AUG:
        rates = []
        for on_device in (False, True):
            source = batches(datamodule(data_dir, 256, aug, on_device), "cpu")
            rates.append(rate(lambda *b: None, source, 256, iters * 3))
        lines.append(f"| {aug} | {rates[0]:.0f} | {rates[1]:.0f} | {rates[1] / rates[0]:.1f}x |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--iters", type=int, help="timed steps per figure (default 4, quick 2)")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: one row, JSON out
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    iters = args.iters or (2 if args.quick else 4)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.row:
        print(json.dumps(train_row(args.row, args.data_dir, iters, device)))
        return
    data_dir = tempfile.mkdtemp()
    write_synthetic_cifar(data_dir, train_per_batch=1000, test_size=100)
    where = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device: {where}, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("\n".join(augment_table(data_dir, iters)) + "\n")
    print("| network | batch | synthetic img/s | classic img/s (ratio) | device img/s (ratio) "
          "| 50k epoch, projected | peak RSS | TFLOP/s, MFU |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (_, _, batch, _) in ROWS.items():
        cmd = [sys.executable, __file__, "--row", name, "--data-dir", data_dir,
               "--iters", str(iters)]
        r = json.loads(subprocess.run(cmd + (["--quick"] if args.quick else []), check=True,
                                      capture_output=True, text=True).stdout.splitlines()[-1])
        s = r["synthetic"]
        gpu = "unmeasured (no GPU)"
        if "tflops" in r:
            mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "peak unknown"
            gpu = f"{r['tflops']:.1f}, {mfu}; peak {r['peak_cuda_mb']:.0f} MB GPU"
        print(f"| {name} | {batch} | {s:.1f} | {r['classic']:.1f} ({r['classic'] / s:.2f}) | "
              f"{r['device']:.1f} ({r['device'] / s:.2f}) | {50_000 / s:.0f} s | "
              f"{r['peak_rss_mb']:.0f} MB | {gpu} |")


if __name__ == "__main__":
    main()
