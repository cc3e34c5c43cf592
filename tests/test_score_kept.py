"""Scoring kept models: bench_peer.py --keep-models keeps each template fit's model, and
score_kept.py scores those models on the test images only when each one reproduces its
stored validation accuracy (a two-batch fit on the generated folder)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_peer
import score_kept
from tiny_run import TINY_ROUTED_NET


def test_kept_models_reproduce_their_results_before_the_test_images_are_scored(
        synthetic_data_dir, tmp_path, capsys):
    results, models, ledger = tmp_path / "results", tmp_path / "models", tmp_path / "uses.md"
    tiny = [a.removeprefix("--") for a in TINY_ROUTED_NET] + [
        "data.num_workers=0", "data.batch_size=16"]
    bench_peer.main([
        "--data-dir", str(synthetic_data_dir), "--seeds", "1", "--trainers", "template",
        "--template-epochs", "1", "--limit-batches", "2", "--out", str(results),
        "--keep-models", str(models), "--template-config", "configs/quickstart.yaml",
        *[f"--template-arg={a}" for a in tiny]])
    assert sorted(p.name for p in models.iterdir()) == ["template_seed0.ckpt",
                                                         "template_seed0.yaml"]
    stored = json.loads((results / "template_seed0.json").read_text())
    assert stored["test_acc"] is None  # the fit itself read no test images
    ledger.write_text("| # | what | why | result |\n|---|---|---|---|\n| 1 | a | b | c |\n\n"
                      "Count since the protocol: **1**.\n")
    args = [str(results), str(models), "--data-dir", str(synthetic_data_dir),
            "--ledger", str(ledger)]
    capsys.readouterr()

    score_kept.main(args)  # the check alone scores nothing
    assert f"kept model val {100 * stored['val_acc']:.2f} %" in capsys.readouterr().out
    assert "| 2 |" not in ledger.read_text()

    (results / "template_seed0.json").write_text(json.dumps(stored | {"val_acc": 0.0}))
    with pytest.raises(SystemExit, match=r"seed 0: the kept model validates at .*not the "
                                         r"fitted model"):
        score_kept.main([*args, "--test"])  # another model's result: nothing is scored
    assert "| 2 |" not in ledger.read_text()

    (results / "template_seed0.json").write_text(json.dumps(stored))
    score_kept.main([*args, "--test"])
    out = capsys.readouterr().out
    assert "test (once per kept model): " in out and "over 1 models" in out
    assert "| 2 | `score_kept.py --test`, `configs/quickstart.yaml` " in ledger.read_text()
    assert "Count since the protocol: **2**." in ledger.read_text()
