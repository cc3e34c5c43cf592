"""Ctrl-C / SIGTERM during fit: save ``interrupted.ckpt``, name the exact resume point, and
exit with the conventional status (130 / 143) so schedulers do not read success.

Under DDP the signal may reach any one rank; ``stop_together`` makes every rank stop at the
same step, and a rank that died ends the others with one line (exit 1) instead of a hang
or a traceback from each survivor."""

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from cifar_moe.core.private_api import dump_trainer_checkpoint
from cifar_moe.training.faults import stop_together as together

EXIT_SIGINT = 128 + signal.SIGINT  # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143
EXIT_PEER_FAILURE = 1


class RememberedCtrlC:
    """Python's own Ctrl-C (``KeyboardInterrupt`` at once), remembered until acted on.

    Python drops an exception raised inside a weakref callback or ``__del__`` ("Exception
    ignored in ..."). A Ctrl-C that lands there is lost and the run goes on to its last
    epoch: seen under load, where a sweep's one stop request to a trial was ignored and the
    trial ran to the end. The flag lets the next batch raise it again, from a hook."""

    def __init__(self) -> None:
        self.received = False
        self._previous = None

    def install(self) -> None:
        self.received = False
        # Only Python's own Ctrl-C is replaced: an ignored SIGINT (a job started with `&`)
        # or a harness's handler stays as it is. Only the main thread may set handlers (and
        # only it receives signals), so a fit run from another thread keeps what it has.
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, _signum: int, _frame) -> None:
        self.received = True
        raise KeyboardInterrupt


class InterruptCheckpoint(L.Callback):
    """On Ctrl-C or SIGTERM during fit: save ``interrupted.ckpt`` and say how to resume.

    ``last.ckpt`` (end of the last finished epoch) is the exact resume point: resuming from
    it reproduces an uninterrupted run. ``interrupted.ckpt`` keeps the work of the partial
    epoch, but that epoch restarts its data order, so it is close rather than exact.
    """

    def __init__(self) -> None:
        self._flag = together.SignalFlag()
        self._ctrl_c = RememberedCtrlC()
        self._signalled = ""  # which rank(s) got the signal, for the message

    def on_train_start(self, trainer, pl_module) -> None:
        # after Lightning installed its own handlers (its SIGTERM one already defers to a
        # batch boundary, so one process only needs Ctrl-C kept from being lost)
        if trainer.world_size > 1:
            self._flag.install()
        else:
            self._ctrl_c.install()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx,
                                  dataloader_idx=0) -> None:
        self._raise_lost_ctrl_c()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._raise_lost_ctrl_c()
        if not self._flag.installed:
            return
        device = trainer.strategy.root_device
        signum, _, _ = together.agree_on_stop(self._flag.signum, device)
        if signum:
            # A signal to the whole group can reach a busy rank just after it built its
            # flag; every rank's handler has run by now, so ask again who received it.
            _, low, high = together.agree_on_stop(self._flag.signum, device)
            ranks = f"rank {low}" if low == high else f"ranks {low}-{high}"
            self._signalled = f" (signal on {ranks})"
            together.raise_stop(signum)

    def _raise_lost_ctrl_c(self) -> None:
        if self._ctrl_c.received:  # its KeyboardInterrupt was swallowed on the way
            self._ctrl_c.received = False
            raise KeyboardInterrupt

    def teardown(self, trainer, pl_module, stage) -> None:
        self._flag.uninstall()
        self._ctrl_c.uninstall()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._ctrl_c.received = False
        self._ctrl_c.uninstall()  # Lightning calls no callback teardown after an exception
        if together.is_peer_failure(exception):
            self._after_peer_failure(trainer, exception)
            return
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        path = _folder(trainer) / "interrupted.ckpt"
        trainer.save_checkpoint(path, weights_only=False)
        if trainer.is_global_zero:
            print(f"interrupted{self._signalled} in epoch {trainer.current_epoch + 1}, step "
                  f"{trainer.global_step}; saved {path}. Exact resume: --ckpt_path "
                  f"{_last(trainer)}", file=sys.stderr)

    def _after_peer_failure(self, trainer, exception) -> None:
        """Another rank died: rank 0 saves what it holds without any collective (there is
        no one left to meet), and every survivor says so in one line."""
        saved = ""
        if trainer.is_global_zero:
            path = _folder(trainer) / "interrupted.ckpt"
            try:
                checkpoint = dump_trainer_checkpoint(trainer)
                trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, path)
                saved = f"; saved {path}"
            except Exception as err:  # any failure: the line below still says what to do
                saved = f"; could not save interrupted.ckpt ({type(err).__name__})"
        print(f"stopped on rank {trainer.global_rank}: another process of this DDP run "
              f"ended ({together.peer_failure_gist(exception)}) in epoch "
              f"{trainer.current_epoch + 1}, step {trainer.global_step}{saved}. Exact resume: "
              f"--ckpt_path {_last(trainer)}", file=sys.stderr)
        exception.cifar_moe_reported = True


def _folder(trainer) -> Path:
    ckpt_cb = trainer.checkpoint_callback
    return Path(ckpt_cb.dirpath) if ckpt_cb and ckpt_cb.dirpath else Path(trainer.log_dir)


def _last(trainer) -> str:
    last = getattr(trainer.checkpoint_callback, "last_model_path", "") or ""
    return last if Path(last).is_file() else "none (no epoch finished)"


@contextmanager
def interrupt_exit_codes() -> Iterator[None]:
    """Turn an interrupted run's exit into 130 (SIGINT) or 143 (SIGTERM), and a DDP run
    whose other process died into one line and 1.

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
    except RuntimeError as err:
        if not together.is_peer_failure(err):
            raise
        if not getattr(err, "cifar_moe_reported", False):
            print(f"stopped: another process of this DDP run ended "
                  f"({together.peer_failure_gist(err)})", file=sys.stderr)
        raise SystemExit(EXIT_PEER_FAILURE) from None
