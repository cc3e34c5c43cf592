"""Checkpoint files that are either whole or absent, on any filesystem layout.

Lightning's own save writes a temporary file where fsspec puts it (often ``$TMPDIR``) and
then moves it; across filesystems that move copies into the existing file, so a kill or a
full disk mid-copy destroys the previous checkpoint. Here the temporary file lives in the
destination folder, is fsynced, and replaces the target with one ``os.replace``
(``cifar_moe.atomic_files``). Its name (``.<target>.<host>.<pid>.<random>.partial``) never
matches ``best-*.ckpt`` or ``last.ckpt``.
"""

import os
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from cifar_moe.core.atomic_files import PARTIAL_SUFFIX, atomic_write, host_name

STALE_AFTER_S = 6 * 3600
"""A partial file this old is a leftover even when its writer's host is another machine."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are atomic: temp file beside the target, then rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):
            # Remote stores (s3://, gs://) have their own transactional uploads.
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        try:
            atomic_torch_save(checkpoint, Path(path))
        except OSError as err:
            if err.filename is not None:
                raise
            # fsync/write of a full disk name no file; the CLI's one line names this one.
            raise OSError(err.errno, err.strerror, str(path)) from err


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)`` so that a crash at any point leaves the old ``path`` intact."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def remove_stale_partials(folder: str | Path) -> list[Path]:
    """Delete partial files left by killed writers in ``folder``; returns what was removed.

    A partial file is stale when its writer (host + pid in its name) is no longer running on
    this host, or when it is older than ``STALE_AFTER_S`` (writer on another host).
    """
    removed = []
    for path in Path(folder).glob(f".*{PARTIAL_SUFFIX}"):
        if _writer_alive(path):
            continue
        with suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def _writer_alive(path: Path) -> bool:
    # name: .<target>.<host>.<pid>.<random>.partial; the target may itself hold dots.
    parts = path.name[: -len(PARTIAL_SUFFIX)].split(".")
    host, pid = (parts[-3], parts[-2]) if len(parts) >= 4 else ("", "")
    if host != host_name():
        try:
            return time.time() - path.stat().st_mtime < STALE_AFTER_S
        except OSError:
            return False
    if not pid.isdigit() or int(pid) == os.getpid():
        return False  # this process writes nothing yet: the file is an earlier run's
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True
