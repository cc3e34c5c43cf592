"""Data tier: getting the folder in place (download, local tarball) fails cleanly or not at all."""

import socket
import tarfile
import time
import urllib.error
from pathlib import Path

import pytest
import torchvision.datasets.utils as tv_utils

from cifar_moe.core.constants import BATCH_FOLDER
from cifar_moe.core.errors import UserError
from cifar_moe.data import CIFAR10DataModule, write_synthetic_cifar
from cifar_moe.data import download as download_mod


def _offline(seen: dict, error: Exception):
    def fake(url, download_root, **kwargs):
        seen.update(url=url, md5=kwargs.get("md5"), timeout=socket.getdefaulttimeout())
        (Path(download_root) / BATCH_FOLDER).mkdir()  # a half-done attempt that must vanish
        raise error
    return fake


@pytest.mark.parametrize("error", [
    urllib.error.URLError(OSError(101, "Network is unreachable")),
    OSError(28, "No space left on device"),
    RuntimeError("File not found or corrupted."),  # torchvision's md5 mismatch
])
def test_failed_download_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, error):
    seen: dict = {}
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", _offline(seen, error))
    before, data_dir = socket.getdefaulttimeout(), tmp_path / "data"
    with pytest.raises(UserError) as info:
        CIFAR10DataModule(data_dir=str(data_dir)).prepare_data()
    message = str(info.value)
    assert seen["url"] == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert seen["md5"] == "c58f30108f718f92721af3b95e74349a"
    assert 0 < seen["timeout"] <= 10 and socket.getdefaulttimeout() == before
    assert "\n" not in message and seen["url"] in message
    assert f"cifar-10-python.tar.gz or the extracted {BATCH_FOLDER}/" in message
    assert str(data_dir.resolve()) in message
    assert not data_dir.exists()  # a missing data_dir is never created, not even empty


def test_real_download_attempt_cannot_hang(tmp_path, monkeypatch):
    # A local server that accepts and never answers: a stalled network, on any machine.
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setattr(download_mod, "NETWORK_TIMEOUT_S", 0.5)
    with socket.create_server(("127.0.0.1", 0)) as server:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/cifar-10-python.tar.gz"
        monkeypatch.setattr(download_mod, "CIFAR10_URL", url)
        start = time.monotonic()
        with pytest.raises(UserError, match=r"could not download"):
            CIFAR10DataModule(data_dir=str(tmp_path)).prepare_data()
    assert time.monotonic() - start < 5
    assert list(tmp_path.iterdir()) == []


def test_download_off_and_missing_names_the_setting(tmp_path):
    with pytest.raises(UserError, match=r"data\.data_dir .* data\.download is off"):
        CIFAR10DataModule(data_dir=str(tmp_path), download=False).prepare_data()


def _tarball(tmp_path, data_dir):
    write_synthetic_cifar(tmp_path / "src", train_per_batch=10, test_size=10)
    data_dir.mkdir()
    with tarfile.open(data_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / BATCH_FOLDER, arcname=BATCH_FOLDER)
    return data_dir / "cifar-10-python.tar.gz"


def test_local_tarball_is_extracted(tmp_path):
    data_dir = tmp_path / "data"
    _tarball(tmp_path, data_dir)
    dm = CIFAR10DataModule(data_dir=str(data_dir), val_size=10, num_workers=0, download=False)
    dm.prepare_data()
    assert not dm.datasets  # prepare_data only extracts; setup reads
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 40
    assert sorted(p.name for p in data_dir.iterdir()) == [BATCH_FOLDER, "cifar-10-python.tar.gz"]


def test_broken_tarball_leaves_nothing(tmp_path):
    tarball = _tarball(tmp_path, tmp_path / "data")
    tarball.write_bytes(tarball.read_bytes()[:300])
    with pytest.raises(UserError, match=r"cifar-10-python\.tar\.gz is not a readable"):
        CIFAR10DataModule(data_dir=str(tmp_path / "data")).prepare_data()
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["cifar-10-python.tar.gz"]
