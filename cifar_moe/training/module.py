"""The LightningModule: owns loss, metrics, mixing and optimisation around an injected net."""

import inspect
import warnings
from collections.abc import Sequence
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.optim.lr_scheduler import OneCycleLR
from torchmetrics.classification import MulticlassAccuracy

from cifar_moe.constants import CIFAR10_CLASSES
from cifar_moe.errors import UserError
from cifar_moe.routing_metrics import balance_penalty
from cifar_moe.training.losses import FocalLoss, SoftTargetCrossEntropy, class_weight_vector
from cifar_moe.training.mixing import BatchMixer
from cifar_moe.training.rng import rng_states, set_rng_states
from cifar_moe.training.routing_callbacks import find_routers

STAGES = ("train", "val", "test")


class LitClassifier(L.LightningModule):
    """Image classifier around any ``nn.Module`` that maps (B, 3, 32, 32) to (B, C) logits.

    Args:
        net: the network (a preset from ``configs/net/`` or any module); num_classes is
            linked from the data module by the CLI.
        class_names: class names in label order; linked from the data module by the CLI.
        loss: ``cross_entropy`` or ``focal``.
        label_smoothing: label smoothing applied to (possibly mixed) targets.
        focal_gamma: focusing parameter of the focal loss; 0 makes it cross-entropy.
        class_weights: per-class loss weights by class name, e.g. {cat: 1.2}; others 1.0.
        mixup_alpha: mixup Beta(alpha, alpha) parameter; 0 turns mixup off.
        cutmix_alpha: cutmix Beta(alpha, alpha) parameter; 0 turns cutmix off.
        cutmix_prob: probability of cutmix (vs mixup) for a batch when both are on.
        mix_until_epoch: mixing runs in epochs [0, mix_until_epoch); None = all epochs.
        optimizer: optimizer class and arguments (``class_path`` + ``init_args`` in YAML).
        scheduler: LR scheduler; OneCycleLR gets total_steps from the trainer and steps
            per batch, any other scheduler steps per epoch. None = constant LR.
        balance_weight: weight of the router balance regulariser; 0 turns it off.
        balance_kind: ``cv2`` (importance CV^2) or ``entropy`` (1 - batch-mean entropy).
        channels_last: run the network in channels_last memory format.
        compile: run the network through ``torch.compile`` (parameters and checkpoints are
            those of the plain network).
    """

    def __init__(
        self,
        net: nn.Module,
        class_names: Sequence[str] = CIFAR10_CLASSES,
        loss: Literal["cross_entropy", "focal"] = "cross_entropy",
        label_smoothing: float = 0.0,
        focal_gamma: float = 2.0,
        class_weights: dict[str, float] | None = None,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        cutmix_prob: float = 0.5,
        mix_until_epoch: int | None = None,
        optimizer: OptimizerCallable = torch.optim.SGD,
        scheduler: LRSchedulerCallable | None = None,
        balance_weight: float = 0.0,
        balance_kind: Literal["cv2", "entropy"] = "cv2",
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        _save_hparams_without_module(self)
        self.net = net
        self.class_names = list(class_names)
        self.loss_fn = _build_loss(
            loss, self.class_names, label_smoothing, focal_gamma, class_weights
        )
        self.mixer = BatchMixer(
            len(self.class_names), mixup_alpha, cutmix_alpha, cutmix_prob, mix_until_epoch
        )
        self.balance_weight, self.balance_kind = balance_weight, balance_kind
        self.balanced_routers = find_routers(net) if balance_weight > 0 else []
        for router in self.balanced_routers:
            router.keep_graph = True
        self.channels_last, self.compile_net = channels_last, compile
        # Kept out of the module registry so state_dict keys stay those of `net`.
        object.__setattr__(self, "_compiled", None)
        self.optimizer_factory = _checked_optimizer(optimizer)
        self.scheduler_factory = scheduler
        num_classes = len(self.class_names)
        # One metric object per stage: Lightning resets and syncs each at its own epoch end.
        # (ModuleDict keys cannot be "train": it would shadow nn.Module.train.)
        for stage in STAGES:
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro"))

    def configure_model(self) -> None:
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if self.compile_net and self._compiled is None:
            object.__setattr__(self, "_compiled", torch.compile(self.net))

    def forward(self, images: Tensor) -> Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return (self._compiled or self.net)(images)

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> dict[str, Tensor]:
        images, labels = batch
        targets = labels
        mixing = stage == "train" and self.mixer.active(self.current_epoch)
        if mixing:
            images, targets = self.mixer(images, labels)  # targets: (B, C) soft
        logits = self(images)
        loss = self.loss_fn(logits, targets)
        if stage == "train":
            self._check_finite(loss)
        if stage == "train" and self.balanced_routers:
            loss = loss + self._balance_loss()
        # On a mixed batch accuracy is measured against each sample's dominant label.
        reference = targets.argmax(dim=-1) if mixing else labels
        preds = logits.argmax(dim=-1)
        metric = getattr(self, f"{stage}_acc")
        batch_acc = metric(preds, reference)
        # Epoch values carry the plain keys (train/loss, val/acc); train also logs per step.
        # Evaluation losses are averaged over all processes (metric objects sync themselves).
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 sync_dist=stage != "train")
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True)
        if stage == "train":
            self.log("train/loss_step", loss, on_step=True, on_epoch=False)
            self.log("train/acc_step", batch_acc, on_step=True, on_epoch=False)
            self.log("train/mixing", float(mixing), on_step=False, on_epoch=True)
        return {"loss": loss, "preds": preds, "targets": labels}

    def _check_finite(self, loss: Tensor) -> None:
        # One host sync per step; a NaN that trains on silently costs far more.
        if not torch.isfinite(loss):
            last = getattr(self.trainer.checkpoint_callback, "last_model_path", "") or "none yet"
            raise UserError(
                f"non-finite training loss ({loss.item()}) at step {self.global_step}, "
                f"epoch {self.current_epoch}; last good checkpoint: {last}. "
                "Lower model.optimizer.init_args.lr or check the data"
            )

    def on_fit_start(self) -> None:
        until, max_epochs = self.mixer.until_epoch, self.trainer.max_epochs
        if until is not None and max_epochs is not None and 0 <= max_epochs < until:
            rank_zero_warn(f"model.mix_until_epoch ({until}) is beyond trainer.max_epochs "
                           f"({max_epochs}): mixing never switches off in this run")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Mixing draws, dropout masks and the next epoch's shuffle come from these
        # generators; saving them makes a resumed run continue the same random stream.
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])

    def _balance_loss(self) -> Tensor:
        penalty = torch.stack(
            [balance_penalty(r.live_weights, self.balance_kind) for r in self.balanced_routers]
        ).mean()
        self.log("train/balance_penalty", penalty, on_step=False, on_epoch=True)
        return self.balance_weight * penalty

    def training_step(self, batch, batch_idx):
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._shared_step(batch, "test")

    def predict_step(self, batch, batch_idx):
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(images).softmax(dim=-1)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self._scheduler_config(optimizer)}

    def _scheduler_config(self, optimizer) -> dict:
        target = _factory_class(self.scheduler_factory)
        if target is not None and issubclass(target, OneCycleLR):
            total = int(self.trainer.estimated_stepping_batches)
            scheduler = self.scheduler_factory(optimizer, total_steps=total)
            return {"scheduler": scheduler, "interval": "step"}
        return {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"}


def _save_hparams_without_module(module: L.LightningModule) -> None:
    """Save init args so ``load_from_checkpoint(path)`` needs no YAML.

    Under the CLI, Lightning records ``net`` as its config (class_path + init_args), which
    rebuilds the network on load. Built by hand, ``net`` arrives as a module object: it is
    dropped rather than pickled, and such a checkpoint loads with ``net=`` passed again.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
        module.save_hyperparameters(frame=inspect.currentframe().f_back)
    if isinstance(module.hparams.get("net"), nn.Module):
        module.hparams.pop("net")
        module._hparams_initial.pop("net", None)


def _checked_optimizer(factory: OptimizerCallable) -> OptimizerCallable:
    """Build the optimizer once on a dummy parameter, so bad settings fail at start-up."""
    try:
        probe = factory([torch.zeros(1, requires_grad=True)])
    except ValueError as err:  # torch's own checks, e.g. "Invalid learning rate: -0.1"
        raise UserError(f"model.optimizer: {err}; fix it in the config") from None
    for group in probe.param_groups:
        if group["lr"] <= 0:
            raise UserError(f"model.optimizer lr is {group['lr']}; use a positive lr")
    return factory


def _factory_class(factory) -> type | None:
    """The class a factory builds: the class itself, or the one jsonargparse's partial wraps."""
    if inspect.isclass(factory):
        return factory
    return next((arg for arg in getattr(factory, "args", ()) if inspect.isclass(arg)), None)


def _build_loss(loss, class_names, label_smoothing, focal_gamma, class_weights) -> nn.Module:
    if not 0.0 <= label_smoothing < 1.0:
        raise UserError(f"model.label_smoothing is {label_smoothing}; use a value in [0, 1)")
    weights = class_weight_vector(class_weights, class_names)
    if loss == "focal":
        return FocalLoss(len(class_names), focal_gamma, label_smoothing, weights)
    if class_weights:
        raise UserError("model.class_weights is only used by loss: focal; remove it or switch")
    return SoftTargetCrossEntropy(len(class_names), label_smoothing)
