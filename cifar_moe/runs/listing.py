"""Finding and reading runs under ``lightning_logs/``: for notebooks, tests and
``python -m cifar_moe runs``, which lists them (name, config, seed, best val/acc, test
accuracy once tested, epochs, status)."""

import argparse
import json
import os
import socket
from datetime import datetime
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cifar_moe.core.constants import BEST_PREFIX
from cifar_moe.core.errors import UserError
from cifar_moe.runs.folder import LOGS, is_run_folder, read_launch


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


def find_runs(root: str | Path = LOGS) -> list[Path]:
    """Every run folder below ``root``, oldest first: ``<group>/<seed>-<n>`` folders and the
    ``version_N`` folders of older versions (study folders and ``validate/`` not included)."""
    root = Path(root)
    candidates = [*root.glob("*"), *root.glob("*/*")] if root.is_dir() else []
    runs = [p for p in candidates if p.parts[-2:][0] != "studies" and p.name != "studies"
            and p.name != "validate" and is_run_folder(p)]
    return sorted(runs, key=_started)


def _started(run: Path) -> tuple:
    """When a run started (its launch record, else the folder's time); ties by its number."""
    text = read_launch(run).get("started")
    try:
        when = datetime.fromisoformat(str(text)).timestamp() if text else None
    except ValueError:
        when = None
    tail = run.name.rsplit("-", 1)[-1].rsplit("_", 1)[-1]
    return (when if when is not None else run.stat().st_mtime,
            int(tail) if tail.isdigit() else 0, str(run))


def latest_run(root: str | Path = LOGS, with_checkpoint: bool = False) -> Path:
    """The newest run folder below ``root``; with ``with_checkpoint`` the newest that holds a
    checkpoint (a ``predict`` without ``--ckpt_path`` makes none)."""
    runs = find_runs(root)
    if with_checkpoint:
        runs = [r for r in runs if any((r / "checkpoints").glob("*.ckpt"))]
    if not runs:
        what = "with a checkpoint " if with_checkpoint else ""
        raise FileNotFoundError(f"no run folder {what}under {root}; run a fit first")
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
    """The folder a run was started from.

    ``fit`` records it in ``launch.yaml``; for older runs it is taken to be the folder that
    holds ``lightning_logs/`` (where a run without ``default_root_dir`` was started).
    """
    cwd = read_launch(run_dir).get("cwd")
    return Path(cwd) if cwd else Path(run_dir).resolve().parents[1]


def resolve_run_path(run_dir: str | Path, value: str | Path) -> Path:
    """A ``data_dir`` from a run's config made absolute as the run saw it: against the project
    root it recorded (the rule since 0.3), for older runs against their launch folder."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    record = read_launch(run_dir)
    return Path(record.get("project_root") or launch_dir(run_dir)) / path


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


def run_row(run: Path, logs: Path) -> dict:
    """One line of the listing: what a person looks for first."""
    record, config = read_launch(run), _config(run)
    scalars = read_scalars(run) if any(run.glob("events.out.tfevents*")) else {}
    val = [v for _, v in scalars.get("val/acc", [])]
    test = [v for _, v in scalars.get("test/acc", [])]
    status = _status(run, record)
    configs = record.get("configs") or []
    return {
        "name": str(run.relative_to(logs)), "config": ",".join(Path(c).name for c in configs)
        or "-", "seed": config.get("seed_everything", "-"),
        "best val/acc": f"{max(val):.4f}" if val else "-",
        "test acc": f"{test[-1]:.4f}" if test else "-",
        "epochs": status.get("epochs", len(scalars.get("train/loss", []))),
        "status": status.get("status", "-"),
    }


def _config(run: Path) -> dict:
    import yaml

    try:
        return yaml.safe_load((run / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _status(run: Path, record: dict) -> dict:
    """``status.json`` (written by the fit), with a dead writer's 'running' as 'killed'."""
    try:
        status = json.loads((run / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    if status.get("status") == "running" and status.get("host") == socket.gethostname():
        try:
            os.kill(int(status.get("pid", 0)), 0)
        except ProcessLookupError:
            status["status"] = "killed"
        except (PermissionError, ValueError, OverflowError):
            pass
    return status


def runs_command(argv: list[str]) -> list[dict]:
    """``python -m cifar_moe runs [--root DIR]``: a table of every run, oldest first."""
    parser = argparse.ArgumentParser(prog="python -m cifar_moe runs",
                                     description="List the runs under lightning_logs/.")
    parser.add_argument("--root", help="folder holding lightning_logs/ (default: the project's, "
                                       "found from here or its parent)")
    opts = parser.parse_args(argv)
    logs = Path(opts.root) / LOGS if opts.root else logs_root()
    if opts.root and not Path(opts.root).is_dir():
        raise UserError(f"--root {opts.root} is not a folder; pass the folder holding {LOGS}/")
    rows = [run_row(run, logs) for run in find_runs(logs)]
    if not rows:
        print(f"no runs under {logs}; start one with python -m cifar_moe fit --config ...")
        return rows
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))
    return rows
