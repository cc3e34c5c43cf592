"""What a study run was made from, so that a resumed study never keeps a stale run.

A finished run is never redone. If a recipe file changed since (a new learning rate in
``configs/slice.yaml``, a new width in the preset it names), keeping that run would put
numbers of two recipes in one row. So each run folder records its inputs (``inputs.json``):
the hash of every config file's parsed content (comments and layout do not count), with the
YAML files those name (``model.net: ../cifar_moe/models/presets/slice.yaml``), and the run's
overrides. Paths are not compared, only content, so a study still resumes from another
clone or folder: for ``data_dir`` that content is a hash of its batch files, so another
dataset there (the full CIFAR-10 in place of the slice) is a change. Code is not covered: a
changed default in the package is not seen here.
"""

import functools
import hashlib
import json
from pathlib import Path

import yaml

from cifar_moe.core.constants import BATCH_FOLDER, META_FILE, TEST_BATCH, TRAIN_BATCHES

INPUTS = "inputs.json"
"""In a run's folder: what the run was made from (written before it starts)."""


def _shown(path: Path) -> str:
    """A path as a reader knows it: relative to the current folder when it is under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


_NOT_YAML = object()


def _parsed(path: Path) -> object:
    """The YAML's content; ``_NOT_YAML`` when it cannot be read as YAML (the run itself then
    says so, in one line)."""
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return _NOT_YAML


def _named_files(config: Path, tree: object) -> list[Path]:
    """YAML files that a config names by a string value (resolved against its folder)."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and node.endswith((".yaml", ".yml")):
            candidate = config.parent / node
            if candidate.is_file():
                found.append(candidate)
    return found


def config_hashes(configs: list[Path]) -> list[list[str]]:
    """``[shown path, sha256]`` for each config and, after it, each YAML file it names. The
    hash is of the parsed content, so comments and layout do not count as changes; a file
    that is not YAML is hashed by its bytes."""
    pairs, pending, seen = [], list(configs), set()
    while pending:
        path = pending.pop(0)
        if path.resolve() in seen or not path.is_file():
            continue
        seen.add(path.resolve())
        tree = _parsed(path)
        content = (path.read_bytes().hex() if tree is _NOT_YAML
                   else json.dumps(tree, sort_keys=True, default=str))
        pairs.append([_shown(path), hashlib.sha256(content.encode()).hexdigest()])
        pending[:0] = _named_files(path, tree)
    return pairs


def data_files_hash(data_dir: str) -> str | None:
    """sha256 over the names and bytes of ``data_dir/cifar-10-batches-py``'s files; None
    where that folder does not exist yet (a tarball not yet extracted)."""
    folder = Path(data_dir) / BATCH_FOLDER
    if not folder.is_dir():
        return None
    # Only the files a run reads: a stray .DS_Store is not another dataset.
    names = (META_FILE, TEST_BATCH, *TRAIN_BATCHES)
    files = sorted(path for path in (folder / name for name in names) if path.is_file())
    stats = [(str(p), p.stat()) for p in files]
    # Keyed by size and mtime too: the batch files are hashed once per process, not per run.
    return _hash_files(tuple((name, st.st_size, st.st_mtime_ns) for name, st in stats))


@functools.cache
def _hash_files(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in files:
        digest.update(Path(name).name.encode() + b"\0")
        with open(name, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def run_inputs(configs: list[Path], data: dict, args: list[str], seed: int) -> dict:
    """A run's inputs: config contents, the study's data settings (``data_dir`` by the hash
    of its files), the study's and the row's overrides, and the seed."""
    data_dir = data.get("data_dir")
    return {"configs": config_hashes(configs),
            "data": {key: value for key, value in data.items() if key != "data_dir"},
            "data_files": data_files_hash(str(data_dir)) if data_dir else None,
            "args": list(args), "seed": seed}


def what_changed(recorded: dict, now: dict) -> str | None:
    """None when ``now`` matches the recorded inputs, else what differs, in a few words."""
    old_files, new_files = recorded.get("configs", []), now["configs"]
    for (_, old_hash), (name, new_hash) in zip(old_files, new_files, strict=False):
        if old_hash != new_hash:
            return f"{name} changed"
    if len(old_files) != len(new_files):
        return "its list of config files changed"
    for key in ("data", "args", "seed"):
        if recorded.get(key) != now[key]:
            return f"its {'data settings' if key == 'data' else key} changed"
    # Compared only where both are known: runs recorded before it, or before the tarball
    # was extracted, have none.
    if None not in (recorded.get("data_files"), now["data_files"]) and (
            recorded["data_files"] != now["data_files"]):
        return "the files in its data_dir changed"
    return None


def recorded_inputs(folder: Path) -> dict | None:
    """The inputs a run folder recorded; None for runs made before they were recorded (or
    an unreadable record: nothing to compare against, as for those)."""
    try:
        recorded = json.loads((folder / INPUTS).read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None
