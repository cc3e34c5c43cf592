"""The notebooks run top to bottom, offline, as a user opens them: the CPU default (8 batches
per epoch) on the real slice, or on a generated folder where the slice is absent."""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_are_committed_without_outputs():
    assert len(NOTEBOOKS) >= 2
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        dirty = [c for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not dirty, f"{path.name} has outputs; clear them before committing"


def _run_notebook(path: Path, folder: Path) -> nbformat.NotebookNode:
    """Execute a copy of a notebook in ``folder`` (its working folder, as Jupyter does)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}})
    client.execute()  # the kernel inherits the patched environment
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors[0].get("evalue")
    return nb


def _text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                   if o.output_type == "stream")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, tmp_path, monkeypatch):
    """What a user gets: started from notebooks/ in a fresh checkout layout, with no runs
    yet, on the CPU default (no fast or full switch, no GPU). How long it takes is the
    README's measured figure, not asserted here: speed is a benchmark's, not a test's."""
    monkeypatch.delenv("CIFAR_MOE_FULL", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the CPU default, even on a GPU machine
    (tmp_path / "notebooks").mkdir()
    nb = _run_notebook(path, tmp_path / "notebooks")
    assert any(o.output_type == "display_data" for c in nb.cells for o in c.get("outputs", [])), \
        "the notebook showed no figure"
    if path.name.startswith("01"):
        assert any("routing_figure(" in c.source and any(
            o.output_type == "display_data" for o in c.get("outputs", [])) for c in nb.cells), \
            "notebook 01 showed no routing plot of its run"
    if path.name.startswith("02"):
        assert "no slice study results at" in _text(nb)  # one line, then skipped


@pytest.mark.slow
def test_analysis_notebook_on_runs_made_from_the_repo_root(synthetic_data_dir, tmp_path,
                                                           monkeypatch):
    """A checkout where fit ran from the root, then test, then a
    run without checkpoints, and a slice study; the notebook starts in notebooks/."""
    import shutil

    from tiny_run import tiny_args

    from cifar_moe.analysis.evaluation import per_class_accuracy, predict_labels
    from cifar_moe.analysis.per_class import format_per_class
    from cifar_moe.cli.main import cli_main
    from cifar_moe.data import CIFAR10DataModule
    from cifar_moe.training.module import LitClassifier

    shutil.copytree(synthetic_data_dir, tmp_path / "data")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path)
    args = [a for a in tiny_args(tmp_path, tmp_path / "data", epochs=2)
            if not a.startswith(("--data.data_dir", "--trainer.default_root_dir"))]
    fit = cli_main(["fit", *args, f"--data.data_dir={tmp_path / 'data'}"])
    best = fit.trainer.checkpoint_callback.best_model_path
    cli_main(["test", *args, f"--data.data_dir={tmp_path / 'data'}", f"--ckpt_path={best}"])
    cli_main(["validate", *args, f"--data.data_dir={tmp_path / 'data'}",  # no checkpoint
              "--allow_untrained=true"])
    _write_study_results(tmp_path / "lightning_logs" / "studies" / "slice")

    nb = _run_notebook(NOTEBOOKS[1], tmp_path / "notebooks")
    text = _text(nb)
    run = Path(best).parents[1].relative_to(tmp_path)  # lightning_logs/quickstart/seed0-1
    assert f"{run}, checkpoint {Path(best).name}, started from {tmp_path}" in text
    # The per-class table is that of the loaded checkpoint on the run's own data folder.
    model = LitClassifier.load_from_checkpoint(best, map_location="cpu")
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "data"), val_size=40, num_workers=0)
    dm.setup("test")
    preds, targets = predict_labels(model, dm.test_dataloader())
    assert format_per_class(model.class_names, per_class_accuracy(preds, targets, 10)) in text
    study_cell = next(c for c in nb.cells if "study_results(STUDY)" in c.source)
    assert [o.output_type for o in study_cell.outputs] == ["display_data"]


def _write_study_results(folder: Path) -> None:
    """A two-row ``results.json`` as the study runner writes it."""
    from cifar_moe.runs.study.report import aggregate

    runs = [{"seed": s, "status": "ok", "test_acc": 0.3 + s / 10, "val_acc_curve": [0.2, 0.3],
             "val_epochs": [0, 1]} for s in (0, 1)]
    folder.mkdir(parents=True)
    folder.joinpath("results.json").write_text(json.dumps({"rows": [
        {"name": f"row {i}", "runs": runs, "aggregate": aggregate(runs)} for i in (1, 2)]}))
