"""Network speed on this machine: parameters, FLOPs, train/eval img/s, FLOP/s vs ResNet-18.

    python benchmarks/bench_models.py            # full (about 3 minutes on 2 cores)
    python benchmarks/bench_models.py --quick    # fewer iterations

FLOPs are counted by torch.utils.flop_counter for one forward pass of one image (a
multiply-add is 2 FLOPs). "executed" counts what runs: the mixture implementation runs all
K expert convs, so it executes about K times the expert FLOPs of the aggregate one.
"useful" counts one expert-sized conv per block (what a static net of the same widths
would run), the honest basis for comparing against ResNet-18. Achieved FLOP/s =
3 x forward FLOPs x training img/s (backward ~ 2x forward), given on both bases.
ResNet-18 runs in the same process, so the ratio cancels most machine noise.
"""

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from cifar_moe.models.presets import build_net

ROWS = [
    ("seed_a mixture", "seed_a", {"impl": "mixture"}),
    ("seed_a aggregate", "seed_a", {"impl": "aggregate"}),
    ("seed_b mixture", "seed_b", {"impl": "mixture"}),
    ("seed_b aggregate", "seed_b", {"impl": "aggregate"}),
    ("K=1 control (seed_b, K=1)", "seed_b", {"num_experts": 1}),
    ("ResNet-18", "resnet18", {}),
]


def forward_flops(net: torch.nn.Module) -> int:
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.randn(1, 3, 32, 32))
    return counter.get_total_flops()


def images_per_second(net, batch: int, iters: int, train: bool) -> float:
    """Median over timed iterations, after two warm-up iterations."""
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net.train(train)
    times = []
    for i in range(iters + 2):
        start = time.perf_counter()
        if train:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        else:
            with torch.no_grad():
                net(x)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def measure(name, preset, overrides, batch, iters) -> dict:
    torch.manual_seed(0)
    net = build_net(preset, **overrides)
    executed = forward_flops(net)
    useful = executed
    if overrides.get("impl") == "mixture":
        useful = forward_flops(build_net(preset, **{**overrides, "impl": "aggregate"}))
    return {
        "name": name,
        "params": sum(p.numel() for p in net.parameters()),
        "executed": executed,
        "useful": useful,
        "train": images_per_second(net, batch, iters, train=True),
        "eval": images_per_second(net, batch, iters, train=False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 timed iterations, not 8")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as cli_main does: subnormals slow CPU convs up to 5x
    iters = 3 if args.quick else 8
    rows = [measure(n, p, o, args.batch, iters) for n, p, o in ROWS]
    ref = rows[-1]
    ref_rate = 3 * ref["useful"] * ref["train"]
    print(f"CPU, {args.threads} threads, fp32, batch {args.batch}, torch {torch.__version__}\n")
    print("| network | params | fwd GFLOPs/img executed | useful | train img/s | eval img/s "
          "| train GFLOP/s executed | useful | useful FLOP/s vs ResNet-18 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rate_exec = 3 * r["executed"] * r["train"] / 1e9
        rate_useful = 3 * r["useful"] * r["train"] / 1e9
        print(f"| {r['name']} | {r['params'] / 1e6:.2f} M | {r['executed'] / 1e9:.3f} | "
              f"{r['useful'] / 1e9:.3f} | {r['train']:.1f} | {r['eval']:.1f} | {rate_exec:.1f} | "
              f"{rate_useful:.1f} | {rate_useful * 1e9 / ref_rate:.2f} |")
    gpu = "measured separately" if torch.cuda.is_available() else "unmeasured (no GPU here)"
    print(f"\nGPU bf16 + channels_last: {gpu}")


if __name__ == "__main__":
    main()
