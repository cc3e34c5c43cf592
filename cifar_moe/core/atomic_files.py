"""Files that are either whole or absent: a temporary file beside the target, fsynced, then
one ``os.replace`` (atomic within a filesystem).

Used for checkpoints (``training.checkpointing.atomic_io``), a study's records and tables,
and a run's ``launch.yaml``. A kill or a full disk mid-write leaves the old file intact and
at most a ``.<target>.<host>.<pid>.<random>.partial`` beside it, which never matches the
names readers look for. The random part keeps two writers of one target apart.
"""

import json
import os
import socket
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

PARTIAL_SUFFIX = ".partial"
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: the only way to read the umask is to set it


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it to ``path``; a
    crash at any point leaves the old ``path`` intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.{host_name()}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=PARTIAL_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            with suppress(OSError):  # some filesystems (vfat, SMB) refuse chmod
                os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide it from a group
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)  # the rename itself survives a power cut


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write` of UTF-8 text."""
    atomic_write(path, lambda fh: fh.write(text.encode()))


def host_name() -> str:
    """This machine's name as it appears in partial-file names (no dots)."""
    return socket.gethostname().replace(".", "-") or "host"


def _fsync_folder(folder: Path) -> None:
    with suppress(OSError):  # not every filesystem lets a folder be opened or synced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON so that ``path`` is whole or absent (temporary file, fsync, rename)."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
