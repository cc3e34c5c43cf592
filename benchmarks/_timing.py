"""Timing, FLOP counting, peak FLOP/s and peak memory, shared by the benchmarks.

Training FLOPs per image are 3 x forward FLOPs (the usual "backward costs two forwards"
convention); forward FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` over one
32x32 image (a multiply-add is 2 FLOPs), executed on the device being timed (``impl: auto``
picks a different expert-conv implementation on CPU and GPU).
"""

import resource
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cifar_moe.core.private_api import call_eager

# Dense (no sparsity) bf16 tensor-core peak FLOP/s, keyed by the EXACT name
# torch.cuda.get_device_name() reports: an H100 PCIe is not an H100 SXM. Vendor data sheets.
BF16_DENSE_PEAK = {
    "NVIDIA H100 80GB HBM3": 989.4e12,  # H100 SXM5
    "NVIDIA H100 PCIe": 756.5e12,
    "NVIDIA H100 NVL": 835.5e12,
    "NVIDIA H200": 989.4e12,  # H200 SXM
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "NVIDIA A100-PCIE-40GB": 312e12,
}


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_rate(step: Callable[[], object], images_per_step: int, iters: int, warm: int,
                device: torch.device | str) -> float:
    """img/s: the median of ``iters`` timed calls of ``step`` after ``warm`` untimed ones
    (cuDNN picks algorithms, compile compiles and the allocator grows in the first ones)."""
    times = []
    for i in range(warm + iters):
        start = time.perf_counter()
        step()
        synchronize(device)
        if i >= warm:
            times.append(time.perf_counter() - start)
    return images_per_step / statistics.median(times)


def forward_flops(net: nn.Module, device: torch.device | str = "cpu") -> int:
    """FLOPs of one forward pass of one image on ``device``, counted eagerly (a module
    compiled in place is called eagerly: ``call_eager``); the mode is restored."""
    was_training = net.training
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        call_eager(net, torch.randn(1, 3, 32, 32, device=device))
    net.train(was_training)
    return counter.get_total_flops()


def autocast_for(precision: str, device: torch.device | str):
    """The autocast context a Lightning precision string implies (fp32: none)."""
    kind = torch.device(device).type
    if str(precision).startswith("bf16"):
        return torch.autocast(kind, dtype=torch.bfloat16)
    if str(precision).startswith("16"):
        return torch.autocast(kind, dtype=torch.float16)
    return nullcontext()


def synthetic_train_rate(net: nn.Module, batch: int, iters: int, warm: int,
                         device: torch.device | str, precision: str = "32-true",
                         channels_last: bool = False) -> float:
    """Training img/s of ``net`` on in-memory random tensors: forward, cross-entropy,
    backward, SGD step; the network's ceiling for any data path."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    net.train()

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast_for(precision, device):
            out = net(x)
        torch.nn.functional.cross_entropy(out.float(), y).backward()
        opt.step()

    return median_rate(step, batch, iters, warm, device)


def peak_flops(device_name: str, precision: str) -> float | None:
    """Peak FLOP/s for this exact device at this precision; None = unknown (so no MFU)."""
    if not str(precision).startswith("bf16"):
        return None  # the table holds bf16 peaks only; fp32/tf32 peaks differ
    return BF16_DENSE_PEAK.get(device_name)


def mfu(forward_flops_per_image: int, images_per_s: float, device_name: str,
        precision: str) -> float | None:
    """Model FLOPs utilisation: 3 x forward FLOPs x img/s over the device's peak."""
    peak = peak_flops(device_name, precision)
    return None if peak is None else 3 * forward_flops_per_image * images_per_s / peak


def peak_memory_mb(device: torch.device | str) -> float:
    """Peak GPU memory allocated by torch (CUDA), else this process's peak resident set."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def device_name(device: torch.device | str) -> str:
    """The exact CUDA device name, or 'CPU'."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return "CPU"
