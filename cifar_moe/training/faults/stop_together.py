"""Stopping every DDP process together: after a signal to any one rank, or when a rank dies.

Lightning's own SIGTERM handler broadcasts from inside the signal handler. On a non-zero
rank that broadcast pairs with whatever collective rank 0 runs next (a gradient
all-reduce, say), and both processes hang: measured with two CPU processes, no progress
and no checkpoint for 90 s, until rank 0 was killed. Here a signal only sets a flag; at
the start of every training batch the ranks agree on their flags with one all-reduce, so
all of them raise the same interruption at the same step, and the interrupted checkpoint
is written collectively as in a single-process run.

A rank that dies (``kill -9``, the out-of-memory killer) closes its sockets; the others'
next collective fails with "connection closed/reset by peer" within seconds, which
:func:`is_peer_failure` recognises so the run can end with one line instead of a
traceback from every surviving rank.
"""

import os
import signal

import torch
import torch.distributed as dist
from lightning.pytorch.utilities.exceptions import SIGTERMException

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How gloo and NCCL word a peer that went away (torch 2.x), lower-cased.
_PEER_GONE = ("connection closed by peer", "connection reset by peer", "broken pipe",
              "connection refused", "nccl communicator was aborted", "remote process exited")


class SignalFlag:
    """SIGINT/SIGTERM handlers that only record the first signal; a second one acts at once
    with the signal's default action (the way to force-quit a run that is stopping)."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, object] = {}

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def install(self) -> None:
        self.signum = 0
        self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, _frame) -> None:
        if self.signum:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum


def agree_on_stop(signum: int, device: torch.device) -> tuple[int, int, int]:
    """Every rank's flag, combined: (signal number, lowest and highest rank that received
    it), or (0, ...) when none did.

    A collective: every rank must call it at the same point (the start of a training
    batch, which DDP keeps in step on all ranks)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    flag = torch.tensor([signum, rank if signum else -1, -rank if signum else -world],
                        device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # (3,): max signal, max rank, -min rank
    return int(flag[0]), -int(flag[2]), int(flag[1])


def raise_stop(signum: int) -> None:
    """The exception Lightning ends a run with for this signal (SIGINT -> Ctrl-C)."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SIGTERMException


def is_peer_failure(err: BaseException) -> bool:
    """Whether ``err`` says another process of the run went away mid-collective."""
    if isinstance(err, getattr(dist, "DistNetworkError", ())):
        return True
    if not isinstance(err, RuntimeError):
        return False
    text = str(err).lower()
    return any(mark in text for mark in _PEER_GONE)


def peer_failure_gist(err: BaseException) -> str:
    """The backend's message without its source location and advice: 'Connection reset by
    peer [127.0.0.1]:55011'."""
    text = str(err).split("] ", 1)[-1] if str(err).startswith("[") else str(err)
    return text.split(". ")[0].strip()
