"""One study process per results folder: a second one would wipe the first's running runs
(a run folder without ``result.json`` counts as half-finished and starts clean)."""

import errno
from pathlib import Path
from typing import IO

from cifar_moe.errors import UserError

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
