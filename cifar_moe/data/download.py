"""Where the data is, and making ``data_dir/cifar-10-batches-py`` exist: extract a local
tarball or download one.

One rule for ``data.data_dir``: a relative path resolves against the project root (the
checkout that holds this package; the working directory for an installed wheel), so a run
finds the same folder from the repo root, from ``notebooks/`` or from anywhere else. The
environment variable ``CIFAR_MOE_DATA`` replaces a config's ``data.data_dir`` (the CLI
applies it; a ``--data.data_dir`` on the command line still wins).

Whatever happens, the batch folder appears only complete: work happens in a temporary
folder inside ``data_dir`` that is renamed into place on success and removed on failure,
and a failed attempt removes every folder it created, so a wrong path leaves nothing behind.
"""

import os
import shutil
import socket
import tarfile
import tempfile
from pathlib import Path

from cifar_moe.core.constants import BATCH_FOLDER, META_FILE, TARBALL
from cifar_moe.core.errors import UserError

CIFAR10_URL = f"https://www.cs.toronto.edu/~kriz/{TARBALL}"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
NETWORK_TIMEOUT_S = 10.0
DATA_ENV = "CIFAR_MOE_DATA"
"""Environment variable naming the data folder on this machine (CLI, tests, notebooks)."""
OLD_DATA_ENV = "CIFAR_MOE_SLICE_DIR"
"""Its name before 0.3, still read by the tests and notebooks when the new one is unset."""


def project_root() -> Path:
    """The checkout holding this package (where ``pyproject.toml`` is), else the working
    directory (an installed wheel has no project of its own)."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "cifar_moe").is_dir():
        return checkout
    return Path.cwd()


def resolve_data_dir(data_dir: str | os.PathLike) -> Path:
    """``data_dir`` made absolute by the one rule (module docstring)."""
    path = Path(data_dir).expanduser()
    return path if path.is_absolute() else project_root() / path


def env_data_dir() -> str | None:
    """``$CIFAR_MOE_DATA``, else the old ``$CIFAR_MOE_SLICE_DIR``; None when neither is set."""
    return os.environ.get(DATA_ENV) or os.environ.get(OLD_DATA_ENV) or None


def batch_folder(data_dir: str | os.PathLike) -> Path:
    """The batch folder of ``data_dir``: ``data_dir/cifar-10-batches-py``, or ``data_dir``
    itself when it is that folder (it holds ``batches.meta``). It may not exist yet."""
    folder = resolve_data_dir(data_dir)
    if (folder / META_FILE).is_file() and not (folder / BATCH_FOLDER).is_dir():
        return folder
    return folder / BATCH_FOLDER


def where_to_put(data_dir: str | os.PathLike) -> str:
    return (f"put {TARBALL} or the extracted {BATCH_FOLDER}/ into "
            f"{resolve_data_dir(data_dir)}, or point data.data_dir (or ${DATA_ENV}) at a "
            f"folder holding {BATCH_FOLDER}/")


def check_not_one_level_up(data_dir: str | os.PathLike) -> None:
    """A ``data_dir`` one level above the data folder: one line naming the folder to use."""
    folder = resolve_data_dir(data_dir)
    if not folder.is_dir() or (folder / BATCH_FOLDER).exists():
        return
    below = sorted(p for p in folder.iterdir() if (p / BATCH_FOLDER / META_FILE).is_file())
    if below:
        raise UserError(f"data.data_dir {folder} has no {BATCH_FOLDER}/, but {below[0]} has; "
                        f"use --data.data_dir {below[0]} (or set ${DATA_ENV} to it)")


def ensure_cifar10(data_dir: str | Path, download: bool = True) -> Path:
    """The batch folder of ``data_dir``, extracting or downloading it when missing."""
    folder = batch_folder(data_dir)
    if folder.is_dir():
        return folder
    check_not_one_level_up(data_dir)
    root = resolve_data_dir(data_dir)
    tarball = root / TARBALL
    if not tarball.is_file() and not download:
        raise UserError(f"data.data_dir has no {BATCH_FOLDER}/ and data.download is off; "
                        f"{where_to_put(data_dir)}")
    created = _missing_folders(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".partial-", dir=root) as tmp:
            if tarball.is_file():
                _extract(tarball, Path(tmp), where_to_put(data_dir))
            else:
                _download(Path(tmp), where_to_put(data_dir))
            extracted = Path(tmp) / BATCH_FOLDER
            if not extracted.is_dir():
                raise UserError(f"the archive holds no {BATCH_FOLDER}/; {where_to_put(data_dir)}")
            extracted.rename(root / BATCH_FOLDER)
    except OSError as err:
        _remove(created)
        raise UserError(f"data.data_dir {root} cannot be created or written "
                        f"({err.strerror}); {where_to_put(data_dir)}") from None
    except BaseException:
        _remove(created)  # a wrong path leaves no empty folder behind
        raise
    return root / BATCH_FOLDER


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _remove(created: list[Path]) -> None:
    for folder in created:
        try:
            folder.rmdir()  # only empty folders: anything a user put there stays
        except OSError:
            return


def _extract(tarball: Path, into: Path, where: str) -> None:
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            # The "data" filter refuses absolute paths and links out of the folder.
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(into, **safe)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise UserError(f"{tarball} is not a readable .tar.gz ({err}); {where}") from None


def _download(into: Path, where: str) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(NETWORK_TIMEOUT_S)  # offline must fail in seconds, not minutes
    try:
        download_and_extract_archive(CIFAR10_URL, str(into), filename=TARBALL, md5=CIFAR10_MD5)
    except Exception as err:  # network, disk and checksum failures all end the same way
        reason = f"{type(err).__name__}: {err}".splitlines()[0][:160]
        raise UserError(f"could not download {CIFAR10_URL} ({reason}); {where}") from None
    finally:
        socket.setdefaulttimeout(previous)
    (into / TARBALL).unlink(missing_ok=True)
    shutil.rmtree(into / "__MACOSX", ignore_errors=True)
