"""Each run's child process: started from a clean, locked folder, its exit read as one line,
and stopped with the study when the study process gets SIGTERM."""

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable

from cifar_moe.core.atomic_files import write_json_atomic
from cifar_moe.runs.study.inputs import INPUTS
from cifar_moe.runs.study.lock import hold_run_folder, record_holder
from cifar_moe.runs.study.plan import ERROR, RESULT, STDERR, STDOUT, Run, child_command, inputs_of
from cifar_moe.runs.study.spec import Study


class Stopped(Exception):
    """The study process got SIGTERM; its running children were asked to stop as well."""


_running: set[subprocess.Popen] = set()
_guard = threading.Lock()
_stopping = threading.Event()
_cancel_jobs = threading.Event()
"""Set on SIGTERM and on Ctrl-C: a submitit job gets neither signal from the terminal."""


def start_of_study() -> None:
    """Forget an earlier study's stop (tests run several studies in one process)."""
    _stopping.clear()
    _cancel_jobs.clear()


def cancel_jobs() -> None:
    """Start no more jobs and cancel the running ones (each saves a checkpoint and exits)."""
    _cancel_jobs.set()


def jobs_cancelled() -> bool:
    return _cancel_jobs.is_set()


def stop_children(sig: int = signal.SIGTERM) -> None:
    """Start no more runs and pass ``sig`` to the running ones: each saves its interrupted
    checkpoint and exits (143); its folder, without ``result.json``, is run again on resume."""
    with _guard:
        _stopping.set()
        _cancel_jobs.set()
        for proc in _running:
            with contextlib.suppress(ProcessLookupError):  # it ended on its own just now
                proc.send_signal(sig)


def one_line_error(stderr: str, returncode: int) -> str:
    """The last ``error: ...`` line, else the signal that killed the run (its last output
    line is then whatever it was printing), else the last non-empty line, else the status."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if errors:
        return errors[-1][len("error:"):].strip()
    if returncode < 0:
        return f"killed by signal {-returncode}"
    if lines:
        return lines[-1][:400]
    return f"exit code {returncode} without a message"


def threads_per_run(jobs: int) -> int | None:
    """Torch threads per child when runs share the cores; None (torch's default) for one."""
    return max(1, usable_cores() // jobs) if jobs > 1 else None


def usable_cores() -> int:
    """The cores this process may run on (``taskset``, a container's cpuset), not the host's."""
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def execute(study: Study, run: Run, threads: int | None,
            on_wait: Callable[[], None] | None = None) -> dict | None:
    """Run one cell from a clean folder; None when it succeeded, else its error record
    (``interrupted``: stopped by the study's SIGTERM, and left to be run again on resume)."""
    with hold_run_folder(run.lock_path, run.folder, on_wait=on_wait) as lock:
        if run.folder.exists():
            shutil.rmtree(run.folder)
        run.folder.mkdir(parents=True)
        write_json_atomic(run.folder / INPUTS, inputs_of(study, run))
        cmd = child_command(study, run, threads)
        code = _run_child(run, cmd, threads, lock)
    return outcome(run, code, cmd, _stopping.is_set())


def outcome(run: Run, code: int | None, cmd: list[str], stopped: bool,
            launch_error: str | None = None) -> dict | None:
    """None when the run succeeded; else its error record, also written to ``error.json``
    unless the study stopped it (``interrupted``: run again on resume)."""
    if code == 0 and (run.folder / RESULT).is_file():
        return None
    if stopped:  # no error.json: the run did not fail, it was stopped
        return {"error": "interrupted", "returncode": code, "interrupted": True}
    stderr = run.folder / STDERR
    message = launch_error or one_line_error(
        stderr.read_text(errors="replace") if stderr.is_file() else "", code)
    record = {"error": message, "returncode": code, "argv": cmd}
    write_json_atomic(run.folder / ERROR, record)
    return record


def _run_child(run: Run, cmd: list[str], threads: int | None, lock) -> int | None:
    """The child's exit status; None when the study was stopped before it started."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
    with open(run.folder / STDOUT, "w") as out, open(run.folder / STDERR, "w") as err:
        with _guard:
            if _stopping.is_set():
                return None
            # The child inherits the folder's lock: it holds the folder as long as it lives,
            # even after this process is killed (POSIX; Windows has no flock here anyway).
            inherit = (lock.fileno(),) if os.name == "posix" else ()
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, pass_fds=inherit)
            _running.add(proc)
        record_holder(lock, proc.pid)
        try:
            return proc.wait()
        finally:
            with _guard:
                _running.discard(proc)
