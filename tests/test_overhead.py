"""Issue 37's measuring tools: the prepared GPU check (dry run) and the routed blocks'
operator counts (a regression guard: each operator is a launch on a GPU)."""

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from cifar_moe.models import PlainExpertBlock, ResidualExpertBlock

ROOT = Path(__file__).resolve().parents[1]
ROWS = 5
sys.path.insert(0, str(ROOT / "benchmarks"))
from _ops import top_level_ops  # noqa: E402  (the count bench_overhead.py reports)


def test_gpu_check_dry_run_writes_one_table_of_unmeasured_rows(tmp_path):
    out = tmp_path / "gpu.md"
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ")]
    assert rows[0] == "| measure | goal | command | value |" and len(rows) == 1 + ROWS
    assert all(row.endswith("| unmeasured (dry run) |") for row in rows[1:])
    commands = [line[2:] for line in done.stderr.splitlines() if line.startswith("$ ")]
    assert len(commands) == ROWS
    for command in commands:  # every script it names exists, with every option it passes
        script = next((w for w in command.split() if w.endswith(".py")), None)
        source = (ROOT / script).read_text() if script else ""
        for option in re.findall(r"\s(--[a-z-]+)", command if script else ""):
            assert f'"{option}"' in source, (script, option)


def test_gpu_check_refuses_an_unknown_argument():
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--bogus"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown argument --bogus" in done.stderr


def block_ops(block: torch.nn.Module, in_channels: int) -> Counter:
    """Operators of one training forward + backward of ``block`` (8x8, batch 8)."""
    x = torch.randn(8, in_channels, 8, 8, requires_grad=True)
    block.train()
    block(x).sum().backward()  # warm: lazy state, first-call paths
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        block(x).sum().backward()
    return Counter(name for name, _ in top_level_ops(prof))


# Before issue 37's rewrite: 66 and 86 (softmax -> mul -> sum mix, no-op casts, BatchNorm's
# step counters in the router); the K = 1 block is the floor a routed block adds to.
@pytest.mark.parametrize(("block", "channels", "at_most"), [
    (PlainExpertBlock(64, 128, 2, impl="mixture"), 64, 61),
    (ResidualExpertBlock(128, 256, 4, impl="mixture"), 128, 81),
    (PlainExpertBlock(64, 128, 1, impl="mixture"), 64, 16),
], ids=["plain_k2", "residual_k4", "plain_k1"])
def test_routed_block_operators_per_training_call(block, channels, at_most):
    ops = block_ops(block, channels)
    print(f"{sum(ops.values())} ops: {dict(ops.most_common())}")
    assert sum(ops.values()) <= at_most
    assert "aten::to" not in ops  # no cast that changes nothing
