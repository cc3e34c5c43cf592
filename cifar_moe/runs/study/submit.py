"""A study run as a submitit job (``--launcher slurm|submitit-local``): the folder, the child
command and the result files of a local run, launched by the sweep's launchers.

A folder that a stopped run left behind (no ``result.json`` and no ``error.json``, a
``last.ckpt``, and the recipe it recorded in ``inputs.json`` still the study's) is kept, and
its job resumes from that ``last.ckpt`` (``--ckpt_path``): a job requeued after a preemption,
and a job started again by a re-run of the study, go on from their last finished epoch. Any
other folder starts clean, as a local run's does.
"""

import shutil
import time
from collections.abc import Callable

from cifar_moe.core.atomic_files import write_json_atomic
from cifar_moe.runs.study import child
from cifar_moe.runs.study.inputs import INPUTS, recorded_inputs, what_changed
from cifar_moe.runs.study.lock import hold_run_folder
from cifar_moe.runs.study.plan import ERROR, Run, child_command, inputs_of
from cifar_moe.runs.study.spec import Study
from cifar_moe.runs.sweep.launch import last_checkpoint

POLL_S = 1.0
"""How often a job's state is read (each read is a file check, or ``sacct`` on SLURM)."""


def resumable(study: Study, run: Run) -> bool:
    """Whether ``run``'s folder holds a stopped run of the study's current recipe."""
    recorded = recorded_inputs(run.folder)
    return (last_checkpoint(run.folder) is not None and not (run.folder / ERROR).is_file()
            and recorded is not None and not what_changed(recorded, inputs_of(study, run)))


def prepare_folder(study: Study, run: Run, on_wait: Callable[[], None] | None) -> None:
    """Keep a resumable folder, wipe any other; under the folder's lock, which the job's
    child then takes for its life (a run of a killed study process may still hold it)."""
    with hold_run_folder(run.lock_path, run.folder, on_wait=on_wait):
        if run.folder.exists() and not resumable(study, run):
            shutil.rmtree(run.folder)
        run.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run.folder / INPUTS, inputs_of(study, run))


def execute_job(study: Study, run: Run, launcher,
                on_wait: Callable[[], None] | None = None) -> dict | None:
    """Run one cell as a job and wait for it; None when it succeeded, else its error record
    (``interrupted``: cancelled by the study's SIGTERM or Ctrl-C, resumed on a re-run)."""
    prepare_folder(study, run, on_wait)
    cmd = child_command(study, run, None, job=True)
    if child.jobs_cancelled():
        return child.outcome(run, None, cmd, stopped=True)
    handle = launcher.start(cmd, run.folder)
    cancelled = False
    while (code := handle.poll()) is None:
        if child.jobs_cancelled() and not cancelled:
            handle.cancel()  # the run saves its checkpoint and exits; wait for that
            cancelled = True
        time.sleep(POLL_S)
    return child.outcome(run, code, cmd, cancelled, handle.error)
