"""Where a run executes: a process on this machine, or a submitit job (SLURM, or submitit's
local executor). Sweep trials and study runs (``runs/study/submit.py``) both use these
launchers, their command-line flags and their ``launcher:`` YAML block.

Whatever the launcher, a run that starts in a folder holding a ``last.ckpt`` resumes from it
(``--ckpt_path``): a retried trial after Ctrl-C, and a job the scheduler requeued after a
preemption, go on from their last finished epoch instead of starting over.
"""

import argparse
import os
import signal
import subprocess
from pathlib import Path
from typing import Protocol

from cifar_moe.runs.sweep.spec import LAUNCHERS, LaunchSettings, _launch

STDOUT, STDERR = "stdout.log", "stderr.log"
STOP_WAIT_S = 120
"""How long a stopped run may take to save its checkpoint and exit."""


def last_checkpoint(folder: Path) -> Path | None:
    """The newest ``last.ckpt`` of the runs under ``folder/lightning_logs`` (whatever the run
    folders are named), if any."""
    found = Path(folder).glob("lightning_logs/**/checkpoints/last.ckpt")
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def resume_args(folder: Path) -> list[str]:
    last = last_checkpoint(folder)
    return [f"--ckpt_path={last}"] if last is not None else []


def run_logged(command: list[str], folder: Path, env: dict | None = None) -> int:
    """Run ``command`` (resuming from the folder's ``last.ckpt``) with its output appended to
    the folder's logs; its exit status. If this process is stopped meanwhile (Ctrl-C, a
    scheduler's requeue), the run gets SIGTERM and time to save its checkpoint first."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / STDOUT, "a") as out, open(folder / STDERR, "a") as err:
        child = subprocess.Popen([*command, *resume_args(folder)], stdout=out, stderr=err,
                                 env=dict(os.environ, **(env or {})))
        try:
            return child.wait()
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(STOP_WAIT_S)
                except subprocess.TimeoutExpired:
                    child.kill()


class Handle(Protocol):
    """A started run."""

    error: str | None  # set when the launcher itself failed (no exit status to read)

    def poll(self) -> int | None:
        """Its exit status once it ended, else None."""

    def cancel(self) -> None:
        """Ask it to stop (it saves a checkpoint and exits)."""


class LocalHandle:
    """A run as a child process of this one, in its own session: a Ctrl-C at the terminal
    reaches the sweep only, which then stops each run exactly once."""

    def __init__(self, command: list[str], folder: Path, env: dict | None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.error = None
        with open(folder / STDOUT, "a") as out, open(folder / STDERR, "a") as err:
            self.process = subprocess.Popen(
                [*command, *resume_args(folder)], stdout=out, stderr=err,
                env=dict(os.environ, **(env or {})), start_new_session=True)
        self._cancelled = False

    def poll(self) -> int | None:
        return self.process.poll()

    def cancel(self) -> None:
        if not self._cancelled and self.process.poll() is None:
            self._cancelled = True
            self.process.send_signal(signal.SIGINT)  # the CLI saves interrupted.ckpt, exits 130


class SubmititHandle:
    """A run as a submitit job; its exit status is the job's result."""

    def __init__(self, job) -> None:
        self.job, self.error, self._code = job, None, None

    def poll(self) -> int | None:
        if self._code is None and self.job.done():
            try:
                self._code = int(self.job.result())
            except Exception as err:  # the job failed outside the run: submitit's error
                self.error = " ".join(str(err).split())[-300:] or type(err).__name__
                self._code = -1
        return self._code

    def cancel(self) -> None:
        self.job.cancel(check=False)


class LocalLauncher:
    """Each run a process on this machine."""

    name = "local"

    def start(self, command: list[str], folder: Path, env: dict | None = None) -> LocalHandle:
        return LocalHandle(command, folder, env)


class SubmititLauncher:
    """Each run a submitit job: on SLURM (``slurm``) or on this machine (``submitit-local``,
    submitit's local executor, which also requeues a preempted job)."""

    def __init__(self, settings: LaunchSettings) -> None:
        self.settings, self.name = settings, settings.name

    def start(self, command: list[str], folder: Path, env: dict | None = None) -> SubmititHandle:
        import submitit

        from cifar_moe.runs.sweep.jobs import RunJob

        cluster = "slurm" if self.settings.name == "slurm" else "local"
        executor = submitit.AutoExecutor(folder=folder / "submitit", cluster=cluster)
        executor.update_parameters(**job_parameters(self.settings, folder.name))
        return SubmititHandle(executor.submit(RunJob(command, folder, env or {})))


def job_parameters(settings: LaunchSettings, name: str) -> dict:
    """submitit's parameters from the launcher settings (SLURM-only ones are ignored by the
    local executor)."""
    wanted = {"name": name, "timeout_min": settings.time, "gpus_per_node": settings.gpus,
              "cpus_per_task": settings.cpus, "mem_gb": settings.mem_gb,
              "slurm_partition": settings.partition}
    return {key: value for key, value in wanted.items() if value is not None}


def launcher_for(settings: LaunchSettings):
    return LocalLauncher() if settings.name == "local" else SubmititLauncher(settings)


def add_launch_options(parser: argparse.ArgumentParser, what: str) -> None:
    """The launcher flags of a command whose runs are ``what`` (trials, runs)."""
    # No argparse choices: a bad name is then the settings' own one line, as in the YAML.
    parser.add_argument("--launcher", default=None, metavar="|".join(LAUNCHERS),
                        help=f"{what} as local processes (default), SLURM jobs through "
                             "submitit, or jobs of submitit's local executor")
    for flag, unit in (("gpus", "GPUs per job"), ("cpus", "CPUs per job"),
                       ("time", "minutes per job"), ("mem-gb", "memory per job (GB)")):
        parser.add_argument(f"--{flag}", type=int, default=None, help=f"{unit} (slurm)")
    parser.add_argument("--partition", default=None, help="SLURM partition")


def launch_flags(opts: argparse.Namespace) -> dict:
    """The launcher flags given (None: not given, the YAML's value or the default holds)."""
    return {"name": opts.launcher, "gpus": opts.gpus, "cpus": opts.cpus, "time": opts.time,
            "partition": opts.partition, "mem_gb": opts.mem_gb}


def launch_settings(raw, flags: dict, where: str) -> LaunchSettings:
    """A YAML's ``launcher:`` block (``raw``) with the flags over it, checked (one
    :class:`UserError` line naming the setting)."""
    return _launch({} if raw is None else raw, flags, where)
