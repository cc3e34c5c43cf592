"""Ctrl-C / SIGTERM during fit: save ``interrupted.ckpt``, name the exact resume point, and
exit with the conventional status (130 / 143) so schedulers do not read success."""

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

EXIT_SIGINT = 128 + signal.SIGINT  # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143


class InterruptCheckpoint(L.Callback):
    """On Ctrl-C or SIGTERM during fit: save ``interrupted.ckpt`` and say how to resume.

    ``last.ckpt`` (end of the last finished epoch) is the exact resume point: resuming from
    it reproduces an uninterrupted run. ``interrupted.ckpt`` keeps the work of the partial
    epoch, but that epoch restarts its data order, so it is close rather than exact.
    """

    def on_exception(self, trainer, pl_module, exception) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        ckpt_cb = trainer.checkpoint_callback
        folder = Path(ckpt_cb.dirpath) if ckpt_cb and ckpt_cb.dirpath else Path(trainer.log_dir)
        path = folder / "interrupted.ckpt"
        trainer.save_checkpoint(path)
        last = getattr(ckpt_cb, "last_model_path", "") or ""
        if not Path(last).is_file():
            last = "none (no epoch finished)"
        if trainer.is_global_zero:
            print(f"interrupted at epoch {trainer.current_epoch}, step {trainer.global_step}; "
                  f"saved {path}. Exact resume: --ckpt_path {last}", file=sys.stderr)


@contextmanager
def interrupt_exit_codes() -> Iterator[None]:
    """Turn an interrupted run's exit into 130 (SIGINT) or 143 (SIGTERM).

    Lightning ends a SIGTERM with ``SIGTERMException`` (a ``SystemExit`` with status 0) and
    a Ctrl-C with ``sys.exit(1)`` raised while handling the ``KeyboardInterrupt``.
    """
    try:
        yield
    except SIGTERMException:
        raise SystemExit(EXIT_SIGTERM) from None
    except KeyboardInterrupt:
        raise SystemExit(EXIT_SIGINT) from None
    except SystemExit as err:
        if isinstance(err.__context__, KeyboardInterrupt):
            raise SystemExit(EXIT_SIGINT) from None
        raise
