"""The router's regularisers on a batch's (B, K) weights: balance and mutual information.

They live beside the router, which adds them to its ``aux_loss``; ``analysis.routing.stats``
reads the same ``entropy`` and ``importance_cv2`` to report routing health.
All entropies are divided by log K, so 1 means uniform and 0 means one-hot, whatever K.
"""

import math
from typing import Literal, get_args

import torch
from torch import Tensor

from cifar_moe.core.errors import UserError

Penalty = Literal["cv2", "entropy", "mutual_info"]
PENALTIES: tuple[str, ...] = get_args(Penalty)
"""Kinds of :func:`balance_penalty`."""


def entropy(p: Tensor) -> Tensor:
    """Entropy in nats over the last dim of probability rows."""
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=-1)


def importance_cv2(importance: Tensor) -> Tensor:
    """Squared coefficient of variation of the experts' total weight (0 = balanced)."""
    return importance.var(unbiased=False) / importance.mean().pow(2)


def check_penalty(kind: str, setting: str = "model.net.init_args.router_aux") -> None:
    """One line naming the valid kinds, for a kind that is none of them."""
    if kind not in PENALTIES:
        raise UserError(f"{setting} is {kind!r}; use one of {', '.join(PENALTIES)}")


def balance_penalty(weights: Tensor, kind: Penalty = "cv2") -> Tensor:
    """A differentiable regulariser on a batch's (B, K) weights; 0 at its optimum.

    ``cv2``: importance CV^2 (Shazeer et al.). ``entropy``: 1 - balance. ``mutual_info``:
    1 - (balance - mean per-sample entropy / log K), i.e. experts used equally *and* each
    image sent confidently to one of them.
    """
    check_penalty(kind, "balance_penalty kind")
    k = weights.shape[-1]
    importance = weights.sum(dim=0)  # (K,)
    if kind == "cv2":
        return importance_cv2(importance)
    balance = entropy(importance / importance.sum()) / math.log(k)
    if kind == "entropy":
        return 1.0 - balance
    return 1.0 - balance + entropy(weights).mean() / math.log(k)
