"""One study process per results folder: a second one would wipe the first's running runs
(a run folder without ``result.json`` counts as half-finished and starts clean)."""

import fcntl
from pathlib import Path
from typing import IO

from cifar_moe.errors import UserError

LOCK = ".study.lock"
"""In ``<out>``: held (``flock``) by the study process running there; released at its exit."""


def hold_out_folder(out: Path) -> IO:
    """Lock ``out`` for this process, or stop with one line; close the handle to release."""
    out.mkdir(parents=True, exist_ok=True)
    handle = open(out / LOCK, "a")  # noqa: SIM115 - held past this function, closed by the caller
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise UserError(f"another study process is running in {out}; wait for it to end, "
                        "or give another --out") from None
    return handle
