"""Building a network preset from its YAML in ``configs/net/`` (the only place its numbers live)."""

import importlib
from pathlib import Path

import yaml
from torch import nn

from cifar_moe.errors import UserError
from cifar_moe.paths import CONFIG_DIR

PRESET_DIR = CONFIG_DIR / "net"


def available_presets() -> list[str]:
    """Preset names, the YAML stems in ``PRESET_DIR``, sorted."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def preset_spec(name_or_path: str) -> dict:
    """The ``class_path`` / ``init_args`` dict of a preset name or a YAML path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UserError(
            f"no network preset {name_or_path!r}; use one of {', '.join(available_presets())} "
            f"or a YAML path"
        )
    return yaml.safe_load(path.read_text())


def build_net(name_or_path: str, **overrides) -> nn.Module:
    """Instantiate a preset (name in ``configs/net/`` or YAML path), overrides on top.

    The K = 1 control is ``build_net("seed_b", num_experts=1)``.
    """
    spec = preset_spec(name_or_path)
    module_name, _, class_name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**{**(spec.get("init_args") or {}), **overrides})
