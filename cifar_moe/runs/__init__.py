"""Run folders and what is built from many runs: the run listing and the study runner."""

from cifar_moe.runs.listing import best_checkpoint

__all__ = ["best_checkpoint"]
