"""The one place that touches underscored torch, Lightning and jsonargparse names.

Each use below has no public equivalent in the versions checked (torch 2.14.1, lightning
2.6.6, jsonargparse 4.53.0, tensorboard 2.21.0). If a name disappears in an upgrade, the
function named in its entry fails with an AttributeError pointing here, and
``tests/test_architecture.py`` (which forbids underscored framework names anywhere else)
keeps new uses from spreading. What each loses if it breaks is said beside it.
"""

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn


def widen_argument_type(parser, dest: str, extra) -> None:
    """Let an argument Lightning added with a closed ``Literal`` also take ``extra`` values.

    jsonargparse has no public way to change an added argument's type. Breaks: ``auto`` as
    ``trainer.precision`` (the CLI would have to drop its ``auto`` default).
    """
    action = next(a for a in parser._actions if a.dest == dest)
    action._typehint = extra | action._typehint | None


def is_compiled(net: nn.Module) -> bool:
    """Whether ``net.compile()`` has wrapped this module's ``__call__``.

    ``nn.Module.compile`` records its compiled callable only in a private attribute.
    Breaks: ``model.compile`` would compile twice or not fall back to eager.
    """
    return getattr(net, "_compiled_call_impl", None) is not None


def call_eager(net: nn.Module, *args):
    """Call ``net`` eagerly even when ``net.compile()`` wrapped it (``__call__`` would run
    the compiled graph; ``_call_impl`` is the eager path, hooks included). Breaks: a FLOP
    count through the compiled graph sees no aten ops."""
    return net._call_impl(*args)


def uncompile(net: nn.Module) -> None:
    """Undo ``net.compile()``: later calls run eager (there is no public ``uncompile``)."""
    net._compiled_call_impl = None


def eager_backward_lowering() -> AbstractContextManager:
    """Make Inductor compile the backward during the forward call, where a failure can still
    fall back to eager; a no-op where the switch does not exist.

    Breaks: nothing fails; a compile failure in the backward would then surface as an error
    instead of the one-line fallback.
    """
    config = torch._functorch.config
    if hasattr(config, "force_non_lazy_backward_lowering"):
        return config.patch(force_non_lazy_backward_lowering=True)
    return nullcontext()


def summary_file_writer(writer):
    """The event-file writer of a ``SummaryWriter``, to add a raw HParams summary to the run's
    own event file (``add_hparams`` writes a second run folder instead).

    Breaks: the HParams tab of new runs stays empty.
    """
    return writer._get_file_writer()


def dump_trainer_checkpoint(trainer) -> dict:
    """The checkpoint dict ``trainer.save_checkpoint`` would write, without its collective
    barrier: after a DDP peer died, no one is left to meet at the barrier.

    Breaks: a DDP run whose peer died saves no ``interrupted.ckpt`` (it says so).
    """
    return trainer._checkpoint_connector.dump_checkpoint(weights_only=False)


def argument_typehint(action):
    """The type a jsonargparse action was added with (jsonargparse keeps it only privately).

    Breaks: ``--help`` shows no valid names for typed settings (the values still parse).
    """
    return getattr(action, "_typehint", None)


def help_is_preexpanded(action) -> bool:
    """Whether jsonargparse already expanded this action's help text (its private marker).

    Breaks: such help lines would get "default: ..." appended twice.
    """
    return bool(getattr(action, "_jsonargparse_preexpanded_help", False))


def epoch_from_one_bar():
    """Lightning's rich progress bar with epochs counted from 1 ("Epoch 1/5" for the first
    of five), as the checkpoint names, the run summary and the curves count them; None where
    ``rich`` is not installed (Lightning then picks its own bar).

    The bar's text comes from the private ``_get_train_description`` (no public hook).
    Breaks: the bar shows Lightning's own 0-based "Epoch 0/4" again.
    """
    from lightning.pytorch.callbacks import RichProgressBar

    class EpochFromOneBar(RichProgressBar):
        def _get_train_description(self, current_epoch: int) -> str:
            text = f"Epoch {current_epoch + 1}"
            if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:
                text += f"/{self.trainer.max_epochs}"
            # Padded to the validation text, as Lightning does, so the bars line up.
            return text.ljust(len(self.validation_description))

    try:
        return EpochFromOneBar()
    except ModuleNotFoundError:  # RichProgressBar without rich
        return None


def drop_initial_hparam(module, name: str) -> None:
    """Remove ``name`` from the hyperparameters a LightningModule logs and checkpoints.

    ``hparams`` is public and mutable, but ``hparams_initial`` (what the loggers and
    checkpoints store) is a copy of a private dict. Breaks: a hand-built network object
    would be pickled into the checkpoint's hyperparameters.
    """
    module._hparams_initial.pop(name, None)


def saves_on_train_epoch_end(callback, trainer) -> bool:
    """Whether a ``ModelCheckpoint`` saves its top-k at the train epoch end (its private
    decision, made from ``save_on_train_epoch_end`` and the validation schedule).

    Breaks: ``last.ckpt`` after a validation would hold the top-k state of the epoch before.
    """
    return callback._should_save_on_train_epoch_end(trainer)


def profile_compiled_kernels() -> None:
    """Make the CPU kernels Inductor generates appear in ``torch.profiler`` traces (each a
    record_function named ``..._cpp_fused_...``); set before the first compile.

    Inductor's config module is private and this switch has no public form. Breaks: a
    compiled step's operator count (``benchmarks/_ops.py``) would leave its fused kernels out.
    """
    import torch._inductor.config as inductor_config

    inductor_config.cpp.enable_kernel_profile = True
