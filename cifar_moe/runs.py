"""Finding and reading finished runs under ``lightning_logs/``: for notebooks and tests."""

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def latest_run(root: str | Path = "lightning_logs") -> Path:
    """The newest ``version_N`` folder below ``root`` (by N)."""
    runs = sorted(Path(root).glob("version_*"), key=lambda p: int(p.name.split("_")[-1]))
    if not runs:
        raise FileNotFoundError(f"no version_* run folders under {root}; run a fit first")
    return runs[-1]


def best_checkpoint(run_dir: str | Path) -> Path:
    """The best-``val/acc`` checkpoint a run kept (``best-*.ckpt``), else ``last.ckpt``."""
    ckpts = Path(run_dir) / "checkpoints"
    best = sorted(ckpts.glob("best-*.ckpt"))
    if best:
        return best[-1]
    last = ckpts / "last.ckpt"
    if last.is_file():
        return last
    raise FileNotFoundError(f"no checkpoint in {ckpts}")


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


def epoch_curve(scalars: dict, tag: str) -> list[float]:
    """Values of a per-epoch tag, e.g. ``val/acc`` or ``train/loss_epoch``, in logged order."""
    return [value for _, value in scalars.get(tag, [])]


def run_config(run_dir: str | Path) -> dict:
    """The full config a CLI run saved in its ``config.yaml``."""
    import yaml

    return yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
