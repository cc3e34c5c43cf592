"""Routing health of a router's (N, K) weights: metrics and a running accumulator.

All entropies are divided by log K, so 1 means uniform and 0 means one-hot, whatever K.
The regularisers built on the same entropies live with the router (``models.penalties``).
"""

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from cifar_moe.models.penalties import entropy, importance_cv2


@dataclass
class RoutingStats:
    """Running sums over the samples one router has weighed, and the metrics they give.

    Args:
        num_experts: K.
        num_classes: C, for the class x expert matrix; 0 skips it.
    """

    num_experts: int
    num_classes: int = 0
    weight_sum: Tensor = field(init=False)  # (K,) summed weights
    entropy_sum: Tensor = field(init=False)  # () summed per-sample entropies, nats
    count: Tensor = field(init=False)  # () samples seen
    class_weight_sum: Tensor = field(init=False)  # (C, K) summed weights per true class
    class_count: Tensor = field(init=False)  # (C,) samples per true class

    def __post_init__(self) -> None:
        self.weight_sum = torch.zeros(self.num_experts)
        self.entropy_sum, self.count = torch.zeros(()), torch.zeros(())
        self.class_weight_sum = torch.zeros(self.num_classes, self.num_experts)
        self.class_count = torch.zeros(self.num_classes)

    def to(self, device) -> "RoutingStats":
        for name in self.tensor_fields():
            setattr(self, name, getattr(self, name).to(device))
        return self

    @staticmethod
    def tensor_fields() -> tuple[str, ...]:
        return ("weight_sum", "entropy_sum", "count", "class_weight_sum", "class_count")

    def update(self, weights: Tensor, labels: Tensor | None = None) -> None:
        """Add a batch of (B, K) weights (and its (B,) true labels, for the class matrix)."""
        weights = weights.detach().float().to(self.weight_sum.device)
        self.weight_sum += weights.sum(dim=0)
        self.entropy_sum += entropy(weights).sum()
        self.count += len(weights)
        if labels is not None and self.num_classes:
            labels = labels.to(self.weight_sum.device)
            self.class_weight_sum.index_add_(0, labels, weights)
            self.class_count.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float))

    def reduce(self, reduce_sum) -> "RoutingStats":
        """Sums over processes in place (``reduce_sum(tensor) -> tensor``, e.g. DDP)."""
        for name in self.tensor_fields():
            setattr(self, name, reduce_sum(getattr(self, name)))
        return self

    def summary(self) -> dict[str, float]:
        """``entropy`` (mean per-sample, 1 = uniform), ``balance`` (entropy of the mean
        routing, 1 = experts used equally), ``mutual_info`` (balance - entropy: how much the
        choice depends on the image), ``max_share``, ``dead_fraction`` (experts with a mean
        weight below 1 / (10 K)) and ``importance_cv2``."""
        k = self.num_experts
        log_k = math.log(k) if k > 1 else 1.0
        n = max(float(self.count), 1.0)
        mean = self.weight_sum / n  # (K,)
        per_sample = float(self.entropy_sum) / n / log_k
        balance = float(entropy(mean)) / log_k
        return {
            "entropy": per_sample,
            "balance": balance,
            "mutual_info": balance - per_sample,
            "max_share": float(mean.max() / mean.sum()),
            "dead_fraction": float((mean < 1.0 / (10 * k)).float().mean()),
            "importance_cv2": float(importance_cv2(self.weight_sum)),
        }

    def class_matrix(self) -> Tensor:
        """(C, K) mean routing weight of each true class."""
        return self.class_weight_sum / self.class_count.clamp_min(1).unsqueeze(1)


@dataclass(frozen=True)
class HealthBar:
    """The bar every routed block of a recipe must end above (issue 33): no dead expert,
    experts used near-equally, and a choice that depends on the image."""

    max_dead_fraction: float = 0.0
    min_balance: float = 0.9
    min_mutual_info: float = 0.05

    def __str__(self) -> str:
        dead = f"<= {self.max_dead_fraction:g}" if self.max_dead_fraction else "0"
        return (f"dead_fraction {dead}, balance >= {self.min_balance:g}, "
                f"mutual_info >= {self.min_mutual_info:g}")

    def failures(self, logged: dict[str, float]) -> list[str]:
        """'block3 mutual_info 0.028' for each metric below the bar, from logged
        ``route/block<i>/<metric>`` values (what ``RoutingAnalytics`` logs)."""
        low = {"dead_fraction": lambda v: v > self.max_dead_fraction,
               "balance": lambda v: v < self.min_balance,
               "mutual_info": lambda v: v < self.min_mutual_info}
        out = []
        for key, value in sorted(logged.items()):
            parts = key.split("/")  # route/block3/mutual_info; route/tau has no block
            if len(parts) == 3 and parts[0] == "route" and parts[2] in low \
                    and low[parts[2]](value):
                out.append(f"{parts[1]} {parts[2]} {value:.3f}")
        return out


HEALTH_BAR = HealthBar()


def summarize(weights: Tensor) -> dict[str, float]:
    """The :meth:`RoutingStats.summary` metrics of one (N, K) weight matrix."""
    stats = RoutingStats(weights.shape[-1])
    stats.update(weights)
    return stats.summary()


@torch.no_grad()
def class_expert_matrices(model: torch.nn.Module, loader, num_classes: int) -> list[Tensor]:
    """Per routed block, the (C, K) mean routing weight of each true class over a loader."""
    from cifar_moe.models.router import find_routers

    routers = find_routers(model)
    stats = [RoutingStats(r.num_experts, num_classes) for r in routers]
    for router in routers:
        router.record = True
    model.eval()
    device = next(model.parameters()).device
    for images, labels in loader:
        model(images.to(device))
        for stat, router in zip(stats, routers, strict=True):
            stat.update(router.last_weights, labels)
    for router in routers:
        router.record = False
    return [stat.class_matrix() for stat in stats]
