"""Where a run's files go: one run folder holds a run's whole story, and nothing in it is
ever overwritten.

``fit`` claims a new folder ``<root>/lightning_logs/<group>/seed<S>-<n>``: the group is the
``--config`` files' names (``slice``, ``slice+k1``) or ``--name``, S the seed, n the first
free number. The folder is made with one exclusive ``mkdir``, so two fits started at the
same moment never share it. ``test``, ``predict`` and a resumed ``fit`` of a checkpoint in
``<run>/checkpoints/`` write into that run (``validate`` into ``<run>/validate/``: it logs
``val/...`` at the checkpoint's step, which TensorBoard would treat as a restart of the
training curve), unless ``--trainer.default_root_dir`` names another root: then they write
into a new run folder there (for a read-only or archived run). Folders of older versions,
``lightning_logs/version_N``, are runs too.

Each call writes its own record beside the earlier ones: ``config.yaml`` + ``launch.yaml``
for the fit that made the run, ``config_resume-<n>.yaml`` + ``launch_resume-<n>.yaml`` per
resume, ``config_<stage>.yaml`` then ``config_<stage>-<n>.yaml`` per evaluation.
"""

import datetime
import os
import re
import socket
import tempfile
from pathlib import Path

import yaml
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from cifar_moe.core.atomic_files import atomic_write_text
from cifar_moe.core.errors import UserError
from cifar_moe.data.download import project_root
from cifar_moe.runs.claims import claim_numbered, claim_run_folder, numbered

LOGS = "lightning_logs"
LAUNCH_FILE = "launch.yaml"
"""Written beside ``config.yaml`` by ``fit``: where and from what the run was started."""

_VERSION = re.compile(r"version_\d+")
_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def is_run_folder(folder: Path) -> bool:
    """A folder a CLI fit made (its records), or an older ``version_N``."""
    folder = Path(folder)
    return folder.is_dir() and (_VERSION.fullmatch(folder.name) is not None
                                or (folder / LAUNCH_FILE).is_file()
                                or (folder / "config.yaml").is_file())


def run_dir_of(ckpt_path: str | os.PathLike | None) -> Path | None:
    """The run folder a checkpoint was saved in (``<run>/checkpoints/``), else None."""
    if not ckpt_path or not Path(ckpt_path).is_file():
        return None  # also Lightning's "best" / "last" shorthands
    folder = Path(ckpt_path).resolve().parent
    if folder.name == "checkpoints" and is_run_folder(folder.parent):
        return folder.parent
    return None


def run_root(run: Path) -> Path:
    """The root a run lives under: the folder that holds its ``lightning_logs``."""
    for parent in Path(run).resolve().parents:
        if parent.name == LOGS:
            return parent.parent
    return Path(run).resolve().parents[1]


def writes_into_run(default_root_dir, ckpt_path) -> Path | None:
    """The checkpoint's run folder when this call writes into it; None when it makes a new
    one (no run folder, or ``--trainer.default_root_dir`` names another root)."""
    run = run_dir_of(ckpt_path)
    if run is None:
        return None
    if default_root_dir and Path(default_root_dir).resolve() != run_root(run):
        return None
    return run


def run_group(configs: list, name: str | None) -> str:
    """The group a new run is named by: ``--name``, else its ``--config`` files' names (a
    run's own saved config counts as that run's group), else ``run``."""
    if name:
        if name in (".", "..") or _SAFE.search(name):
            raise UserError(f"name is {name!r}; use letters, digits and . _ + - only (it "
                            f"names the folder {LOGS}/<name>/)")
        return name
    stems = []
    for config in configs or []:
        path = Path(str(config))
        stem = read_launch(path.parent).get("group") if is_run_folder(path.parent) else None
        stems.append(stem or path.stem)
    return _SAFE.sub("_", "+".join(dict.fromkeys(stems))) or "run"


def seed_label(seed) -> str:
    return "unseeded" if seed is None or isinstance(seed, bool) else f"seed{int(seed)}"


class NamedRunLogger(TensorBoardLogger):
    """TensorBoard logger whose folder is claimed on first use, on rank 0 only (the Trainer
    broadcasts rank 0's ``log_dir`` to the other ranks)."""

    def __init__(self, save_dir: str, group: str, label: str) -> None:
        super().__init__(save_dir=save_dir, name=group, default_hp_metric=False)
        self.label, self.claimed = label, None

    @property
    def version(self) -> str:
        if self.claimed is None:
            if rank_zero_only.rank != 0:
                return f"{self.label}-rank{rank_zero_only.rank}"  # replaced by rank 0's
            self.claimed = claim_run_folder(Path(self.root_dir), self.label).name
        return self.claimed


