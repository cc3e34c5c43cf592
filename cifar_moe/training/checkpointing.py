"""Alias for run configs written by 0.1, whose ``trainer.plugins`` name
``cifar_moe.training.checkpointing.AtomicCheckpointIO``; fault handling lives in
``cifar_moe.training.faults``."""

from cifar_moe.training.faults import AtomicCheckpointIO

__all__ = ["AtomicCheckpointIO"]
