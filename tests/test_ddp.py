"""Two-process DDP on CPU (gloo): synced validation metrics and one writer.

The logged validation metrics equal a single-process evaluation of the same weights on the
whole split, which also shows both ranks drew the same split (20 images each)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_run import TINY_NET

from cifar_moe.analysis.evaluation import predict_labels
from cifar_moe.data import CIFAR10DataModule
from cifar_moe.runs.listing import read_scalars
from cifar_moe.training.module import LitClassifier

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"


@pytest.mark.slow
def test_ddp_two_cpu_processes(synthetic_data_dir, tmp_path):
    cmd = [
        sys.executable, "-m", "cifar_moe", "fit", f"--config={CONFIG_DIR / 'quickstart.yaml'}",
        *TINY_NET, f"--data.data_dir={synthetic_data_dir}",
        "--data.val_size=40", "--data.batch_size=16", "--data.eval_batch_size=10",
        "--data.num_workers=0", "--trainer.max_epochs=2", "--trainer.limit_train_batches=3",
        "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = [r for r in (tmp_path / "lightning_logs").glob("*/*") if r.is_dir()]
    assert [r.relative_to(tmp_path).as_posix() for r in runs] == [
        "lightning_logs/quickstart/seed0-1"]  # only rank 0 claimed a run folder
    assert len(list(runs[0].glob("events.out.tfevents.*"))) == 1
    logged = read_scalars(runs[0])
    # Single-process evaluation of the same weights on the same split.
    model = LitClassifier.load_from_checkpoint(runs[0] / "checkpoints" / "last.ckpt",
                                               map_location="cpu")
    dm = CIFAR10DataModule(data_dir=str(synthetic_data_dir), val_size=40, num_workers=0)
    dm.setup("fit")
    preds, targets = predict_labels(model, dm.val_dataloader())
    assert len(targets) == 40
    assert logged["val/acc"][-1][1] == pytest.approx((preds == targets).float().mean().item())
    for index, name in enumerate(model.class_names):
        mask = targets == index
        expected = (preds[mask] == index).float().mean().item() if mask.any() else 0.0
        assert logged[f"val/acc_class/{name}"][-1][1] == pytest.approx(expected), name