def run_logger(subcommand: str, default_root_dir: str | None, ckpt_path,
               name: tuple[str, str] = ("run", "unseeded")) -> TensorBoardLogger:
    """The TensorBoard logger a subcommand writes with (see the module docstring); ``name``
    is (group, seed label) of a new run folder.

    ``default_hp_metric=False``: Lightning's placeholder ``hp_metric = -1`` is never written;
    :class:`cifar_moe.training.run_summary.RunSummary` gives the HParams tab real metrics.
    """
    run = writes_into_run(default_root_dir, ckpt_path)
    if run is None:
        root = Path(default_root_dir or os.getcwd()) / LOGS
        return NamedRunLogger(str(root), *name)
    sub = "validate" if subcommand == "validate" else ""
    # log_dir = save_dir / name / version; a str version is used as the folder name as is.
    return TensorBoardLogger(save_dir=run.parent.parent, name=run.parent.name,
                             version=os.path.join(run.name, sub) if sub else run.name,
                             default_hp_metric=False)


def check_run_writable(subcommand: str, default_root_dir, ckpt_path) -> None:
    """One line, before anything is written, when the checkpoint's run folder would be
    written into but cannot be (a read-only or archived results folder)."""
    run = writes_into_run(default_root_dir, ckpt_path)
    if run is None:
        return
    for folder in (run, run / "checkpoints") if subcommand == "fit" else (run,):
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise UserError(
                f"run folder {run} is not writable ({err.strerror}); {subcommand} writes "
                "into the checkpoint's run folder: pass --trainer.default_root_dir <a writable "
                "folder> to write into a new run folder there") from None


def read_launch(run_dir: str | os.PathLike) -> dict:
    """A run's launch record (``cwd``, ``started``, ...); empty for runs made before it."""
    path = Path(run_dir) / LAUNCH_FILE
    try:
        record = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except (OSError, yaml.YAMLError):
        return {}
    return record if isinstance(record, dict) else {}


class RunConfigSaver(SaveConfigCallback):
    """Saves each call's config and launch record beside the earlier ones (module docstring).

    ``launch.yaml`` records the working directory, the project root (against which the run's
    relative ``data.data_dir`` resolves), the config files, the group and the process.
    """

    suffix_n: int | None = None
    """The n of this call's records; ``predictions-<n>.csv`` uses the same n."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        stage = getattr(stage, "value", stage)  # Lightning passes a TrainerFn enum
        # log_dir is a collective call under DDP: every rank asks once, here.
        self.run_dir = Path(trainer.log_dir)
        self.written: list[Path] = []  # a resume's records, removed if it is refused
        self.trained = False
        if self.already_saved:
            return
        if trainer.is_global_zero:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.config_filename = self._claim(stage).name
        super().setup(trainer, pl_module, stage)

    def _claim(self, stage: str) -> Path:
        folder = self.run_dir
        if stage == "fit" and not (folder / "config.yaml").exists():
            self.launch, self.suffix_n = folder / LAUNCH_FILE, 1
            return folder / "config.yaml"
        if stage == "fit":  # a resume in the run's own folder
            def names(n):
                return [folder / f"config_resume-{n}.yaml", folder / f"launch_resume-{n}.yaml"]
            self.suffix_n = claim_numbered(names)
            config, self.launch = names(self.suffix_n)
            self.written += [config, self.launch]
            return config
        stem = f"config_{stage}"
        also = ("predictions", ".csv") if stage == "predict" else (stem, ".yaml")
        self.suffix_n = claim_numbered(lambda n: [numbered(folder, stem, ".yaml", n),
                                                  numbered(folder, *also, n)])
        return numbered(folder, stem, ".yaml", self.suffix_n)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        if getattr(stage, "value", stage) != "fit":
            return
        config = self.config
        record = {
            "cwd": os.getcwd(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "project_root": str(project_root()),
            "configs": [str(c) for c in (config.get("config") or [])],
            "group": self.run_dir.parent.name,
            "host": socket.gethostname(), "pid": os.getpid(),
            "ckpt_path": str(config.get("ckpt_path")) if config.get("ckpt_path") else None,
        }
        atomic_write_text(self.launch, yaml.safe_dump(record, sort_keys=False))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.trained = True

    def on_exception(self, trainer, pl_module, exception) -> None:
        # A resume refused before its first step (e.g. a finished OneCycle stretched) leaves
        # no record claiming it ran; the first part's records were never touched.
        if isinstance(exception, UserError) and not self.trained:
            for path in getattr(self, "written", []):
                path.unlink(missing_ok=True)
