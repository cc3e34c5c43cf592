"""Network presets: the YAML files in this folder, the only place their numbers live.

They ship inside the package (read with ``importlib.resources``), so ``build_net("seed_b")``
works from an installed wheel as from a checkout; the recipes in ``configs/`` point here.
"""

import importlib
from importlib.resources import files
from pathlib import Path

import yaml
from torch import nn

from cifar_moe.core.errors import UserError

PRESET_DIR = files(__name__)
"""The folder of preset YAML files (a ``Traversable``: ``/``, ``read_text``, ``iterdir``)."""


def available_presets() -> list[str]:
    """Preset names, the YAML stems in ``PRESET_DIR``, sorted."""
    return sorted(p.name.removesuffix(".yaml") for p in PRESET_DIR.iterdir()
                  if p.name.endswith(".yaml"))


def preset_spec(name_or_path: str) -> dict:
    """The ``class_path`` / ``init_args`` dict of a preset name or a YAML path."""
    path = Path(name_or_path)
    source = path if path.suffix else PRESET_DIR / f"{name_or_path}.yaml"
    if not source.is_file():
        raise UserError(
            f"no network preset {name_or_path!r}; use one of {', '.join(available_presets())} "
            f"or a YAML path"
        )
    return yaml.safe_load(source.read_text())


def build_net(name_or_path: str, **overrides) -> nn.Module:
    """Instantiate a preset (a name from :func:`available_presets` or a YAML path), overrides
    on top.

    The K = 1 control is ``build_net("seed_b", num_experts=1)``.
    """
    spec = preset_spec(name_or_path)
    module_name, _, class_name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**{**(spec.get("init_args") or {}), **overrides})
