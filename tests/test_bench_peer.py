"""The airbench94 peer benchmark: a one-epoch, two-batch run of both trainers on the
generated folder (format of the last line, result files, reuse on a rerun), and the peer's
whitening layer."""

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from cifar_moe.core.constants import BATCH_FOLDER
from cifar_moe.core.normalization import normalize_uint8
from cifar_moe.data import read_split

# The benchmarks are scripts, not a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_peer
from peer_airbench import init_whitening, make_net
from testset_ledger import LEDGER, record_test_use
from tiny_run import TINY_ROUTED_NET

LAST_LINE = re.compile(
    r"peer: \d+\.\d \+/- \d+\.\d % \(1 seed, 1 epochs, \d+\.\d min idle\); "
    r"template: \d+\.\d \+/- \d+\.\d % \(1 seed, 1 epochs, \d+\.\d min idle\); "
    r"ratio (\d+\.\d{3}|n/a)")


def _run(data_dir: Path, out: Path, capsys, ledger: Path) -> list[str]:
    tiny = [a.removeprefix("--") for a in TINY_ROUTED_NET] + [
        "data.num_workers=0", "data.batch_size=16"]
    bench_peer.main([
        "--data-dir", str(data_dir), "--seeds", "1", "--peer-epochs", "1",
        "--template-epochs", "1", "--limit-batches", "2", "--out", str(out), "--test",
        "--ledger", str(ledger),
        "--template-config", "configs/quickstart.yaml",
        *[f"--template-arg={a}" for a in tiny]])
    return [line for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_tiny_benchmark_runs_writes_results_and_reuses_them(synthetic_data_dir, tmp_path,
                                                            capsys):
    out = tmp_path / "results"
    ledger = tmp_path / "test_set_uses.md"  # the real ledger's head: 6 rows, count 6
    ledger.write_text(LEDGER.read_text().split("| 7 |")[0].split("Count since")[0]
                      + "\nCount since the protocol: **6**.\n")
    lines = _run(synthetic_data_dir, out, capsys, ledger)
    assert LAST_LINE.fullmatch(lines[-1]), lines[-1]
    assert any(line.startswith("paired template - peer: ") for line in lines)
    assert any(line.startswith("test (once per fit): ") for line in lines)
    files = sorted(out.glob("*.json"))
    stored = json.loads((out / "template_seed0.json").read_text())
    assert "data_dir" not in stored["settings"] and len(stored["settings"]["data"]) == 64
    routing = stored["detail"]["routing"]
    assert {"route/block1/balance", "route/block1/mutual_info",
            "route/block1/dead_fraction"} <= routing.keys(), routing  # the routed block
    assert [f.name for f in files] == ["peer_seed0.json", "template_seed0.json"]
    stamps = [f.stat().st_mtime_ns for f in files]

    text = ledger.read_text()  # each fit's test scoring is counted, as it finishes
    assert "Count since the protocol: **8**." in text
    assert "| 7 | `bench_peer.py --test`, peer (airbench94 rewrite), fold 0, seed 0" in text
    assert "| 8 | `bench_peer.py --test`, template `configs/quickstart.yaml`, fold 0" in text

    again = _run(synthetic_data_dir, out, capsys, ledger)
    assert sum("(reused " in line for line in again) == 2  # no new fit
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert again[-1] == lines[-1]
    assert ledger.read_text() == text  # a reused result scored nothing


def test_seeds_beyond_fold_six_are_refused(synthetic_data_dir):
    with pytest.raises(SystemExit, match="only folds 0-6 are used"):
        bench_peer.main(["--data-dir", str(synthetic_data_dir), "--seeds", "8"])


def test_whitening_conv_whitens_the_patches_it_was_set_from(synthetic_data_dir):
    images, _ = read_split(synthetic_data_dir / BATCH_FOLDER, train=True)
    normed = normalize_uint8(images)
    for eps in (0.0, 5e-4):
        conv = make_net()[0]
        eigenvalues = init_whitening(conv, normed, eps=eps)
        with torch.no_grad():  # the first 12 filters; the other 12 are their negatives
            feats = torch.nn.functional.conv2d(normed, conv.weight[:12].contiguous())
        feats = feats.permute(0, 2, 3, 1).reshape(-1, 12).double()
        second_moment = feats.T @ feats / len(feats)  # uncentred, as the init uses
        expected = torch.diag(eigenvalues / (eigenvalues + eps)).double()  # eps=0: identity
        torch.testing.assert_close(second_moment, expected, atol=2e-3, rtol=2e-3)
        torch.testing.assert_close(conv.weight[12:], -conv.weight[:12])


def test_the_ledger_refuses_a_readme_without_its_count(tmp_path):
    ledger, readme = tmp_path / "uses.md", tmp_path / "README.md"
    ledger.write_text("| # | a | b | c |\n|---|---|---|---|\n| 1 | x | y | z |\n\n"
                      "Count since the protocol: **1**.\n")
    readme.write_text("no count here\n")
    with pytest.raises(ValueError, match="scorings since the protocol"):
        record_test_use("w", "why", "1.0 %", ledger, readme)
    assert "| 2 |" not in ledger.read_text()  # nothing written when a count is missing
    readme.write_text("**1 scorings since the protocol**\n")
    assert record_test_use("w", "why", "1.0 %", ledger, readme) == 2
    assert readme.read_text() == "**2 scorings since the protocol**\n"
    assert "| 2 | w | why | 1.0 % |\n\nCount since the protocol: **2**." in ledger.read_text()
