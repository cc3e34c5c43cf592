"""Config tier for the shipped studies: every row of every study YAML instantiates."""

from pathlib import Path

import pytest
import torch

from cifar_moe.cli import cli_main
from cifar_moe.study.spec import load_study

REPO = Path(__file__).resolve().parents[1]
STUDIES = sorted((REPO / "configs" / "studies").glob("*.yaml"))


def _rows(path: Path):
    return [(path.stem, row) for row in load_study(path).rows]


@pytest.mark.parametrize(("study", "row"), [r for p in STUDIES for r in _rows(p)],
                         ids=lambda v: v if isinstance(v, str) else v.slug)
def test_every_study_row_instantiates(study, row, synthetic_data_dir, monkeypatch):
    monkeypatch.chdir(REPO)
    args = [f"--config={c}" for c in row.configs] + list(row.args)
    cli = cli_main([*args, f"--data.data_dir={synthetic_data_dir}", "--data.val_size=40"],
                   run=False)
    logits = cli.model.eval()(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 10)


def test_slice_study_has_the_required_rows():
    names = [row.name for row in load_study(REPO / "configs" / "studies" / "slice.yaml").rows]
    for needed in ("slice recipe", "K=1", "old routing defaults", "static residual"):
        assert any(needed in name for name in names), needed
