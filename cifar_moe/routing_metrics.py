"""Health metrics of a router's (N, K) weights. Pure functions; the callback feeds them.

All entropies are divided by log K, so 1 means uniform and 0 means one-hot, whatever K.
"""

import math

import torch
from torch import Tensor


def _entropy(p: Tensor) -> Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=-1)


def routing_summary(sum_weights: Tensor, sum_entropy: Tensor, count: int) -> dict[str, float]:
    """Metrics from running sums over N samples: sum of weights (K,), sum of entropies (nats).

    * ``entropy``: mean per-sample entropy / log K (1 = every sample uniform).
    * ``balance``: entropy of the mean routing / log K (1 = experts used equally overall).
    * ``mutual_info``: balance - entropy: how much the choice depends on the input
      (0 = every sample routed alike).
    * ``max_share``: largest expert's share of the total weight.
    * ``dead_fraction``: experts whose mean weight is below 1 / (10 K).
    * ``importance_cv2``: squared coefficient of variation of the experts' total weight.
    """
    k = sum_weights.numel()
    log_k = math.log(k) if k > 1 else 1.0
    mean = sum_weights / max(count, 1)  # (K,)
    entropy = float(sum_entropy) / max(count, 1) / log_k
    balance = float(_entropy(mean)) / log_k
    return {
        "entropy": entropy,
        "balance": balance,
        "mutual_info": balance - entropy,
        "max_share": float(mean.max() / mean.sum()),
        "dead_fraction": float((mean < 1.0 / (10 * k)).float().mean()),
        "importance_cv2": float(sum_weights.var(unbiased=False) / sum_weights.mean() ** 2),
    }


def summarize(weights: Tensor) -> dict[str, float]:
    """The same metrics straight from a (N, K) weight matrix."""
    return routing_summary(weights.sum(dim=0), _entropy(weights).sum(), len(weights))


def per_sample_entropy(weights: Tensor) -> Tensor:
    """(N, K) weights -> (N,) entropies in nats."""
    return _entropy(weights)


PENALTIES = ("cv2", "entropy", "mutual_info")


def balance_penalty(weights: Tensor, kind: str = "cv2") -> Tensor:
    """A differentiable regulariser on a batch's (B, K) weights; 0 at its optimum.

    ``cv2``: squared coefficient of variation of the experts' importance (Shazeer et al.).
    ``entropy``: 1 - entropy of the batch-mean routing / log K (balance only).
    ``mutual_info``: 1 - (balance - mean per-sample entropy / log K): balanced use *and*
    confident, image-dependent choices; 0 when experts are used equally and each sample
    goes to one expert.
    """
    k = weights.shape[-1]
    importance = weights.sum(dim=0)  # (K,)
    if kind == "cv2":
        return importance.var(unbiased=False) / importance.mean().pow(2)
    balance = _entropy(importance / importance.sum()) / math.log(k)
    if kind == "entropy":
        return 1.0 - balance
    return 1.0 - balance + _entropy(weights).mean() / math.log(k)
