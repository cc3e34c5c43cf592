"""The search space of a sweep YAML: any config key, as a float, int or categorical.

    space:
      model.scheduler.init_args.max_lr: {type: float, low: 0.05, high: 0.5, log: true}
      model.mix_until_epoch: {type: int, low: 0, high: 30, step: 5}
      model.loss: {type: categorical, choices: [cross_entropy, focal]}
"""

import json
from dataclasses import dataclass
from typing import Any

from cifar_moe.core.errors import UserError

KINDS = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"},
         "categorical": {"choices"}}


@dataclass(frozen=True)
class Param:
    """One searched setting: its config key (``model.label_smoothing``) and its range."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """The trial's value (Optuna samples it, or takes a retried trial's own)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def ends(self) -> list[Any]:
        """Values at both ends of the range (every choice), for checking the key up front."""
        if self.kind == "categorical":
            return list(self.choices)
        cast = int if self.kind == "int" else float
        return [cast(self.low), cast(self.high)]


def override(key: str, value: Any) -> str:
    """A setting as a CLI override; non-strings as JSON, which jsonargparse reads."""
    return f"--{key}={value if isinstance(value, str) else json.dumps(value)}"


def parse_space(raw, where: str) -> list[Param]:
    """The YAML's ``space`` mapping as checked :class:`Param` objects."""
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"{where} space: expected a mapping of config keys to ranges, e.g. "
                        "{model.label_smoothing: {type: float, low: 0.0, high: 0.2}}")
    return [_param(str(key), spec, f"{where} space {key}") for key, spec in raw.items()]


def _param(key: str, spec, where: str) -> Param:
    if key.startswith("-") or "=" in key or not key.strip():
        raise UserError(f"{where}: expected a config key such as model.label_smoothing")
    if not isinstance(spec, dict) or spec.get("type") not in KINDS:
        raise UserError(f"{where}: expected {{type: float|int|categorical, ...}}")
    kind = spec["type"]
    unknown = sorted(set(spec) - KINDS[kind] - {"type"})
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r} for type {kind}; use "
                        f"{', '.join(sorted(KINDS[kind]))}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{where}: choices must be a non-empty list")
        return Param(key, kind, choices=tuple(choices))
    return _numeric(key, kind, spec, where)


def _numeric(key: str, kind: str, spec: dict, where: str) -> Param:
    number = int if kind == "int" else (int, float)
    low, high, step = spec.get("low"), spec.get("high"), spec.get("step")
    for name, value in (("low", low), ("high", high), ("step", step)):
        if (value is not None or name != "step") and (
                not isinstance(value, number) or isinstance(value, bool)):
            what = "an integer" if kind == "int" else "a number"
            raise UserError(f"{where}: {name} must be {what}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise UserError(f"{where}: log must be true or false")
    if low >= high:
        raise UserError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise UserError(f"{where}: a log range needs low > 0 (got {low})")
    if log and step is not None:  # Optuna samples a log range continuously
        raise UserError(f"{where}: a range takes log or step, not both")
    if step is not None and step <= 0:
        raise UserError(f"{where}: step must be positive (got {step})")
    return Param(key, kind, low, high, log, step)
