"""Reading a settings YAML (a study, a sweep) with one clear line for each way it can fail."""

from pathlib import Path

import yaml

from cifar_moe.core.errors import UserError


def read_yaml_mapping(path: Path, kind: str, keys: str) -> dict:
    """The mapping in ``path``; a :class:`UserError` naming the ``kind`` of file (``study``,
    ``sweep``) when it is missing, unreadable, not YAML or not a mapping (``keys`` says
    which keys a mapping of this kind has)."""
    if not path.is_file():
        raise UserError(f"{kind} {path}: file not found; pass the path of a {kind} YAML")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        gist = " ".join(str(err).split())[:200]
        raise UserError(f"{kind} {path}: not valid YAML ({gist}); fix the syntax") from None
    except OSError as err:
        raise UserError(f"{kind} {path}: cannot be read ({err.strerror}); check it") from None
    if not isinstance(raw, dict):
        raise UserError(f"{kind} {path}: expected a mapping with keys {keys}")
    return raw
