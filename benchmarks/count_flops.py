"""Training FLOPs per image and parameter counts of a study's networks, in both expert
implementations (issue 34: the FLOP- and parameter-matched static rows are sized with it).

Training FLOPs: one forward and one backward pass (cross-entropy, train mode) of a batch of
128 on the CPU in float32, counted by ``torch.utils.flop_counter.FlopCounterMode`` and divided
by the batch. Each routed layer is counted with ``impl: mixture`` (K convolutions, mixed
outputs) and with ``impl: aggregate`` (mixed kernels, one grouped convolution); a static
(K = 1) network computes the same in both. Parameters: every parameter, trainable or not.

    python benchmarks/count_flops.py --study configs/studies/routing.yaml
    python benchmarks/count_flops.py --config configs/archive/slice_v2.yaml \
        --config configs/controls/static_flops.yaml
"""
import argparse
import importlib
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from cifar_moe.models.expert_conv import ExpertConv2d  # noqa: E402
from cifar_moe.models.presets import preset_spec  # noqa: E402

BATCH = 128
IMPLS = ("mixture", "aggregate")
NET_ARG = "--model.net.init_args."


def _merge(into: dict, new: dict) -> dict:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def net_spec(configs: list[str], args: list[str] = ()) -> dict:
    """The ``class_path`` / ``init_args`` of the network that ``--config`` files (in order,
    later over earlier, paths relative to the project root) and ``--model.net.init_args.K=V``
    args give; a ``model.net`` that is a preset path is read from that preset."""
    spec: dict = {}
    for config in configs:
        path = ROOT / config
        net = (yaml.safe_load(path.read_text()) or {}).get("model", {}).get("net")
        if isinstance(net, str):
            net = preset_spec(str((path.parent / net).resolve()))
        if net:
            _merge(spec, net)
    for arg in args:
        if arg.startswith(NET_ARG):
            key, _, value = arg[len(NET_ARG):].partition("=")
            spec.setdefault("init_args", {})[key] = yaml.safe_load(value)
    return spec


def build(spec: dict) -> torch.nn.Module:
    """The network of a spec (a preset-style ``class_path`` / ``init_args`` dict)."""
    module_name, _, class_name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**spec.get("init_args", {}))


def training_flops(net: torch.nn.Module, impl: str, batch: int = BATCH) -> float:
    """FLOPs of one forward + backward pass per image, every routed layer set to ``impl``."""
    for module in net.modules():
        if isinstance(module, ExpertConv2d):
            module.impl = impl
    net.train()
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(net(x), y).backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def count(spec: dict) -> dict:
    """Parameters and training FLOPs per image (one entry per implementation) of a spec."""
    torch.manual_seed(0)
    net = build(spec)
    out = {"params": sum(p.numel() for p in net.parameters())}
    for impl in IMPLS:
        out[impl] = training_flops(net, impl)
    return out


def study_specs(study: str) -> dict[str, dict]:
    """Each row's network spec of a study YAML (its ``configs`` and ``args``)."""
    raw = yaml.safe_load((ROOT / study).read_text())
    top = list(raw.get("args", []))
    return {row["name"]: net_spec(row["configs"], [*top, *row.get("args", [])])
            for row in raw["rows"]}


def table(counts: dict[str, dict], reference: str | None) -> str:
    ref = counts.get(reference) if reference else None
    head = "| row | params | train MFLOP/img mixture | aggregate |"
    lines = [head + (" vs ref (mixture, params) |" if ref else ""),
             "|---" * (5 if ref else 4) + "|"]
    for name, c in counts.items():
        line = (f"| {name} | {c['params']:,} | {c['mixture'] / 1e6:,.1f} | "
                f"{c['aggregate'] / 1e6:,.1f} |")
        if ref:
            line += (f" {c['mixture'] / ref['mixture'] - 1:+.1%}, "
                     f"{c['params'] / ref['params'] - 1:+.1%} |")
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", help="count every row of this study YAML")
    parser.add_argument("--config", action="append", default=[],
                        help="a fit config (repeat to layer overlays)")
    parser.add_argument("--reference", default=None,
                        help="row to compare with (default: the study's reference)")
    opts = parser.parse_args()
    specs = study_specs(opts.study) if opts.study else {}
    if opts.config:
        specs[" + ".join(opts.config)] = net_spec(opts.config)
    if not specs:
        parser.error("give --study or --config")
    reference = opts.reference
    if reference is None and opts.study:
        reference = yaml.safe_load((ROOT / opts.study).read_text()).get("reference")
    print(table({name: count(spec) for name, spec in specs.items()}, reference))


if __name__ == "__main__":
    main()
