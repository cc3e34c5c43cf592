"""What a resume needs: the random generators' states, and a ``--ckpt_path`` worth loading."""

import pickle
import random
from pathlib import Path

import numpy as np
import torch

from cifar_moe.core.errors import UserError

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
    if ckpt_path in LIGHTNING_CKPT_ALIASES:
        return None
    if "://" in ckpt_path:
        # Nothing about a remote file can be checked before a run starts (the network, its
        # settings, its run folder); offline it failed with a traceback.
        raise UserError(f"ckpt_path {ckpt_path} is a URL; download it first and pass the "
                        "local .ckpt file")
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


def check_ckpt_alias(ckpt_path, subcommand: str, dirpath) -> None:
    """Lightning's ``best`` / ``last``, which in a CLI call of their own find no checkpoint
    and would report untrained weights (``last``) or fail with a traceback (``best``)."""
    if ckpt_path == "best":
        raise UserError("ckpt_path best names the best checkpoint of a fit in the same "
                        "process, and this call runs no fit; pass the file, "
                        "<run>/checkpoints/best-*.ckpt (python -m cifar_moe runs lists runs)")
    if ckpt_path == "last" and not (dirpath and (Path(dirpath) / "last.ckpt").is_file()):
        where = f"in {dirpath}" if dirpath else "in the new run folder of this call"
        raise UserError(f"ckpt_path last found no last.ckpt {where}; pass the file, "
                        "<run>/checkpoints/last.ckpt (python -m cifar_moe runs lists runs)")


SPEED_AND_EVAL_SWITCHES = ("channels_last", "compile", "tta")
"""Model settings that change no trained number: the command line's value always wins."""
DATA_SPLIT = ("val_size", "split_seed", "val_fold", "num_folds")
DATA_TRAINING = (*DATA_SPLIT, "train_fraction", "batch_size", "augment")


def settings_differences(saved: dict, config, subcommand: str) -> tuple[str, str]:
    """(model, data) settings in which the command line differs from the checkpoint's run,
    as 'key: config value, checkpoint value' text ('' where none)."""
    hparams = saved.get("hyper_parameters") or {}
    skip = ("class_names", "net", "_instantiator", "_class_path", *SPEED_AND_EVAL_SWITCHES)
    model = _differences({k: v for k, v in hparams.items() if k not in skip},
                         _plain(config.get("model")), "model.")
    data_keys = DATA_TRAINING if subcommand == "fit" else (
        DATA_SPLIT if subcommand == "validate" else ())
    saved_data = saved.get("datamodule_hyper_parameters") or {}
    data = _differences({k: v for k, v in saved_data.items() if k in data_keys},
                        _plain(config.get("data")), "data.")
    return model, data


def _plain(value):
    """A jsonargparse Namespace (or anything) as plain dicts and lists."""
    value = value.as_dict() if hasattr(value, "as_dict") else value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _flat(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.")
                .items()} if value else {prefix[:-1]: {}}
    return {prefix[:-1]: value}


def _same(a, b) -> bool:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return float(a) == float(b)
    return str(a) == str(b)


def _differences(saved: dict, wanted, prefix: str) -> str:
    """Leaves both name, compared (a setting newer than the checkpoint is not a change)."""
    saved, wanted = _plain(saved), wanted if isinstance(wanted, dict) else {}
    old, new = {}, {}
    for key in set(saved) & set(wanted):
        if isinstance(saved[key], dict) and isinstance(wanted[key], dict):
            old.update(_flat(saved[key], f"{key}."))
            new.update(_flat(wanted[key], f"{key}."))
        else:  # e.g. a scheduler given where the run had none
            old[key], new[key] = saved[key], wanted[key]
    keys = sorted(k for k in set(old) & set(new) if not _same(old[k], new[k]))
    return ", ".join(f"{prefix}{k}: {new[k]} given, {old[k]} in the checkpoint" for k in keys)
