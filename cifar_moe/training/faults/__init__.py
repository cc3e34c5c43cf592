"""Checkpointing and resume, in one place.

- ``atomic_io``: ``AtomicCheckpointIO``, saves that are whole or absent; stale partials removed.
- ``epoch_checkpoint``: ``EpochCheckpoint``, top-k plus ``last.ckpt`` every epoch, never
  a non-finite save.
- ``interrupt``: ``InterruptCheckpoint`` and the 130/143 exit codes.
- ``stop_together``: every DDP process stops at the same step after a signal to any one;
  a process that died ends the others with one line.
- ``resume``: RNG states in the checkpoint, ``--ckpt_path`` checks, the network-mismatch check.
- ``preflight``: settings checked before training (writable folders, monitor, schedules).
- ``framework_noise``: framework messages that point at nothing fixable, filtered at import.
"""

from cifar_moe.training.faults import framework_noise
from cifar_moe.training.faults.atomic_io import AtomicCheckpointIO, remove_stale_partials
from cifar_moe.training.faults.epoch_checkpoint import EpochCheckpoint, non_finite_count
from cifar_moe.training.faults.interrupt import InterruptCheckpoint, interrupt_exit_codes
from cifar_moe.training.faults.preflight import (
    check_config_files,
    parser_error_line,
    preflight,
    trainer_problem,
)
from cifar_moe.training.faults.resume import (
    check_ckpt_alias,
    check_same_network,
    check_weights_fit,
    read_checkpoint,
    rng_states,
    set_rng_states,
    settings_differences,
)

framework_noise.quiet()

__all__ = [
    "AtomicCheckpointIO",
    "EpochCheckpoint",
    "InterruptCheckpoint",
    "check_ckpt_alias",
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
    "settings_differences",
    "trainer_problem",
]
