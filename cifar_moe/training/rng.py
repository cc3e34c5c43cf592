"""Saving and restoring the global random generators, for exact resume."""

import random

import numpy as np
import torch


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
