"""The ``--arg`` list an out folder's runs were made with, so that runs made with other args
are never mixed into one table, and ``--render`` alone can list them."""

import json
from pathlib import Path

from cifar_moe.core.atomic_files import write_json_atomic
from cifar_moe.core.errors import UserError
from cifar_moe.runs.study.plan import ERROR

EXTRA_ARGS = "extra_args.json"
"""In ``<out>``: the ``--arg`` list the study's runs got, so ``--render`` alone can list it."""


def settle_extra_args(out: Path, given: list[str], render: bool) -> list[str]:
    """The ``--arg`` list to use for ``out``: the given one, or for ``--render`` without
    ``--arg`` the recorded one. Runs made with other args are never mixed into a folder."""
    path = out / EXTRA_ARGS
    recorded = _recorded_extra_args(path)
    if render and not given:
        return recorded or []
    # Any run that did not fail (finished, or maybe running in another process) holds the
    # folder to its args; a mistyped --arg whose runs all failed is corrected by running
    # again with the right one.
    if recorded is not None and recorded != given and _runs_not_failed(out):
        shown = " ".join(recorded) or "no --arg"
        raise UserError(f"the runs in {out} were made with {shown}; give the same --arg, "
                        "or another --out for a study with different args")
    if not render:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"extra_args": given})
    return given


def _runs_not_failed(out: Path) -> bool:
    # seed<k>/ and fold<f>-seed<k>/ folders; the hidden .<run>.lock files beside them are not.
    return any(f.is_dir() and not (f / ERROR).is_file() for f in out.glob("runs/*/*"))


def _recorded_extra_args(path: Path) -> list[str] | None:
    """The recorded ``--arg`` list; None where there is none yet."""
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text())["extra_args"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    if not isinstance(recorded, list):
        raise UserError(f"{path} is unreadable; delete it, then give the --arg list the "
                        "study's runs were made with")
    return recorded
