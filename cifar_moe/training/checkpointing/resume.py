"""What a resume needs: the random generators' states, and a ``--ckpt_path`` worth loading."""

import pickle
import random
from pathlib import Path

import numpy as np
import torch

from cifar_moe.errors import UserError

LIGHTNING_CKPT_ALIASES = ("last", "best", "hpc", "registry")
"""``ckpt_path`` values Lightning resolves itself; they name no file here."""


def rng_states() -> dict:
    """The global random generators' states (Python, NumPy, torch CPU and CUDA)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    # Tensors and plain values only, so a weights_only=True torch.load still reads it.
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)
    states = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def read_checkpoint(ckpt_path: str) -> dict | None:
    """Load ``--ckpt_path`` safely (``weights_only``) or fail with one line saying what it is.

    Returns None for Lightning's aliases (``last``, ``best``, ...) and remote URLs.
    """
    if ckpt_path in LIGHTNING_CKPT_ALIASES or "://" in ckpt_path:
        return None
    path = Path(ckpt_path)
    what = _file_problem(path)
    if what is None:
        try:
            saved = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as err:
            # torch's own text would suggest weights_only=False, which runs arbitrary code.
            what = f"cannot be read: {_load_problem(path, err)}"
        else:
            what = _content_problem(saved)
            if what is None:
                return saved
    raise UserError(f"ckpt_path {ckpt_path} {what}; pass a .ckpt file a fit wrote "
                    "(for example <run>/checkpoints/last.ckpt)")


def _load_problem(path: Path, err: Exception) -> str:
    head = path.read_bytes()[:4]
    if head.startswith(b"PK"):  # a zip: torch's format, cut short or damaged
        return "a torch zip file that is truncated or damaged (an interrupted copy?)"
    pickled = head.startswith(b"\x80")  # pickle protocol 2+: torch's legacy format
    if pickled and isinstance(err, pickle.UnpicklingError) and "weights_only" in str(err):
        return "it holds Python objects beyond tensors and plain values, so it is not loaded"
    return f"not a torch checkpoint ({type(err).__name__})"


def _file_problem(path: Path) -> str | None:
    if not path.exists():
        return "does not exist"
    if path.is_dir():
        return "is a folder, not a file"
    if path.stat().st_size == 0:
        return "is empty (0 bytes; a write was cut off)"
    return None


def _content_problem(saved) -> str | None:
    if not isinstance(saved, dict):
        return f"holds a {type(saved).__name__}, not a Lightning checkpoint"
    missing = [k for k in ("state_dict", "epoch", "global_step") if k not in saved]
    if missing:
        return f"is a dict without {', '.join(missing)}, not a Lightning checkpoint"
    return None


def check_same_network(saved: dict, wanted: dict | None, ckpt_path: str) -> None:
    """Refuse a checkpoint of another network instead of silently adopting it.

    (LightningCLI replaces the model config by the checkpoint's hyperparameters.)
    """
    saved_net = saved.get("hyper_parameters", {}).get("net")
    if not isinstance(saved_net, dict) or not wanted:
        return
    differ = _net_difference(saved_net, wanted)
    if differ:
        raise UserError(f"ckpt_path {ckpt_path} holds another network than the config asks "
                        f"for ({differ}); use the config.yaml of the run that wrote it")


def _net_difference(saved: dict, wanted: dict) -> str | None:
    """The settings in which two network configs differ, as 'name: saved -> wanted' text.

    Only settings both name are compared: a checkpoint from before a setting existed was
    made with its default (a change of shape is caught by :func:`check_weights_fit`).
    The linked num_classes is left out.
    """
    if saved.get("class_path") != wanted.get("class_path"):
        return f"class_path: {saved.get('class_path')} -> {wanted.get('class_path')}"
    old, new = saved.get("init_args") or {}, wanted.get("init_args") or {}
    keys = sorted(k for k in set(old) & set(new) if k != "num_classes" and
                  str(old[k]) != str(new[k]))
    return ", ".join(f"{k}: {old[k]} -> {new[k]}" for k in keys) or None


def check_weights_fit(model: torch.nn.Module, state: dict | None, ckpt_path) -> None:
    """One line, before any run starts, if a checkpoint's ``state_dict`` (as read by
    :func:`read_checkpoint`; None = nothing to check) does not fit ``model``: keys it lacks,
    keys it does not know, or other shapes (e.g. an older version of the network)."""
    if state is None:
        return
    own = model.state_dict()
    problems = {
        "missing": sorted(set(own) - set(state)),
        "unexpected": sorted(set(state) - set(own)),
        "other shapes": sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape),
    }
    found = "; ".join(f"{kind} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                      for kind, keys in problems.items() if keys)
    if found:
        raise UserError(f"ckpt_path {ckpt_path} holds weights of a different network ({found}); "
                        "pass a checkpoint written by this network and version")
