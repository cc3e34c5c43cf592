"""bench_overhead.py (issue 37) runs end to end and prints its line, and its operator counts
tell work from views: the smoke tier, on a tiny network."""

import re
import sys
from pathlib import Path

import torch
from tiny_run import TINY_ROUTED_NET
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_overhead  # noqa: E402
from _ops import top_level_ops  # noqa: E402

LINE = re.compile(r"overhead: template [\d.]+ ms/step, plain loop [\d.]+ ms/step, ratio [\d.]+; "
                  r"ops/step template (\d+), plain (\d+)")


def test_views_and_metadata_ops_are_counted_but_not_as_work():
    x = torch.randn(4, 3)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        x.t()  # a view
        x.reshape(12)  # contiguous: a view
        x.t().reshape(12)  # not contiguous: reshape copies (clone inside)
        x + 1  # a kernel
    ops = top_level_ops(prof)
    assert [name for name, _ in ops] == ["aten::t", "aten::reshape", "aten::t",
                                         "aten::reshape", "aten::add"]
    assert [works for _, works in ops] == [False, False, False, True, True]


def test_a_compiled_functions_fused_kernels_count_as_working_ops():
    from cifar_moe.core.private_api import profile_compiled_kernels

    profile_compiled_kernels()
    fused = torch.compile(lambda x: (x * 2 + 1).relu().sum(dim=1))
    x = torch.randn(64, 32)
    fused(x)  # compiles
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fused(x)
    ops = top_level_ops(prof)
    # Inductor fuses the four ops into one or two generated kernels, and calls no aten op
    # for them: without counting the kernels the call would count as no work at all.
    kernels = [works for name, works in ops if name == "inductor::cpp_fused"]
    assert 1 <= len(kernels) <= 2 and all(kernels)
    assert not any(name in ("aten::mul", "aten::add", "aten::relu") for name, _ in ops)


def test_the_benchmark_prints_its_line_and_the_working_count(capsys):
    bench_overhead.main(["--config", str(ROOT / "configs" / "quickstart.yaml"),
                         "--batch-size", "4", "--warmup", "1", "--steps", "2", "--count", "1",
                         "--list-ops", *[f"--fit-args={a}" for a in TINY_ROUTED_NET]])
    out = capsys.readouterr().out.splitlines()
    found = LINE.fullmatch(out[-1])
    assert found, out[-1]
    template, plain = int(found[1]), int(found[2])
    assert template >= plain > 0  # the template's step does at least the network's work
    working = re.fullmatch(r"working ops/step \(no views or metadata ops\): "
                           r"template (\d+), plain (\d+)", out[-2])
    assert working and 0 < int(working[2]) < plain and int(working[1]) < template
