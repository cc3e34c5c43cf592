"""A study YAML -> validated dataclasses; any mistake is one :class:`UserError` line.

Relative paths (``configs``, ``data.data_dir``, ``out``) resolve against the current
working directory, and the absolute paths are what the runs receive. A study that names
``folds`` (validation folds of the training images, ``data/folds.py``) runs each row at each
(fold, seed); ``metric``, ``reference`` and ``primary`` say what its table compares.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from cifar_moe.core.cli_args import sets
from cifar_moe.core.errors import UserError
from cifar_moe.core.yaml_files import read_yaml_mapping
from cifar_moe.data.folds import NUM_FOLDS
from cifar_moe.runs.sweep.launch import LaunchSettings, launch_settings

TOP_KEYS = {"data", "seeds", "folds", "out", "args", "rows", "metric", "reference", "primary",
            "launcher"}
ROW_KEYS = {"name", "configs", "args", "seeds", "folds"}
METRICS = ("final_val_acc", "best_val_acc", "test_acc")
"""What a study's statistics can compare: the held-out fold's accuracy of the final epoch's
model (the default of fold studies), of the best epoch (selected on that same fold, so biased
upward), or the test accuracy of the best checkpoint (the default of the other studies)."""


@dataclass(frozen=True)
class Row:
    """One line of the table: a recipe (configs + overrides) run over some seeds."""

    name: str
    slug: str
    configs: list[Path]
    args: list[str]
    seeds: list[int]
    folds: list[int] | None = None
    """Validation folds (``--data.val_fold``) the row runs on; None: the data's own split."""


@dataclass(frozen=True)
class Study:
    """A whole study: shared data and overrides, the rows, and where results go."""

    path: Path
    data: dict
    seeds: list[int]
    out: Path
    args: list[str]
    rows: list[Row] = field(default_factory=list)
    folds: list[int] | None = None
    metric: str | None = None
    reference: str | None = None
    primary: str | None = None
    launch: LaunchSettings = field(default_factory=LaunchSettings)
    """Where each run executes (``launcher:``, ``--launcher``): not part of its recipe."""

    @property
    def has_folds(self) -> bool:
        return any(row.folds is not None for row in self.rows)

    @property
    def analysed(self) -> bool:
        """Whether the table gets the statistics section (CIs, differences, p-values)."""
        return self.has_folds or bool(self.metric or self.reference)

    @property
    def primary_metric(self) -> str:
        return self.metric or ("final_val_acc" if self.has_folds else "test_acc")

    def data_args(self) -> list[str]:
        """``data`` as CLI overrides (non-strings as JSON, which jsonargparse reads)."""
        return [f"--data.{key}={_cli_value(value)}" for key, value in self.data.items()]


def slugify(name: str) -> str:
    """A row name as a folder name: lowercase letters, digits and single dashes."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def load_study(path: str | Path, out: str | Path | None = None,
               extra_args: list[str] | None = None, launch: dict | None = None) -> Study:
    """Read and check a study YAML; ``out`` (``--out``) overrides the YAML's ``out``;
    ``extra_args`` (``--arg``) go after the YAML's ``args`` in every run; ``launch`` (the
    launcher flags) overrides the YAML's ``launcher:``."""
    path = Path(path)
    raw = _read_yaml(path)
    where = path.name
    _check_keys(raw, TOP_KEYS, {"data", "seeds", "rows"}, where)
    data = _mapping(raw["data"], f"{where} data")
    if "data_dir" in data:
        if not isinstance(data["data_dir"], str) or not data["data_dir"]:
            raise UserError(f"{where} data data_dir: expected a folder path, "
                            "e.g. ../shared/data/cifar-10-mini")
        data["data_dir"] = str(Path(data["data_dir"]).resolve())
    seeds = _seeds(raw["seeds"], f"{where} seeds")
    default_out = Path("lightning_logs") / "studies" / path.stem
    if not isinstance(raw.get("out") or "", str):
        raise UserError(f"{where} out: expected a folder path, e.g. lightning_logs/studies/mine")
    out_dir = Path(out or raw.get("out") or default_out).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"out {out_dir} is a file; give a folder path (the YAML's out or --out)")
    args = _args(raw.get("args", []), f"{where} args") + _args(list(extra_args or []), "--arg")
    folds = _study_folds(raw, data, where)
    rows = _rows(raw["rows"], seeds, folds, _num_folds(data), where)
    metric, reference, primary = _comparison(raw, rows, where)
    return Study(path.resolve(), data, seeds, out_dir, args, rows, folds, metric, reference,
                 primary, launch_settings(raw.get("launcher"), launch or {}, where))


def _num_folds(data: dict) -> int:
    num = data.get("num_folds", NUM_FOLDS)
    # Another type is the CLI's to refuse, in its own words, before any run.
    return num if isinstance(num, int) and not isinstance(num, bool) else NUM_FOLDS


def _study_folds(raw: dict, data: dict, where: str) -> list[int] | None:
    if "folds" not in raw:
        return None
    if "val_fold" in data:
        raise UserError(f"{where} data val_fold: each run gets its fold from folds; remove "
                        "data.val_fold")
    return _folds(raw["folds"], _num_folds(data), f"{where} folds")


