"""A sweep YAML -> a checked :class:`Sweep`; any mistake is one :class:`UserError` line.

    configs: [configs/slice.yaml]          # the base recipe (later files override earlier)
    fixed: {model.mixup_alpha: 0.2}        # optional: every trial gets these
    space: {...}                           # see space.py
    metric: val/acc                        # optional; its best over the run's validations
    direction: maximize                    # optional: maximize | minimize
    trials: 20                             # --trials overrides
    sampler: {name: tpe, seed: 0}          # optional: tpe (default) | random, + its options
    pruner: {name: median, n_warmup_steps: 5}   # optional: none (default) | median |
                                           #   hyperband | threshold ({lower: 0.3})
    out: lightning_logs/sweeps/mine        # optional; --out overrides
    name: mine                             # optional: the Optuna study name (file stem)
    launcher: {name: slurm, gpus: 1, cpus: 8, time: 120, partition: gpu}   # optional

Relative paths (``configs``, ``out``) resolve against the current folder (the repo root).
"""

from dataclasses import dataclass, field, replace
from pathlib import Path

from cifar_moe.core.constants import SELECT_METRIC
from cifar_moe.core.errors import UserError
from cifar_moe.core.yaml_files import read_yaml_mapping
from cifar_moe.runs.sweep.space import Param, override, parse_space

TOP_KEYS = {"name", "configs", "fixed", "space", "metric", "direction", "trials", "sampler",
            "pruner", "out", "launcher"}
SAMPLERS, PRUNERS = ("tpe", "random"), ("none", "median", "hyperband", "threshold")
LAUNCHERS = ("local", "slurm", "submitit-local")
LAUNCH_KEYS = {"name", "gpus", "cpus", "time", "partition", "mem_gb"}


@dataclass(frozen=True)
class LaunchSettings:
    """Where trials run: ``local`` processes, or submitit jobs (``slurm``, or
    ``submitit-local``: the same jobs on this machine, for trying the path out)."""

    name: str = "local"
    gpus: int = 0
    cpus: int | None = None
    time: int = 60  # minutes a job may run before the scheduler stops (and requeues) it
    partition: str | None = None
    mem_gb: int | None = None


@dataclass(frozen=True)
class Sweep:
    """A whole sweep: the recipe, the space, the objective and where results go."""

    path: Path
    name: str
    configs: list[Path]
    fixed: list[str]
    space: list[Param]
    metric: str
    direction: str
    trials: int
    sampler: dict
    pruner: dict
    out: Path
    extra: list[str] = field(default_factory=list)
    launch: LaunchSettings = field(default_factory=LaunchSettings)

    def fit_args(self, params: dict) -> list[str]:
        """A trial's ``fit`` arguments: configs, fixed settings, its params, then ``--arg``."""
        return [*(f"--config={c}" for c in self.configs), *self.fixed,
                *(override(key, value) for key, value in params.items()), *self.extra]


def load_sweep(path: str | Path, out: str | None = None, trials: int | None = None,
               extra_args: list[str] | None = None, launch: dict | None = None) -> Sweep:
    """Read and check a sweep YAML; the flags (``--out``, ``--trials``, ``--arg``, the
    launcher's) override it."""
    path = Path(path)
    raw, where = _read_yaml(path), path.name
    unknown = sorted(set(raw) - TOP_KEYS, key=str)
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}; use only "
                        f"{', '.join(sorted(TOP_KEYS))}")
    space = parse_space(raw.get("space"), where)
    fixed = [override(str(k), v) for k, v in _mapping(raw.get("fixed", {}), f"{where} fixed")]
    extra = [normalise_arg(a) for a in extra_args or []]
    _check_not_searched(space, raw.get("fixed") or {}, extra)
    sweep = Sweep(
        path=path.resolve(), name=_text(raw.get("name", path.stem), f"{where} name"),
        configs=_configs(raw.get("configs"), where), fixed=fixed, space=space,
        metric=_text(raw.get("metric", SELECT_METRIC), f"{where} metric"),
        direction=_choice(raw.get("direction", "maximize"), ("maximize", "minimize"),
                          f"{where} direction"),
        trials=_trials(trials if trials is not None else raw.get("trials"), where),
        sampler=_named(raw.get("sampler", "tpe"), SAMPLERS, f"{where} sampler"),
        pruner=_named(raw.get("pruner", "none"), PRUNERS, f"{where} pruner"),
        out=_out(out or raw.get("out") or Path("lightning_logs") / "sweeps" / path.stem),
        extra=extra)
    return replace(sweep, launch=_launch(raw.get("launcher", {}), launch or {}, where))


