"""Checkpointing and resume, in one place.

- ``atomic_io``: ``AtomicCheckpointIO``, saves that are whole or absent; stale partials removed.
- ``epoch_checkpoint``: ``EpochCheckpoint``, top-k plus ``last.ckpt`` every epoch, never
  a non-finite save.
- ``interrupt``: ``InterruptCheckpoint`` and the 130/143 exit codes.
- ``stop_together``: every DDP process stops at the same step after a signal to any one;
  a process that died ends the others with one line.
- ``resume``: RNG states in the checkpoint, ``--ckpt_path`` checks, the network-mismatch check.
- ``preflight``: settings checked before training (writable folders, monitor, schedules).
"""

from cifar_moe.training.checkpointing.atomic_io import AtomicCheckpointIO, remove_stale_partials
from cifar_moe.training.checkpointing.epoch_checkpoint import EpochCheckpoint, non_finite_count
from cifar_moe.training.checkpointing.interrupt import InterruptCheckpoint, interrupt_exit_codes
from cifar_moe.training.checkpointing.preflight import (
    check_config_files,
    parser_error_line,
    preflight,
    trainer_problem,
)
from cifar_moe.training.checkpointing.resume import (
    check_same_network,
    check_weights_fit,
    read_checkpoint,
    rng_states,
    set_rng_states,
)

__all__ = [
    "AtomicCheckpointIO",
    "EpochCheckpoint",
    "InterruptCheckpoint",
    "check_config_files",
    "check_same_network",
    "check_weights_fit",
    "interrupt_exit_codes",
    "non_finite_count",
    "parser_error_line",
    "preflight",
    "read_checkpoint",
    "remove_stale_partials",
    "rng_states",
    "set_rng_states",
    "trainer_problem",
]
