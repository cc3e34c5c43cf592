"""Network speed: parameters, forward FLOPs, train/eval img/s and FLOP/s against ResNet-18.

    python benchmarks/bench_models.py             # about 3 minutes on 2 idle CPU cores
    python benchmarks/bench_models.py --quick     # fewer timed iterations
    python benchmarks/bench_models.py --threads 1 # steadier on a CPU shared with others
    python benchmarks/bench_models.py --only slice --cpu-bf16 --batch 128  # as slice.yaml trains

FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one forward pass of one 32x32
image (a multiply-add is 2 FLOPs). "executed" is what that implementation runs: ``mixture``
runs all K expert convs, about K times the expert FLOPs of ``aggregate``; ``aggregate``
adds the kernel-mixing matmul. "useful" is the same preset with ``num_experts=1``, one
expert-sized conv per block and no router: the work a static net of the same widths does,
so a network cannot look efficient by doing K times the work. ResNet-18 and the K=1
control execute exactly their useful FLOPs.

Achieved training FLOP/s = 3 x forward FLOPs per image x train img/s (the usual
"backward costs two forwards" convention), on both bases; the ratios divide by
ResNet-18's, timed in the same process so that most machine drift cancels.

CPU: fp32 (``--cpu-bf16``: bf16 autocast), batch 64, ``--threads`` threads (2 by default);
train = forward + backward + SGD step; one warm-up step, then the median of the timed
steps. On a CPU shared with other jobs, 2 threads suffer: each op waits at a barrier for a
descheduled thread (a 1 ms 1x1 conv took 29 ms with 2 threads beside two busy processes,
1 ms with 1 thread), which penalises networks of many small ops; ``--threads 1`` measures
the kernels instead.
GPU (only when CUDA is available): bf16 autocast, channels_last, batch ``--gpu-batch``,
two warm-up steps (several more are spent compiling with ``--compile``).
"""

import argparse
from contextlib import nullcontext
from pathlib import Path

import torch
import yaml
from _timing import forward_flops, median_rate

from cifar_moe.models import MoENet
from cifar_moe.models.presets import build_net

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def overlay(name: str) -> dict:
    """The network overrides of a config overlay in ``configs/``, so none is typed twice."""
    spec = yaml.safe_load((CONFIGS / name).read_text())
    return spec["model"]["net"]["init_args"]


ROWS = [  # (row name, preset, overrides)
    ("seed_a mixture", "seed_a", {"impl": "mixture"}),
    ("seed_a aggregate", "seed_a", {"impl": "aggregate"}),
    ("seed_a auto", "seed_a", {"impl": "auto"}),
    ("seed_b mixture", "seed_b", {"impl": "mixture"}),
    ("seed_b aggregate", "seed_b", {"impl": "aggregate"}),
    ("seed_b auto", "seed_b", {"impl": "auto"}),
    ("K=1 control", "seed_b", {"num_experts": 1}),
    ("slice (block 5 routed)", "slice", {}),
    ("slice every block routed", "slice", overlay("routing/every_block.yaml")),
    ("slice K=1", "slice", overlay("controls/k1.yaml")),
    ("slice static residual", "slice", overlay("controls/residual_static.yaml")),
    ("ResNet-18", "resnet18", {}),
]
REFERENCE = "ResNet-18"


def useful_flops(preset: str, net: torch.nn.Module) -> int:
    """FLOPs of the single-expert equivalent: the preset with K = 1."""
    if isinstance(net, MoENet) and net.num_experts > 1:
        return forward_flops(build_net(preset, num_experts=1))
    return forward_flops(net)


def images_per_second(net, batch: int, iters: int, warm: int, train: bool, device: str,
                      cpu_bf16: bool = False) -> float:
    """Median img/s over ``iters`` timed steps after ``warm`` untimed ones."""
    gpu = device == "cuda"
    fmt = torch.channels_last if gpu else torch.contiguous_format
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net.train(train)
    autocast = (torch.autocast(device, dtype=torch.bfloat16) if gpu or cpu_bf16
                else nullcontext())

    def step():
        with autocast, torch.set_grad_enabled(train):
            out = net(x)
        if train:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(out.float(), y).backward()
            opt.step()

    return median_rate(step, batch, iters, warm, device)


