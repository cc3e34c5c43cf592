"""Routing analytics and the router temperature schedule, as Lightning callbacks.

Both find routers as the ``Router`` modules inside ``pl_module.net``; a network without
routers (ResNet-18) or with K = 1 is simply left alone.
"""

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from cifar_moe.analysis.routing.plots import matrix_figure
from cifar_moe.analysis.routing.stats import RoutingStats
from cifar_moe.models.expert_conv import ExpertConv2d
from cifar_moe.models.router import Router, find_routers


class RoutingAnalytics(L.Callback):
    """Per routed block: routing entropy, balance, mutual information, max share, dead
    experts, importance CV^2 (``route/block<i>/<metric>``), and a class x expert image; at
    each validation epoch also how far apart the block's experts are (``expert_spread``).
    ``i`` is the block's position in the network, static blocks included.

    The routers record their last weights during validation/test only while this callback
    is on, so it needs no second forward pass and costs nothing when absent.

    Args:
        on_train: also accumulate over training batches (``route_train/...``).
        class_matrix: log the class x expert mean-weight matrix as an image per epoch.
    """

    def __init__(self, on_train: bool = False, class_matrix: bool = True) -> None:
        self.on_train = on_train
        self.class_matrix = class_matrix
        self.routers: list[Router] = []
        self.labels: list[str] = []
        self.experts: list[ExpertConv2d | None] = []
        self.state: dict[str, list[RoutingStats]] = {}

    def setup(self, trainer, pl_module, stage) -> None:
        self.routers = find_routers(pl_module)
        self.labels = _block_labels(pl_module, self.routers)
        for router in self.routers:
            router.record = True
        # Each routed block's experts, in the routers' order, for ``expert_spread``.
        by_router = {id(m.router): m.experts for m in pl_module.modules()
                     if isinstance(getattr(m, "experts", None), ExpertConv2d)
                     and isinstance(getattr(m, "router", None), Router)}
        self.experts = [by_router.get(id(r)) for r in self.routers]

    def _reset(self, stage, num_classes, device) -> None:
        self.state[stage] = [RoutingStats(r.num_experts, num_classes).to(device)
                             for r in self.routers]

    def _accumulate(self, stage, labels) -> None:
        for stats, router in zip(self.state[stage], self.routers, strict=True):
            stats.update(router.last_weights, labels)

    def _finish(self, stage, trainer, pl_module) -> list[torch.Tensor]:
        matrices = []
        prefix = {"train": "route_train", "val": "route", "test": "route_test"}[stage]
        for i, stats in enumerate(self.state.pop(stage, [])):
            stats.reduce(lambda t: trainer.strategy.reduce(t, reduce_op="sum"))
            for name, value in stats.summary().items():
                # Reduced above, so equal on every rank: the mean over ranks is the value.
                pl_module.log(f"{prefix}/{self.labels[i]}/{name}", value, sync_dist=True)
            matrices.append(stats.class_matrix())  # (C, K) mean weight per class
            if stage == "val" and self.experts[i] is not None:  # of the weights, not data
                pl_module.log(f"{prefix}/{self.labels[i]}/expert_spread",
                              self.experts[i].spread(), sync_dist=True)
        return matrices

    def _on_batch(self, stage, batch) -> None:
        if self.routers and stage in self.state:
            self._accumulate(stage, batch[1])

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.on_train:
            self._reset("train", len(pl_module.class_names), pl_module.device)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._reset("val", len(pl_module.class_names), pl_module.device)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._reset("test", len(pl_module.class_names), pl_module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Training batches may be mixed; the class matrix then uses the first label.
        self._on_batch("train", batch)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl=0):
        self._on_batch("val", batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl=0):
        self._on_batch("test", batch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._finish("train", trainer, pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        matrices = self._finish("val", trainer, pl_module)
        if self.class_matrix and not trainer.sanity_checking and trainer.is_global_zero:
            _log_matrices(trainer, matrices, pl_module.class_names, self.labels)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        matrices = self._finish("test", trainer, pl_module)
        for label, matrix in zip(self.labels, matrices, strict=True):
            rank_zero_info(format_class_matrix(matrix, pl_module.class_names, label))


def _block_labels(module, routers: list[Router]) -> list[str]:
    """``block<i>`` for each routing router, i counting every block's router (K = 1 ones
    too), so a network that routes only some blocks names them by their position."""
    position = {id(r): i for i, r in enumerate(m for m in module.modules()
                                                if isinstance(m, Router))}
    return [f"block{position[id(r)]}" for r in routers]


def format_class_matrix(matrix: torch.Tensor, class_names, title: str) -> str:
    """A (C, K) class x expert mean-weight table as text."""
    width = max(len(n) for n in class_names)
    header = " " * width + "  " + " ".join(f"  e{k}" for k in range(matrix.shape[1]))
    rows = [f"{n:<{width}}  " + " ".join(f"{float(v):.2f}" for v in row)
            for n, row in zip(class_names, matrix, strict=True)]
    return "\n".join([f"routing {title}: mean weight per class (rows) and expert", header, *rows])


def _log_matrices(trainer, matrices, class_names, labels) -> None:
    for logger in (lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)):
        for label, matrix in zip(labels, matrices, strict=True):
            fig = matrix_figure(matrix, class_names, label)
            logger.experiment.add_figure(f"route/{label}/class_expert", fig, trainer.global_step)