def normalise_arg(arg: str) -> str:
    """``--arg KEY=VALUE`` (or ``--KEY=VALUE``) as a CLI override."""
    text = arg if arg.startswith("--") else f"--{arg}"
    if "=" not in text or text.startswith("--="):
        raise UserError(f"--arg {arg!r}: write it as KEY=VALUE, e.g. trainer.max_epochs=1")
    return text


def _check_not_searched(space: list[Param], fixed: dict, extra: list[str]) -> None:
    searched = {p.key for p in space}
    given = [*(str(k) for k in fixed), *(a[2:].split("=", 1)[0] for a in extra)]
    clash = [key for key in given if key in searched]
    if clash:
        raise UserError(f"{clash[0]} is both searched (space) and set (fixed or --arg); "
                        "remove one of them")


def _read_yaml(path: Path) -> dict:
    return read_yaml_mapping(path, "sweep", "configs, space, trials")


def _mapping(value, where: str) -> list[tuple]:
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected a mapping of config keys to values")
    return list(value.items())


def _text(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: expected a non-empty text")
    return value


def _choice(value, allowed: tuple, where: str) -> str:
    if value not in allowed:
        raise UserError(f"{where}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _configs(value, where: str) -> list[Path]:
    if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
        raise UserError(f"{where} configs: expected a non-empty list of config YAML paths")
    paths = [Path(c).resolve() for c in value]
    for text, resolved in zip(value, paths, strict=True):
        if not resolved.is_file():
            raise UserError(f"{where} configs: {text} not found (looked at {resolved}); give "
                            "a path relative to the current folder (the repo root)")
    return paths


def _trials(value, where: str) -> int:
    if value is None:
        raise UserError(f"{where}: no trials; add 'trials: N' or pass --trials N")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"trials {value!r} ({where} or --trials): use a whole number >= 1")
    return value


def _named(value, allowed: tuple, where: str) -> dict:
    """``tpe`` or ``{name: tpe, seed: 0}`` -> ``{"name": "tpe", "seed": 0}``."""
    spec = {"name": value} if isinstance(value, str) else value
    if not isinstance(spec, dict) or "name" not in spec:
        raise UserError(f"{where}: expected a name ({', '.join(allowed)}) or {{name: ..., ...}}")
    _choice(spec["name"], allowed, where)
    return dict(spec)


def _out(value) -> Path:
    out = Path(value).resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"out {out} is a file; give a folder path (the YAML's out or --out)")
    return out


def _launch(raw, flags: dict, where: str) -> LaunchSettings:
    if not isinstance(raw, dict):
        raise UserError(f"{where} launcher: expected {{name: local|slurm, gpus, cpus, time, "
                        "partition}}")
    unknown = sorted(set(raw) - LAUNCH_KEYS)
    if unknown:
        raise UserError(f"{where} launcher: unknown key {unknown[0]!r}; use "
                        f"{', '.join(sorted(LAUNCH_KEYS))}")
    merged = {**raw, **{k: v for k, v in flags.items() if v is not None}}
    _choice(merged.get("name", "local"), LAUNCHERS, f"{where} launcher name (or --launcher)")
    for key in ("gpus", "cpus", "time", "mem_gb"):
        value = merged.get(key)
        least = 0 if key == "gpus" else 1
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < least):
            flag = "--" + key.replace("_", "-")
            raise UserError(f"launcher {key} {value!r} ({where} or {flag}): use a whole "
                            f"number >= {least}")
    return LaunchSettings(**merged)
