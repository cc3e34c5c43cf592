"""What a sweep checks before any trial starts, so a mistake costs one line, not N trials."""

import contextlib
import errno
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna

from cifar_moe.core.errors import UserError
from cifar_moe.runs.sweep.spec import Sweep

try:
    import fcntl
except ImportError:  # Windows: no flock, so no lock
    fcntl = None

LOCK = ".sweep.lock"


def check_arguments(sweep: Sweep, argument_problem: Callable[[list[str]], str | None]) -> None:
    """Parse a trial's arguments at both ends of every range (and every choice) with the
    CLI's own check, passed in by the command: a mistyped key in ``space``, ``fixed`` or
    ``--arg``, or a value the CLI refuses, stops the sweep here."""
    ends = {p.key: p.ends() for p in sweep.space}
    for i in range(max(len(values) for values in ends.values())):
        params = {key: values[i % len(values)] for key, values in ends.items()}
        problem = argument_problem(["fit", *sweep.fit_args(params)])
        if problem:
            raise UserError(f"{sweep.path.name}: a trial would be refused: {problem}; no "
                            "trial was started")


def check_out_folder(sweep: Sweep, study: optuna.Study) -> None:
    """Refuse trial folders of another study: a fresh study would reuse their numbers."""
    if study.get_trials(deepcopy=False) or not any(sweep.out.glob("trial-*")):
        return
    raise UserError(f"out {sweep.out} holds trial folders, but study {sweep.name} in the "
                    "storage has no trials; give another --out, or the --storage those "
                    "trials were made with")


@contextlib.contextmanager
def hold_out_folder(out: Path) -> Iterator[None]:
    """One sweep process per out folder with a journal storage: a second one would take the
    first's running trials for those of a process that died."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = open(out / LOCK, "a")  # noqa: SIM115 - held until the block ends
    except OSError as err:
        raise UserError(f"out {out} cannot be written ({err.strerror}); give a writable "
                        "--out") from None
    with handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UserError(f"another sweep process is running in {out}; wait for "
                                    "it, give another --out, or share a database --storage "
                                    "to run several") from None
                raise
        yield
