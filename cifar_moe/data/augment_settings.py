"""The training-augmentation settings: one typed object that both implementations take.

Adding an augmentation means a field here (its upper bound in ``_AT_MOST`` if it has one),
then its step in :func:`cifar_moe.data.augment.build_train_transform` (per image) and in
:class:`cifar_moe.data.batch_augment.BatchAugment` (whole batches). The data module, the CLI
(``--data.augment.<field>``, ``data: {augment: {...}}`` in YAML) and the benchmarks read the
fields from here.
"""

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from cifar_moe.core.errors import UserError

SECTION = "data.augment"
"""Where the settings live in a run's config; errors name ``data.augment.<field>``."""

_AT_MOST = {"flip_p": 1.0, "hue": 0.5}
"""Upper bounds; every setting's lower bound is 0."""


@dataclass(frozen=True)
class AugmentSettings:
    """Training augmentation; every setting is 0 or more, and 0 turns its step off.

    Args:
        flip_p: probability of a horizontal flip, in [0, 1].
        crop_padding: zero padding of the random 32x32 crop; 0 turns cropping off.
        brightness: colour-jitter brightness strength; 0 is off.
        contrast: colour-jitter contrast strength; 0 is off.
        saturation: colour-jitter saturation strength; 0 is off.
        hue: colour-jitter hue strength in [0, 0.5]; 0 is off.
        rotation_degrees: random rotation range in degrees (+-); 0 is off.
        crop_reflect: pad the crop with the reflected border, not zeros (airbench).
        cutout: side in pixels of one mean-colour square per image (DeVries 2017); 0 off.
        trivial_augment: one random TrivialAugmentWide op per image (Muller 2021).
    """

    flip_p: float = 0.5
    crop_padding: int = 4
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    rotation_degrees: float = 0.0
    crop_reflect: bool = False
    cutout: int = 0
    trivial_augment: bool = False

    def __post_init__(self) -> None:
        for name in self.names():
            value, most = getattr(self, name), _AT_MOST.get(name)
            if value < 0 or (most is not None and value > most):
                fix = f"use a value in [0, {most:g}]" if most is not None else "use 0 (off) or more"
                raise UserError(f"{SECTION}.{name} is {value}; {fix}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The settings' names, in field order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, value: "AugmentSettings | Mapping | None") -> "AugmentSettings":
        """``value`` itself, or the settings a mapping gives (a run's saved ``data.augment``,
        a checkpoint's hyperparameters); None gives the defaults."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise UserError(f"{SECTION} is {value!r}; give a mapping of its settings, "
                            f"e.g. {{flip_p: 0.5, crop_padding: 4}}")
        unknown = sorted(set(value) - set(cls.names()))
        if unknown:
            raise UserError(f"{SECTION} has no setting {', '.join(map(str, unknown))}; "
                            f"use one of {', '.join(cls.names())}")
        return cls(**value)

    def as_dict(self) -> dict:
        """Plain values, as a config or a checkpoint holds them."""
        return asdict(self)

    @property
    def jitter(self) -> tuple[float, float, float, float]:
        """``(brightness, contrast, saturation, hue)``, the colour-jitter strengths."""
        return self.brightness, self.contrast, self.saturation, self.hue


DEFAULT_AUGMENT = AugmentSettings()
"""The defaults (flip and padded crop), for signatures' defaults."""


def nest_flat_settings(data: Mapping) -> dict:
    """A data section with its flat augmentation keys (``flip_p: 0.5``, as runs saved them
    before the ``augment`` block) moved under ``augment``; other sections come back as is."""
    flat = {k: data[k] for k in AugmentSettings.names() if k in data}
    rest = {k: v for k, v in data.items() if k not in flat}
    if flat:
        rest["augment"] = {**flat, **(rest.get("augment") or {})}
    return rest


def flat_setting_hint(message: str) -> str | None:
    """For a parser error about a flat ``data.<augmentation setting>`` (the layout before the
    ``augment`` block, which older runs' ``config.yaml`` still has): the one-line error naming
    the setting's new place; None for any other error."""
    names = "|".join(AugmentSettings.names())
    found = re.search(rf"(?:--data\.|Group 'data' does not accept option '?)({names})\b", message)
    if found is None:
        return None
    name = found.group(1)
    return (f"data.{name}: now {SECTION}.{name}; pass --{SECTION}.{name}, or in YAML "
            f"nest it under data: augment: (as the recipes in configs/ do)")
