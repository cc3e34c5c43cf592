"""Alias for run configs written by 0.1, whose ``trainer.callbacks`` name
``cifar_moe.study.recorder.RunRecorder``; the class lives in ``cifar_moe.runs.study``."""

from cifar_moe.runs.study.recorder import RunRecorder

__all__ = ["RunRecorder"]
