"""The LightningModule: owns loss, metrics, mixing and optimisation around an injected net."""

import inspect
import warnings
from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from cifar_moe.constants import CIFAR10_CLASSES
from cifar_moe.errors import UserError
from cifar_moe.inference import Classification, classify
from cifar_moe.training.auto_settings import (
    AUTO,
    Auto,
    call_compiled_or_eager,
    compile_in_place,
    facts_for_trainer,
    settle,
)
from cifar_moe.training.checkpointing import rng_states, set_rng_states
from cifar_moe.training.losses import FOCAL_FORM, FOCAL_GAMMA, FocalForm, LossName, build_loss
from cifar_moe.training.mixing import BatchMixer
from cifar_moe.training.schedules import scheduler_config
from cifar_moe.training.tta import TTAMode, tta_logits

STAGES = ("train", "val", "test")

# EMAWeightAveraging (configs/extras/ema.yaml) warns about any configure_model override since
# it cannot shard; ours only sets the memory format and compiles, so the warning misleads.
warnings.filterwarnings("ignore", message="You're using the WeightAveraging callback with a")


class LitClassifier(L.LightningModule):
    """Image classifier around any ``nn.Module`` that maps (B, 3, 32, 32) to (B, C) logits.

    Args:
        net: the network (a preset from ``cifar_moe/models/presets/`` or any module); num_classes is
            linked from the data module by the CLI.
        class_names: class names in label order; linked from the data module by the CLI.
        loss: ``cross_entropy`` or ``focal``.
        label_smoothing: label smoothing applied to (possibly mixed) targets.
        focal_gamma: focusing parameter of the focal loss; 0 makes it cross-entropy.
        focal_form: where the focal factor applies: ``per_class`` (each smoothed class term,
            the seed B report's form) or ``smoothed_ce`` (the smoothed cross-entropy).
        class_weights: per-class loss weights by class name, e.g. {cat: 1.2}; others 1.0.
        mixup_alpha: mixup Beta(alpha, alpha) parameter; 0 turns mixup off.
        cutmix_alpha: cutmix Beta(alpha, alpha) parameter; 0 turns cutmix off.
        cutmix_prob: probability of cutmix (vs mixup) for a batch when both are on.
        mix_until_epoch: mixing runs in epochs [0, mix_until_epoch); None = all epochs.
        optimizer: optimizer class and arguments (``class_path`` + ``init_args`` in YAML).
        scheduler: LR scheduler; OneCycleLR gets total_steps from the trainer and steps
            per batch, any other scheduler steps per epoch. None = constant LR.
        channels_last: run the network in channels_last memory format; ``auto`` = on a
            CUDA device only.
        compile: run the network through ``torch.compile`` (parameters and checkpoints are
            those of the plain network); ``auto`` = on a CUDA device only. If compiling
            fails, one line says so and the run goes on eager.
        tta: test-time augmentation at val/test/predict/classify: ``flip`` averages the
            logits of each image and its mirror (``cifar_moe/training/tta.py``).
    """

    def __init__(
        self,
        net: nn.Module,
        class_names: Sequence[str] = CIFAR10_CLASSES,
        loss: LossName = "cross_entropy",
        label_smoothing: float = 0.0,
        focal_gamma: float = FOCAL_GAMMA,
        focal_form: FocalForm = FOCAL_FORM,
        class_weights: dict[str, float] | None = None,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        cutmix_prob: float = 0.5,
        mix_until_epoch: int | None = None,
        optimizer: OptimizerCallable = torch.optim.SGD,
        scheduler: LRSchedulerCallable | None = None,
        channels_last: bool | Auto = AUTO,
        compile: bool | Auto = AUTO,
        tta: TTAMode = "none",
    ) -> None:
        super().__init__()
        self._save_hparams()
        self.net, self.tta = net, tta
        self.class_names = list(class_names)
        self.loss_fn = build_loss(
            loss, class_names, label_smoothing, focal_gamma, class_weights, focal_form
        )
        self.mixer = BatchMixer(
            len(self.class_names), mixup_alpha, cutmix_alpha, cutmix_prob, mix_until_epoch
        )
        self.speed_settings = {"channels_last": channels_last, "compile": compile}
        self.channels_last = channels_last is True  # 'auto' is settled in configure_model
        self.optimizer_factory = _checked_optimizer(optimizer)
        self.scheduler_factory = scheduler
        self._resumed_schedulers: list[dict] | None = None
        # One metric per stage, reset and synced by Lightning (a ModuleDict key "train" would
        # shadow nn.Module.train).
        for stage in STAGES:
            setattr(self, f"{stage}_acc", MulticlassAccuracy(len(class_names), average="micro"))

    def _save_hparams(self) -> None:
        # load_from_checkpoint needs no YAML: under the CLI `net` is saved as its config (a
        # hand-built one is dropped); tta is an evaluation choice, so `test --model.tta` wins.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            # Lightning reads the init arguments from the frame it is given: __init__'s.
            self.save_hyperparameters(ignore=["tta"], frame=inspect.currentframe().f_back)
        if isinstance(self.hparams.get("net"), nn.Module):
            self.hparams.pop("net")
            self._hparams_initial.pop("net", None)

    def configure_model(self) -> None:
        facts = facts_for_trainer(self._trainer)
        self.channels_last = settle(self.speed_settings["channels_last"], "channels_last", facts)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if settle(self.speed_settings["compile"], "compile", facts):
            compile_in_place(self.net)  # in place: state_dict keys stay those of `net`

    def forward(self, images: Tensor) -> Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return call_compiled_or_eager(self.net, images)

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> dict[str, Tensor]:
        images, labels = batch
        training = stage == "train"
        mixing = training and self.mixer.active(self.current_epoch)
        targets = labels
        if mixing:
            images, targets = self.mixer(images, labels)  # targets: (B, C) soft
        logits = self(images) if training else tta_logits(self, images, self.tta)
        loss = self.loss_fn(logits, targets)
        preds = logits.argmax(dim=-1)
        metric = getattr(self, f"{stage}_acc")
        # On a mixed batch accuracy is measured against each sample's dominant label.
        batch_acc = metric(preds, targets.argmax(dim=-1) if mixing else labels)
        if training:
            loss = self._training_loss(loss, batch_acc, mixing)
        # Epoch values carry the plain keys (train/loss, val/acc); train also logs per step.
        # Epoch-level values are averaged over all DDP processes once, at the epoch's end
        # (metric objects sync themselves); no collective per step.
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 sync_dist=True)
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True)
        return {"loss": loss, "preds": preds, "targets": labels}

    def _training_loss(self, loss: Tensor, batch_acc: Tensor, mixing: bool) -> Tensor:
        """The task loss checked, plus the network's regulariser; the per-step logs."""
        self._check_finite(loss)
        loss = loss + self._aux_loss()
        self.log("train/loss_step", loss, on_step=True, on_epoch=False)
        self.log("train/acc_step", batch_acc, on_step=True, on_epoch=False)
        self.log("train/mixing", float(mixing), on_step=False, on_epoch=True, sync_dist=True)
        return loss

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
        # Read by configure_optimizers, which Lightning calls before restoring schedulers.
        self._resumed_schedulers = checkpoint.get("lr_schedulers")
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])

    def _aux_loss(self) -> Tensor | float:
        """The network's own regulariser (``net.aux_loss()``, e.g. routing balance), if any."""
        aux = getattr(self.net, "aux_loss", None)
        value = aux() if callable(aux) else None
        if value is None:
            return 0.0
        self.log("train/aux_loss", value, on_step=False, on_epoch=True, sync_dist=True)
        return value

    def training_step(self, batch, batch_idx):
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._shared_step(batch, "test")

    def predict_step(self, batch, batch_idx):
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return tta_logits(self, images, self.tta).softmax(dim=-1)

    def classify(self, images, batch_size: int = 256) -> Classification:
        """Class names and probabilities for uint8 or PIL images: see ``cifar_moe.inference``."""
        return classify(self, images, batch_size)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self._scheduler_config(optimizer)}

    def _scheduler_config(self, optimizer) -> dict:
        saved = (self._resumed_schedulers or [None])[0]
        return scheduler_config(self.scheduler_factory, optimizer, self.trainer, saved)


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