def measure(preset: str, overrides: dict, batch: int, iters: int, device: str,
            compile_net: bool = False, cpu_bf16: bool = False) -> dict:
    torch.manual_seed(0)
    net = build_net(preset, **overrides)
    row = {"params": sum(p.numel() for p in net.parameters()),
           "useful": useful_flops(preset, net)}
    if device == "cuda":
        net = net.to(device, memory_format=torch.channels_last)
    row["executed"] = forward_flops(net, device)
    warm = 1 if device == "cpu" else 2
    if compile_net:
        net, warm = torch.compile(net), 5  # the first steps of each mode compile
    row["train"] = images_per_second(net, batch, iters, warm, True, device, cpu_bf16)
    row["eval"] = images_per_second(net, batch, iters, warm, False, device, cpu_bf16)
    return row


def table(rows: dict, unit: float, unit_name: str) -> str:
    """Markdown table; FLOP/s ratios are to the reference row's."""
    ref = rows[REFERENCE]
    ref_exec, ref_useful = ref["executed"] * ref["train"], ref["useful"] * ref["train"]
    lines = [
        f"| network | params | fwd GFLOPs/img executed | useful | train img/s | eval img/s | "
        f"train {unit_name} executed | useful | executed vs ResNet-18 | useful vs ResNet-18 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['params'] / 1e6:.2f} M | {r['executed'] / 1e9:.3f} | "
            f"{r['useful'] / 1e9:.3f} | {r['train']:.1f} | {r['eval']:.1f} | "
            f"{3 * r['executed'] * r['train'] / unit:.1f} | "
            f"{3 * r['useful'] * r['train'] / unit:.1f} | "
            f"{r['executed'] * r['train'] / ref_exec:.2f} | "
            f"{r['useful'] * r['train'] / ref_useful:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 timed CPU steps, not 5")
    parser.add_argument("--batch", type=int, default=64, help="CPU batch size")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--cpu-bf16", action="store_true",
                        help="bf16 autocast on the CPU too (as configs/slice.yaml trains)")
    parser.add_argument("--gpu-batch", type=int, default=512, help="GPU batch size")
    parser.add_argument("--no-cpu", action="store_true", help="GPU rows only")
    parser.add_argument("--compile", action="store_true", help="torch.compile the GPU rows")
    parser.add_argument("--only", nargs="+", default=[], metavar="TEXT",
                        help="rows whose name contains any TEXT (ResNet-18 always runs)")
    args = parser.parse_args()
    rows = [r for r in ROWS if r[0] == REFERENCE or not args.only
            or any(text in r[0] for text in args.only)]
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as cli_main does: subnormals slow CPU convs up to 5x
    if not args.no_cpu:
        iters = 3 if args.quick else 5
        cpu = {name: measure(p, o, args.batch, iters, "cpu", cpu_bf16=args.cpu_bf16)
               for name, p, o in rows}
        precision = "bf16 autocast" if args.cpu_bf16 else "fp32"
        print(f"CPU, {args.threads} threads, {precision}, batch {args.batch}, "
              f"torch {torch.__version__}\n")
        print(table(cpu, 1e9, "GFLOP/s"))
    if not torch.cuda.is_available():
        print("\nGPU (bf16 autocast + channels_last): unmeasured (no GPU)")
        return
    iters = 10 if args.quick else 30
    gpu = {name: measure(p, o, args.gpu_batch, iters, "cuda", args.compile)
           for name, p, o in rows}
    compiled = ", torch.compile" if args.compile else ""
    print(f"\nGPU {torch.cuda.get_device_name()}, bf16 autocast + channels_last{compiled}, "
          f"batch {args.gpu_batch}\n")
    print(table(gpu, 1e12, "TFLOP/s"))


if __name__ == "__main__":
    main()
