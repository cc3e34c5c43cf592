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

from cifar_moe.core.constants import CIFAR10_CLASSES
from cifar_moe.core.errors import UserError
from cifar_moe.core.hardware import AUTO, Auto, facts_for_trainer
from cifar_moe.training.auto_settings import apply_speed_settings, call_compiled_or_eager
from cifar_moe.training.classify import Classification, classify
from cifar_moe.training.faults import rng_states, set_rng_states
from cifar_moe.training.hparams import save_init_hparams
from cifar_moe.training.losses import FOCAL_FORM, FOCAL_GAMMA, FocalForm, LossName, build_loss
from cifar_moe.training.mixing import BatchMixer
from cifar_moe.training.schedules import scheduler_config
from cifar_moe.training.train_totals import (
    TrainTotals,
    checked_optimizer,
    logs_this_step,
    with_foreach,
)
from cifar_moe.training.tta import TTAMode, tta_logits
from cifar_moe.training.whitening import whiten_stems

EVAL_STAGES = ("val", "test")  # training keeps its totals on the device (TrainTotals)

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
        cuda_graphs: replay the compiled network as CUDA graphs (compile mode
            ``reduce-overhead``, static shapes): one launch per graph instead of one per
            operator. Needs compile; off by default until measured faster on a GPU; on
            another device one line says it is off. With ``data.drop_last`` every training
            step has one shape, so one graph is recorded, not two.
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
        cuda_graphs: bool = False,
    ) -> None:
        super().__init__()
        save_init_hparams(self, inspect.currentframe())
        self.net, self.tta = net, tta
        self.class_names = list(class_names)
        self.loss_fn = build_loss(
            loss, class_names, label_smoothing, focal_gamma, class_weights, focal_form
        )
        self.mixer = BatchMixer(
            len(self.class_names), mixup_alpha, cutmix_alpha, cutmix_prob, mix_until_epoch
        )
        self.speed_settings = {"channels_last": channels_last, "compile": compile,
                               "cuda_graphs": cuda_graphs}
        self.channels_last = channels_last is True  # 'auto' is settled in configure_model
        self.cuda_graphs = False  # set in configure_model, where the device is known
        self.optimizer_factory = checked_optimizer(optimizer)
        self.scheduler_factory = scheduler
        self._resumed_schedulers: list[dict] | None = None
        self.totals = TrainTotals()
        # One metric per evaluation stage, reset and synced by Lightning.
        for stage in EVAL_STAGES:
            setattr(self, f"{stage}_acc", MulticlassAccuracy(len(class_names), average="micro"))

    def setup(self, stage: str) -> None:
        if stage == "fit":  # a whitening stem's filters come from the training images
            whiten_stems(self, self.trainer)

    def configure_model(self) -> None:
        apply_speed_settings(self, facts_for_trainer(self._attached_trainer()))

    def _attached_trainer(self) -> L.Trainer | None:
        """The Trainer, or None for a module used alone (the public property raises then)."""
        try:
            return self.trainer
        except RuntimeError:
            return None

    def forward(self, images: Tensor) -> Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        logits = call_compiled_or_eager(self.net, images)
        # A CUDA graph's outputs are overwritten by its next replay (TTA calls it twice).
        return logits.clone() if self.cuda_graphs else logits

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> dict[str, Tensor]:
        """Validation and test: the loss and the stage's metric object, logged per epoch."""
        images, labels = batch
        logits = tta_logits(self, images, self.tta)
        loss = call_compiled_or_eager(self.loss_fn, logits, labels)
        preds = logits.argmax(dim=-1)
        metric = getattr(self, f"{stage}_acc")
        metric(preds, labels)
        # Epoch-level values are averaged over all DDP processes once, at the epoch's end
        # (metric objects sync themselves); no collective per step.
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 sync_dist=True)
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True)
        return {"loss": loss, "preds": preds, "targets": labels}

    def training_step(self, batch, batch_idx):
        """Nothing here reads a value back from the device, except at Lightning's logging
        steps: the epoch's totals stay on the device (``TrainTotals``)."""
        images, labels = batch
        mixing = self.mixer.active(self.current_epoch)
        targets = labels
        if mixing:
            images, targets = self.mixer(images, labels)  # targets: (B, C) soft
        logits = self(images)
        loss = call_compiled_or_eager(self.loss_fn, logits, targets)
        preds = logits.argmax(dim=-1)
        # On a mixed batch accuracy is measured against each sample's dominant label.
        correct = (preds == (targets.argmax(dim=-1) if mixing else labels)).sum()
        aux = self._aux_loss()
        total = loss if aux is None else loss + aux
        self.totals.add(total, correct, aux, len(labels), mixing)
        if self._logs_this_step():
            self.log("train/loss_step", total.detach(), on_step=True, on_epoch=False)
            self.log("train/acc_step", correct / len(labels), on_step=True, on_epoch=False)
            self._check_finite()
        return {"loss": total, "preds": preds, "targets": labels}

    def _logs_this_step(self) -> bool:
        trainer = self._attached_trainer()  # None: a step called by hand; log and check it
        return trainer is None or logs_this_step(trainer)

    def _check_finite(self) -> None:
        """Stop on a non-finite training loss; read at logging steps, before a validation
        and at the epoch's end, so a NaN is found within one logging interval."""
        first, now = self.totals.unchecked_from, self.global_step
        self.totals.unchecked_from = now + 1
        if self.totals.finite():
            return
        last = getattr(self.trainer.checkpoint_callback, "last_model_path", "") or "none yet"
        raise UserError(
            f"non-finite training loss at steps {first}-{now} (checked once per logging "
            f"interval), epoch {self.current_epoch}; last good checkpoint: {last}. "
            "Lower model.optimizer.init_args.lr or check the data"
        )

    def on_train_epoch_start(self) -> None:
        self.totals = TrainTotals()
        self.totals.unchecked_from = self.global_step

    def on_validation_start(self) -> None:
        # Before a validation can report the NaN as a non-finite val/loss instead.
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self._check_finite()

    def on_train_epoch_end(self) -> None:
        """The epoch's training values: one read of the totals, summed over processes."""
        self._check_finite()
        reduce_sum = lambda t: self.trainer.strategy.reduce(t, reduce_op="sum")  # noqa: E731
        for name, value in self.totals.epoch_values(reduce_sum).items():
            # Summed above, so equal on every rank: the mean over ranks is the value.
            self.log(name, value, on_step=False, on_epoch=True, sync_dist=True,
                     prog_bar=name in ("train/loss", "train/acc"))

    def on_fit_start(self) -> None:
        if warning := self.mixer.schedule_warning(self.trainer.max_epochs):
            rank_zero_warn(warning)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Mixing draws, dropout masks and the next epoch's shuffle come from these
        # generators; saving them makes a resumed run continue the same random stream.
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Read by configure_optimizers, which Lightning calls before restoring schedulers.
        self._resumed_schedulers = checkpoint.get("lr_schedulers")
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])

    def _aux_loss(self) -> Tensor | None:
        """The network's own regulariser (``net.aux_loss()``, e.g. routing balance), if any."""
        aux = getattr(self.net, "aux_loss", None)
        return aux() if callable(aux) else None

    def validation_step(self, batch, batch_idx):
        return self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._shared_step(batch, "test")

    def predict_step(self, batch, batch_idx):
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return tta_logits(self, images, self.tta).softmax(dim=-1)

    def classify(self, images, batch_size: int = 256) -> Classification:
        """Class names and probabilities for uint8 or PIL images (``training/classify.py``)."""
        return classify(self, images, batch_size)

    def configure_optimizers(self):
        optimizer = with_foreach(self.optimizer_factory(self.parameters()))
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self._scheduler_config(optimizer)}

    def _scheduler_config(self, optimizer) -> dict:
        saved = (self._resumed_schedulers or [None])[0]
        return scheduler_config(self.scheduler_factory, optimizer, self.trainer, saved)

