"""Making ``data_dir/cifar-10-batches-py`` exist: extract a local tarball or download one.

Whatever happens, the batch folder appears only complete: work happens in a temporary
folder inside ``data_dir`` that is renamed into place on success and removed on failure,
so a broken attempt never makes the next run think the data is there.
"""

import shutil
import socket
import tarfile
import tempfile
from pathlib import Path

from cifar_moe.constants import BATCH_FOLDER, TARBALL
from cifar_moe.errors import UserError

CIFAR10_URL = f"https://www.cs.toronto.edu/~kriz/{TARBALL}"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
NETWORK_TIMEOUT_S = 10.0


def ensure_cifar10(data_dir: str | Path, download: bool = True) -> Path:
    """The batch folder below ``data_dir``, extracting or downloading it when missing."""
    data_dir = Path(data_dir)
    folder = data_dir / BATCH_FOLDER
    if folder.is_dir():
        return folder
    where = f"put {TARBALL} or the extracted {BATCH_FOLDER}/ into {data_dir.resolve()}"
    tarball = data_dir / TARBALL
    if not tarball.is_file() and not download:
        raise UserError(f"data.data_dir has no {BATCH_FOLDER}/ and data.download is off; {where}")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"data.data_dir {data_dir} cannot be created ({err.strerror})") from None
    with tempfile.TemporaryDirectory(prefix=".partial-", dir=data_dir) as tmp:
        if tarball.is_file():
            _extract(tarball, Path(tmp), where)
        else:
            _download(Path(tmp), where)
        extracted = Path(tmp) / BATCH_FOLDER
        if not extracted.is_dir():
            raise UserError(f"the archive holds no {BATCH_FOLDER}/; {where}")
        extracted.rename(folder)
    return folder


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
