"""Framework messages on every run that point at nothing a user can fix, silenced at their
source so that the warnings that remain are worth reading.

Applied once, when ``cifar_moe.training.faults`` is imported (the CLI, ``LitClassifier``
and the notebooks all import it). Each filter matches one message and says why it goes;
Lightning's warnings about real mistakes (a missing checkpoint, a bad setting) stay.
"""

import logging
import warnings

TIP_PREFIX = "💡 Tip:"


class _DropTips(logging.Filter):
    """Lightning's advertisements for its cloud services (litlogger, litmodels), printed at
    INFO on every Trainer: they say nothing about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TIP_PREFIX)


def quiet() -> None:
    """Install the filters (idempotent: warnings and logging drop duplicates)."""
    # lightning 2.6.6's own utilities/_pytree.py uses torch's LeafSpec, deprecated in torch
    # 2.10+; fixed upstream, nothing in this project or a user's config triggers it.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    # LightningCLI (lightning/pytorch/cli.py) calls jsonargparse APIs deprecated in 4.49
    # (add_instantiator, instantiate_classes, skip_none); Lightning has to move, not us.
    warnings.filterwarnings("ignore", category=DeprecationWarning,
                            module=r"lightning\.pytorch\.cli")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
