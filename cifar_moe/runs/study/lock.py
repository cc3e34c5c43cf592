"""One study process per results folder, and one process per run folder: a second one
would wipe the first's running runs (a run folder without ``result.json`` counts as
half-finished and starts clean)."""

import errno
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from cifar_moe.core.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no flock, so no lock (the README's platforms have it)
    fcntl = None

LOCK = ".study.lock"
"""In ``<out>``: held (``flock``) by the study process running there; released at its exit."""
HELD = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
"""What ``flock`` says when another process holds the lock (anything else is a problem)."""


def hold_out_folder(out: Path) -> IO:
    """Lock ``out`` for this process, or stop with one line; close the handle to release."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = open(out / LOCK, "a")  # noqa: SIM115 - the caller closes it: the lock's life
    except OSError as err:
        raise UserError(f"out {out} cannot be written ({err.strerror}); give a writable "
                        "folder (the YAML's out or --out)") from None
    if fcntl is None:
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        handle.close()
        if err.errno in HELD:
            raise UserError(f"another study process is running in {out}; wait for it to "
                            "end, or give another --out") from None
        raise UserError(f"out {out} cannot be locked ({err.strerror}); give an --out on a "
                        "local disk") from None
    return handle


RUN_WAIT_S = 30.0
"""How long a study waits for a run folder that a run of an earlier, killed study process
still holds: that run's child notices its parent's death within about a second and stops."""


def hold_run_folder(lock_path: Path, folder: Path, wait_s: float | None = None,
                    on_wait: Callable[[], None] | None = None) -> IO:
    """Lock one run's folder (through ``lock_path`` beside it) before it is wiped and run.

    The handle goes to the run's child (``pass_fds``), so the lock lasts as long as the
    child does, even when the study process is killed (kill -9) and a re-run starts. A held
    lock is waited for up to ``wait_s`` (default ``RUN_WAIT_S``; ``on_wait`` is called once),
    then refused in one line naming the process that holds it."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+")  # noqa: SIM115 - the caller closes it: the lock's life
    if fcntl is None:
        return handle
    deadline, told = time.monotonic() + (RUN_WAIT_S if wait_s is None else wait_s), False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except OSError as err:
            if err.errno not in HELD or time.monotonic() >= deadline:
                handle.close()
                raise UserError(_held_message(lock_path, folder, err)) from None
        if not told and on_wait is not None:
            on_wait()
            told = True
        time.sleep(0.2)


def _held_message(lock_path: Path, folder: Path, err: OSError) -> str:
    if err.errno not in HELD:
        return (f"run folder {folder} cannot be locked ({err.strerror}); give an --out on a "
                "local disk")
    pid = lock_path.read_text().strip() if lock_path.is_file() else ""
    holder = f"process {pid}" if pid.isdigit() else "another process"
    stop = f"kill {pid}" if pid.isdigit() else "stop it"
    return (f"run folder {folder} is still in use by {holder} (a run of an earlier study "
            f"process that was killed?); wait for it to end or {stop}, then run the study again")


def record_holder(handle: IO, pid: int) -> None:
    """Write the pid of the child that holds the lock, for the refusal above to name."""
    handle.seek(0)
    handle.truncate()
    handle.write(str(pid))
    handle.flush()
