"""Issue 15 benchmarks: exact-name peak FLOP/s, the tiled training set, and a smoke run of
``bench_suite.py --tiled`` (partial epochs of a tiny network; the table needs whole ones)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar_moe.data.cifar_files import read_class_names, read_split

# The benchmarks are scripts, not a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _epochs import write_tiled
from _timing import forward_flops, mfu, peak_flops
from tiny_run import TINY_NET

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_peak_flops_only_for_the_exact_device_and_bf16():
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16-mixed") == pytest.approx(989.4e12)
    assert peak_flops("NVIDIA H100 PCIe", "bf16-mixed") == pytest.approx(756.5e12)
    assert peak_flops("NVIDIA H100", "bf16-mixed") is None  # a prefix is not a device
    assert peak_flops("NVIDIA H100 80GB HBM3", "32-true") is None  # no fp32 peak in the table
    assert mfu(10**9, 1000.0, "CPU", "32-true") is None
    assert mfu(10**9, 1000.0, "NVIDIA A100-SXM4-80GB", "bf16-mixed") == pytest.approx(3e12 / 312e12)


def test_forward_flops_counts_a_conv_and_restores_the_mode():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)).train()
    assert forward_flops(net) == 2 * 3 * 4 * 9 * 32 * 32  # 2 FLOPs per multiply-add
    assert net.training


def test_tiled_folder_repeats_the_training_set(synthetic_data_dir, tmp_path):
    images, labels = read_split(synthetic_data_dir / "cifar-10-batches-py", train=True)
    assert write_tiled(synthetic_data_dir, 3, tmp_path) == 3 * len(labels)
    tiled_images, tiled_labels = read_split(tmp_path / "cifar-10-batches-py", train=True)
    assert torch.equal(tiled_images, images.repeat(3, 1, 1, 1))
    assert torch.equal(tiled_labels, labels.repeat(3))
    test_images, _ = read_split(tmp_path / "cifar-10-batches-py", train=False)
    assert torch.equal(test_images, read_split(synthetic_data_dir / "cifar-10-batches-py",
                                               train=False)[0])
    assert read_class_names(tmp_path / "cifar-10-batches-py")[0] == "airplane"


@pytest.mark.slow
@pytest.mark.real_data
def test_tiled_suite_smoke(real_data_dir, tmp_path):
    tiny = [*TINY_NET, "--data.batch_size=16",
            "--data.num_workers=0", "--trainer.enable_progress_bar=false"]
    cmd = [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_suite.py"), "--tiled", "1",
           f"--data-dir={real_data_dir}",
           "--epochs", "2", "--limit-batches", "3", "--recipes", "quickstart", "--iters", "1",
           *[f"--fit-args={a}" for a in tiny]]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "auto settings: device=" in done.stderr  # the child's stderr reaches the caller
    row = next(line for line in done.stdout.splitlines() if line.startswith("| quickstart"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "16" and "LIMITED" in done.stdout
    img_s, synthetic, ratio = float(cells[5]), float(cells[6]), float(cells[7])
    assert img_s > 0 and synthetic > 0 and ratio == pytest.approx(img_s / synthetic, abs=0.01)


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("recipe", ["mixup_cosine", "focal_onecycle", "slice"])
def test_tiled_suite_runs_each_recipe_with_its_own_loader(recipe, real_data_dir, tmp_path):
    # The recipe's own batch size, workers and data path (auto on a CPU: the per-image
    # loader with 2 workers; the slice recipe's device path); only the network is shrunk,
    # to six narrow blocks, so the slice preset's routed block 5 exists, and its
    # whitening stem keeps the 24 channels it must have (the others' stems shrink too).
    tiny = [*(TINY_NET[:1] if recipe != "slice" else []),
            "--model.net.init_args.widths=[8, 8, 16, 16, 16, 16]",
            "--model.net.init_args.pool_after=[0, 2, 4]"]
    cmd = [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_suite.py"), "--tiled", "1",
           f"--data-dir={real_data_dir}", "--epochs", "2", "--limit-batches", "4",
           "--recipes", recipe, "--iters", "1",  # 8 steps: OneCycle's warm-up needs 2
           *[f"--fit-args={a}" for a in [*tiny, "--trainer.enable_progress_bar=false"]]]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith(f"| {recipe}"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    path = "device path" if recipe == "slice" else "classic path"
    assert path in cells[2] and float(cells[5]) > 0, row


@pytest.mark.slow
@pytest.mark.real_data
def test_profile_recipe_smoke(real_data_dir, tmp_path):
    # the recipe's own loader (worker processes), a tiny network
    tiny = [*TINY_NET, "--data.batch_size=16", "--trainer.enable_progress_bar=false"]
    cmd = [sys.executable, str(REPO_ROOT / "benchmarks" / "profile_recipe.py"), "quickstart",
           f"--data-dir={real_data_dir}", "--tiled", "1", "--rows", "3",
           *[f"--fit-args={a}" for a in tiny]]
    done = subprocess.run([*cmd, "--skip", "2", "--steps", "3"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wall per step:" in done.stdout and "over 3 steps" in done.stdout
    assert "no CUDA kernels (CPU run)" in done.stdout and "Self CPU" in done.stdout
    # more batches than one epoch has: one line, not a summary of nothing
    short = subprocess.run([*cmd, "--fit-args=--data.batch_size=512", "--skip", "40",
                            "--steps", "3"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert short.returncode == 1 and short.stderr.strip().splitlines()[-1].startswith(
        "error: the epoch ended before 43 batches"), short.stderr[-500:]


@pytest.mark.slow
def test_bench_models_slice_rows_run_with_the_recipe_precision():
    # The README's `bench_models.py --only slice --cpu-bf16 --batch 128`, on a tiny batch.
    out = subprocess.run(
        [sys.executable, "benchmarks/bench_models.py", "--only", "slice", "--cpu-bf16",
         "--batch", "2", "--quick", "--threads", "1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=True,
    ).stdout
    assert "bf16 autocast, batch 2" in out
    rows = [line.split(" | ")[0].lstrip("| ") for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| network")]
    assert rows == ["slice (block 5 routed)", "slice every block routed", "slice K=1",
                    "slice static residual", "ResNet-18"]
    params = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1] for line in out.splitlines()
              if line.startswith("| slice")}
    assert params["slice (block 5 routed)"] == "3.17 M"  # the routed_blocks preset
    assert params["slice every block routed"] == "5.96 M"  # the overlay reached the net
