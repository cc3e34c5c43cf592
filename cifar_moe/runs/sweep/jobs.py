"""The callable a submitit job runs: one command in one run folder, requeued on preemption.

A scheduler that preempts a job (or a job that reaches its time limit) signals it first;
submitit then calls :meth:`RunJob.checkpoint`, which queues the same job again. The requeued
job finds the run's ``last.ckpt`` and resumes from it (:func:`launch.run_logged`), so a
preempted trial loses at most the epoch it was in.
"""

from pathlib import Path

import submitit

from cifar_moe.runs.sweep.launch import run_logged


class RunJob(submitit.helpers.Checkpointable):
    """Run ``command`` in ``folder`` (output in its ``stdout.log``/``stderr.log``); the job's
    result is the command's exit status. ``checkpoint`` (inherited) requeues the same job."""

    def __init__(self, command: list[str], folder: Path, env: dict) -> None:
        self.command, self.folder, self.env = list(command), Path(folder), dict(env)

    def __call__(self) -> int:
        return run_logged(self.command, self.folder, self.env)