def _folds(value, num_folds: int, where: str) -> list[int]:
    ok = isinstance(value, list) and value and all(
        isinstance(f, int) and not isinstance(f, bool) and 0 <= f < num_folds for f in value)
    if not ok or len(set(value)) != len(value):
        raise UserError(f"{where}: expected a non-empty list of distinct fold numbers from 0 "
                        f"to {num_folds - 1} (data.num_folds = {num_folds}), e.g. [0, 1, 2]")
    return list(value)


def _comparison(raw: dict, rows: list[Row], where: str) -> tuple[str | None, ...]:
    """``metric``, and the ``reference`` and ``primary`` rows' names."""
    metric = raw.get("metric")
    if metric is not None and metric not in METRICS:
        raise UserError(f"{where} metric: {metric!r} is not one of {', '.join(METRICS)}")
    known = {key: row.name for row in rows for key in (row.name, row.slug)}
    named = []
    for key in ("reference", "primary"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or value not in known):
            listed = ", ".join(repr(row.name) for row in rows)
            raise UserError(f"{where} {key}: {value!r} is not a row; use one of {listed}")
        named.append(known.get(value) if value is not None else None)
    reference, primary = named
    if primary is not None and primary == reference:
        raise UserError(f"{where} primary: {primary!r} is the reference row; name the row "
                        "compared with it")
    if primary is not None and reference is None:
        raise UserError(f"{where} primary: needs a reference row to be compared with; add "
                        "reference: <row name>")
    return metric, reference, primary


def _read_yaml(path: Path) -> dict:
    return read_yaml_mapping(path, "study", "data, seeds, rows")


def _check_keys(raw: dict, allowed: set, required: set, where: str) -> None:
    unknown = sorted(set(raw) - allowed, key=str)  # a YAML key may be a number or a bool
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}; "
                        f"use only {', '.join(sorted(allowed))}")
    missing = sorted(required - set(raw))
    if missing:
        raise UserError(f"{where}: missing key {missing[0]!r}; add it "
                        f"(required: {', '.join(sorted(required))})")


def _mapping(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected a mapping of data settings, "
                        "e.g. {data_dir: ../shared/data/cifar-10-mini, val_size: 500}")
    return dict(value)


def _seeds(value, where: str) -> list[int]:
    ok = isinstance(value, list) and value and all(
        isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 2**32 - 1 for s in value)
    if not ok or len(set(value)) != len(value):
        raise UserError(f"{where}: expected a non-empty list of distinct integers from 0 to "
                        "2**32 - 1 (the seeds Lightning accepts), e.g. [0, 1, 2]")
    return list(value)


def _args(value, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise UserError(f"{where}: expected a list of CLI overrides, "
                        "e.g. ['--trainer.max_epochs=3']")
    bad = [a for a in value if not a.startswith("--")]
    if bad:
        raise UserError(f"{where}: {bad[0]!r} is not a CLI override; "
                        "write it as '--<setting>=<value>'")
    return list(value)


def _rows(value, seeds: list[int], folds: list[int] | None, num_folds: int,
          where: str) -> list[Row]:
    if not isinstance(value, list) or not value:
        raise UserError(f"{where} rows: expected a non-empty list of rows, "
                        "each {name: ..., configs: [...], args: [...]}")
    rows = [_row(item, seeds, folds, num_folds, f"{where} rows[{i}]")
            for i, item in enumerate(value)]
    seen: dict[str, str] = {}
    for row in rows:
        if row.slug in seen:
            raise UserError(f"{where} rows: names {seen[row.slug]!r} and {row.name!r} are "
                            "the same folder name; give every row a distinct name")
        seen[row.slug] = row.name
    return rows


def _row(item, seeds: list[int], folds: list[int] | None, num_folds: int, where: str) -> Row:
    if not isinstance(item, dict):
        raise UserError(f"{where}: expected a mapping {{name, configs, args, seeds}}")
    _check_keys(item, ROW_KEYS, {"name", "configs"}, where)
    name = item["name"]
    if not isinstance(name, str) or not slugify(name):
        raise UserError(f"{where} name: expected a non-empty text with letters or digits")
    configs = item["configs"]
    if not isinstance(configs, list) or not configs or not all(
            isinstance(c, str) for c in configs):
        raise UserError(f"{where} configs: expected a non-empty list of YAML paths")
    paths = [Path(c).resolve() for c in configs]
    for text, resolved in zip(configs, paths, strict=True):
        if not resolved.is_file():
            raise UserError(f"{where} configs: {text} not found (looked at {resolved}); give "
                            "a path relative to the current folder (the repo root)")
    row_seeds = _seeds(item["seeds"], f"{where} seeds") if "seeds" in item else seeds
    row_folds = _folds(item["folds"], num_folds, f"{where} folds") if "folds" in item else folds
    args = _args(item.get("args", []), f"{where} args")
    if row_folds is not None and sets(args, "data.val_fold"):
        raise UserError(f"{where} args: each run gets --data.val_fold from folds; remove it")
    return Row(name, slugify(name), paths, args, row_seeds, row_folds)


def _cli_value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)
