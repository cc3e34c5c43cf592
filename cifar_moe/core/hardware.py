"""Facts about the training device, and what ``auto`` means for the speed switches.

``data.device_augment``, ``model.channels_last``, ``model.compile`` and ``trainer.precision``
accept ``auto``: on a CUDA device the fast choice (device data path, channels_last,
torch.compile, ``bf16-mixed`` where the GPU has bf16), anywhere else the plain one (all off,
``32-true``). Explicit values always win. The choices are pure functions of a
:class:`DeviceFacts`, so tests pass facts instead of needing a GPU.
"""

from dataclasses import dataclass, replace
from typing import Literal

import torch

AUTO = "auto"
Auto = Literal["auto"]
SETTINGS = ("device_augment", "channels_last", "compile", "precision")


@dataclass(frozen=True)
class DeviceFacts:
    """What the auto choices depend on.

    Args:
        kind: device type as torch names it: ``cuda``, ``cpu``, ``mps``, ...
        name: the device's name (``torch.cuda.get_device_name``), or the kind.
        bf16: whether the device runs bf16 natively (CUDA compute capability >= 8.0).
        processes: training processes (devices x nodes); the device data path is chosen
            for one only, as it has not been tested under DDP.
    """

    kind: str
    name: str = ""
    bf16: bool = False
    processes: int = 1


CPU = DeviceFacts("cpu", "cpu")


def auto_choice(name: str, facts: DeviceFacts) -> bool | str:
    """The value ``auto`` stands for, for setting ``name`` (one of SETTINGS), on ``facts``."""
    fast = facts.kind == "cuda"
    if name == "precision":
        return "bf16-mixed" if fast and facts.bf16 else "32-true"
    if name not in SETTINGS:
        raise ValueError(f"no auto choice for {name!r}; one of {', '.join(SETTINGS)}")
    return fast and (name != "device_augment" or facts.processes == 1)


def settle(value, name: str, facts: DeviceFacts):
    """``value`` itself, or the auto choice when it is ``auto``; precision None is 32-true."""
    if value == AUTO:
        return auto_choice(name, facts)
    if name == "precision" and value is None:
        return "32-true"  # Lightning's own default for precision=None
    return value


def facts_for_device(device: torch.device) -> DeviceFacts:
    """Facts of a torch device (queries CUDA only for a CUDA device)."""
    if device.type != "cuda":
        return DeviceFacts(device.type, device.type)
    index = device.index if device.index is not None else torch.cuda.current_device()
    bf16 = torch.cuda.get_device_capability(index) >= (8, 0)
    return DeviceFacts("cuda", torch.cuda.get_device_name(index), bf16)


def facts_for_trainer(trainer) -> DeviceFacts:
    """Facts of the trainer's root device; CPU when there is no trainer (a module used alone)."""
    if trainer is None:
        return CPU
    return replace(facts_for_device(trainer.strategy.root_device), processes=trainer.world_size)


def facts_for_accelerator(accelerator, devices="auto", num_nodes: int = 1) -> DeviceFacts:
    """Facts before the Trainer exists, from ``trainer.accelerator``/``devices``/``num_nodes``
    as configured. Follows Lightning's pick for ``auto``/``gpu``: CUDA if available, then MPS.
    """
    name = accelerator if isinstance(accelerator, str) else type(accelerator).__name__.lower()
    if name in ("auto", "gpu", "cuda") or name.startswith("cuda"):
        if torch.cuda.is_available():
            processes = _cuda_device_count(devices) * (num_nodes or 1)
            return replace(facts_for_device(torch.device("cuda", 0)), processes=processes)
        if name != "cuda" and torch.backends.mps.is_available():
            return DeviceFacts("mps", "mps")
        return CPU
    return DeviceFacts(name, name)


def _cuda_device_count(devices) -> int:
    """How many GPUs ``trainer.devices`` asks for: a count, a list of ids, "0,1", or all."""
    if devices in (None, "auto", -1, "-1"):
        return torch.cuda.device_count()
    if isinstance(devices, int):
        return devices
    if isinstance(devices, (list, tuple)):
        return len(devices)
    text = str(devices).strip()
    return int(text) if text.isdigit() else len([d for d in text.split(",") if d.strip()])


def summary_line(values: dict, facts: DeviceFacts) -> str:
    """One line: the device and what each setting became; explicit values are marked."""
    parts = []
    for name, value in values.items():
        chosen = settle(value, name, facts)
        text = str(chosen).lower() if isinstance(chosen, bool) else str(chosen)
        parts.append(text if value == AUTO else f"{text} (explicit)")
    device = facts.kind if facts.kind != "cuda" else f"cuda ({facts.name})"
    joined = ", ".join(f"{name}={part}" for name, part in zip(values, parts, strict=True))
    return f"auto settings: device={device} -> {joined}"
