"""Names taken exclusively: a new run folder or record file is claimed by creating it with
an operation that fails when it exists, so nothing earlier is ever overwritten, even by a
call running at the same moment."""

import os
from collections.abc import Callable
from pathlib import Path


def claim_run_folder(group_dir: Path, label: str) -> Path:
    """Make ``group_dir/<label>-<n>`` with the first free n, exclusively (``os.mkdir`` fails
    on an existing folder, so concurrent fits get different folders)."""
    group_dir.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name.rsplit("-", 1)[1]) for p in group_dir.glob(f"{label}-*")
             if p.name.rsplit("-", 1)[1].isdigit()]
    n = max(taken, default=0) + 1
    while True:
        try:
            (group_dir / f"{label}-{n}").mkdir()
            return group_dir / f"{label}-{n}"
        except FileExistsError:
            n += 1


def numbered(folder: Path, stem: str, suffix: str, n: int) -> Path:
    """``stem.suffix`` for n = 1, else ``stem-<n>.suffix``."""
    return folder / (f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}")


def claim_numbered(names: Callable[[int], list[Path]], start: int = 1) -> int:
    """The first n from ``start`` whose files ``names(n)`` are all free; the first of them
    is taken by creating it exclusively, so no earlier file is ever replaced, even by a
    call running at the same moment."""
    n = start
    while True:
        first, *others = names(n)
        if not any(path.exists() for path in others):
            try:
                os.close(os.open(first, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                return n
            except FileExistsError:
                pass
        n += 1
