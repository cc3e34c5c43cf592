"""Finding and reading finished runs under ``lightning_logs/``: for notebooks and tests."""

import json
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cifar_moe.selection import BEST_PREFIX


def logs_root(start: str | Path | None = None) -> Path:
    """The ``lightning_logs`` folder of the project a notebook or script runs in.

    Looked up in ``start`` (default: the working folder) and its parent, so the same code
    finds the repo's runs from the repo root and from ``notebooks/``. Where neither has one,
    the folder a run would create: beside ``configs/`` (a checkout) if there is one, else in
    ``start``.
    """
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, start.parent):
        if (folder / "lightning_logs").is_dir():
            return folder / "lightning_logs"
    home = next((f for f in (start, start.parent) if (f / "configs").is_dir()), start)
    return home / "lightning_logs"


def latest_run(root: str | Path = "lightning_logs", with_checkpoint: bool = False) -> Path:
    """The newest ``version_N`` folder below ``root`` (by N); with ``with_checkpoint`` the
    newest that holds a checkpoint (a ``predict`` without ``--ckpt_path`` makes none)."""
    # Only Lightning's own names: a copy such as version_3_old is not a run of this series.
    runs = sorted((p for p in Path(root).glob("version_*") if p.name[8:].isdigit()),
                  key=lambda p: int(p.name[8:]))
    if with_checkpoint:
        runs = [r for r in runs if any((r / "checkpoints").glob("*.ckpt"))]
    if not runs:
        what = "with a checkpoint " if with_checkpoint else ""
        raise FileNotFoundError(f"no version_* run folder {what}under {root}; run a fit first")
    return runs[-1]


def best_checkpoint(run_dir: str | Path) -> Path:
    """The best-``val/acc`` checkpoint a run kept (``best-*.ckpt``), else ``last.ckpt``.

    With ``--checkpoint.save_top_k`` above 1 there are several ``best-*`` files; the one the
    checkpoint callback recorded as best is returned, not the latest epoch.
    """
    ckpts = Path(run_dir) / "checkpoints"
    best = sorted(ckpts.glob(f"{BEST_PREFIX}*.ckpt"))
    if len(best) > 1:
        recorded = _recorded_best(ckpts)
        if recorded is not None:
            return recorded
    if best:
        return best[-1]
    last = ckpts / "last.ckpt"
    if last.is_file():
        return last
    raise FileNotFoundError(f"no checkpoint in {ckpts}")


def _recorded_best(ckpts: Path) -> Path | None:
    """The best path that the monitoring checkpoint callback recorded (its state is saved
    with each file): read from ``last.ckpt``, written after the best ones every epoch, else
    from the newest file; None where none is recorded."""
    import torch

    source = ckpts / "last.ckpt"
    if not source.is_file():
        source = max(ckpts.glob("*.ckpt"), key=lambda p: p.stat().st_mtime_ns)
    try:
        callbacks = torch.load(source, map_location="cpu", weights_only=False)["callbacks"]
    except Exception:  # cut off, foreign, or pickling a class that is gone
        return None  # then the file names decide
    if not isinstance(callbacks, dict):
        return None
    for state in callbacks.values():  # keyed by class name and settings: EpochCheckpoint{...}
        if isinstance(state, dict) and state.get("monitor") and state.get("best_model_path"):
            # Recorded as an absolute path of the machine that trained; the name is enough.
            # Only the callback that writes best-*.ckpt counts, not one a user added.
            named = ckpts / Path(state["best_model_path"]).name
            if named.name.startswith(BEST_PREFIX) and named.is_file():
                return named
    return None


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of a run's TensorBoard event files -> [(step, value), ...]."""
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return {
        tag: [(event.step, event.value) for event in acc.Scalars(tag)]
        for tag in acc.Tags()["scalars"]
    }


def read_image_tags(run_dir: str | Path) -> list[str]:
    """Tags of the images (confusion matrices, routing maps) a run logged."""
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    acc.Reload()
    return list(acc.Tags()["images"])


def run_config(run_dir: str | Path) -> dict:
    """The full config a CLI run saved in its ``config.yaml``."""
    import yaml

    return yaml.safe_load((Path(run_dir) / "config.yaml").read_text())


def launch_dir(run_dir: str | Path) -> Path:
    """The folder a run was started from, against which its relative paths resolve.

    ``fit`` records it in ``launch.yaml``; for older runs it is taken to be the folder that
    holds ``lightning_logs/`` (where a run without ``default_root_dir`` was started).
    """
    from cifar_moe.run_folder import read_launch

    cwd = read_launch(run_dir).get("cwd")
    return Path(cwd) if cwd else Path(run_dir).resolve().parents[1]


def resolve_run_path(run_dir: str | Path, value: str | Path) -> Path:
    """A path from a run's config, made absolute against the run's launch folder."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else launch_dir(run_dir) / path


def run_datamodule(run_dir: str | Path, **overrides):
    """The run's data module (its ``config.yaml`` data section), paths resolved as the run saw
    them; ``overrides`` replace settings, e.g. ``num_workers=0``."""
    from cifar_moe.data import CIFAR10DataModule
    from cifar_moe.data.augment_settings import nest_flat_settings

    data = nest_flat_settings(run_config(run_dir)["data"])  # older runs: flat augment keys
    data["data_dir"] = str(resolve_run_path(run_dir, data["data_dir"]))
    if data.get("predict_dir"):
        data["predict_dir"] = str(resolve_run_path(run_dir, data["predict_dir"]))
    return CIFAR10DataModule(**{**data, **overrides})


def study_results(path: str | Path | None = None) -> dict | None:
    """A study's ``results.json`` (default: the slice study's, under :func:`logs_root`), or
    None where it has not been written yet."""
    path = Path(path) if path else logs_root() / "studies" / "slice" / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None
