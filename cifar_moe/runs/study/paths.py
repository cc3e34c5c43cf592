"""Paths in a study's outputs, written relative to the project so that committed results
mean the same on a reader's machine.

The project root is the folder holding ``pyproject.toml`` and ``configs/``. A path under it
is written relative to it (``configs/slice.yaml``); a path beside it, under its parent, with
``../`` (``../shared/data/cifar-10-mini``, as the configs write ``data_dir``). Any other path
(a temporary folder) stays absolute: no relative form of it would help a reader, apart
from the interpreter that starts a recorded ``argv``, named by its file name (``python3``):
where it lived is a fact of that machine alone.
"""

import re
from pathlib import Path

_NOT_PATH_CHAR = r"(?<![\w./-])"
"""Before a rewritten path: the start, a space, ``=``, a quote, a backtick: not a longer path."""


def project_root() -> Path | None:
    """The checkout this package runs from, else the first folder up from the current one
    that looks like the project; None when neither does (an installed package elsewhere)."""
    here = Path(__file__).resolve().parents[3]
    for folder in (here, Path.cwd().resolve(), *Path.cwd().resolve().parents):
        if (folder / "pyproject.toml").is_file() and (folder / "configs").is_dir():
            return folder
    return None


def _rules(root: Path) -> list[tuple[re.Pattern, str]]:
    text = re.escape(str(root))
    rules = [(re.compile(_NOT_PATH_CHAR + text + "/"), ""),
             (re.compile(_NOT_PATH_CHAR + text + r"(?![\w./-])"), ".")]
    parent = root.parent
    if parent != Path(parent.anchor):  # never "../" for the filesystem's own root
        rules.append((re.compile(_NOT_PATH_CHAR + re.escape(str(parent)) + "/"), "../"))
    return rules


def portable(value, root: Path | None = None):
    """``value`` (JSON-like: dicts, lists, strings) with every absolute path under the
    project root, or beside it, rewritten relative to it; a path may sit inside a string
    (``--config=/abs/x.yaml``, ``data_dir=/abs/data``)."""
    root = root or project_root()
    if root is None:
        return value
    rules = _rules(root)

    def rewrite(node):
        if isinstance(node, str):
            for pattern, replacement in rules:
                node = pattern.sub(replacement, node)
            return node
        if isinstance(node, dict):
            out = {key: rewrite(item) for key, item in node.items()}
            argv = out.get("argv")
            if isinstance(argv, list) and argv and isinstance(argv[0], str) and (
                    argv[0].startswith("/")):
                out["argv"] = [Path(argv[0]).name, *argv[1:]]
            return out
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    return rewrite(value)
