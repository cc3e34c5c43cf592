"""Reading one setting back out of a command line that was written for the CLI (a study's
``args``, a run's recorded ``inputs.json``), in either form jsonargparse accepts."""

from collections.abc import Sequence
from itertools import pairwise
from os import PathLike


def arg_values(args: Sequence[str | PathLike], name: str) -> list[str]:
    """Every value given to ``--<name>`` in ``args``, in order, whether written
    ``--name=value`` or ``--name value``; the last one is the one a parser keeps."""
    flag = f"--{name}"
    values = []
    for arg, following in pairwise([*map(str, args), None]):  # argv may hold Paths
        if arg.startswith(f"{flag}="):
            values.append(arg.split("=", 1)[1])
        elif arg == flag and following is not None:
            values.append(following)
    return values


def sets(args: Sequence[str | PathLike], name: str) -> bool:
    """Whether ``args`` give ``--<name>`` in any form, a value or not (a refusal must catch
    the flag even where its value is missing)."""
    flag = f"--{name}"
    return any(arg == flag or arg.startswith(f"{flag}=") for arg in map(str, args))
