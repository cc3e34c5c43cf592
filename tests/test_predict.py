"""`predict` through the CLI: predictions.csv in the run folder, for a folder or the test batch."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_run import CONFIGS, tiny_fit

from cifar_moe.cli.main import cli_main
from cifar_moe.data.cifar_files import read_split
from cifar_moe.training.module import LitClassifier

QUICKSTART = ["--config", str(CONFIGS / "quickstart.yaml")]


@pytest.fixture(scope="module")
def run(synthetic_data_dir, tmp_path_factory):
    """(run folder, best checkpoint) of a few-batch fit."""
    _, folder, ckpt = tiny_fit(tmp_path_factory.mktemp("predict_run"), synthetic_data_dir)
    return folder, ckpt


@pytest.fixture
def image_dir(tmp_path):
    """Two readable sizes, a greyscale PNG, a broken file and a file that is no image."""
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a_small.png": (32, 32), "b_large.JPG": (90, 60)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / name)
    Image.new("L", (40, 40), color=128).save(tmp_path / "c_grey.png")
    (tmp_path / "d_broken.png").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


def _read_csv(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_predict_folder_writes_csv_into_the_run(run, image_dir, capfd):
    folder, ckpt = run
    (folder / "predictions.csv").unlink(missing_ok=True)
    cli_main(["predict", "--config", str(folder / "config.yaml"), f"--ckpt_path={ckpt}",
              f"--data.predict_dir={image_dir}"])
    out = capfd.readouterr()
    text = out.out + out.err
    path = folder / "predictions.csv"
    assert str(path) in text
    assert text.count("resized to 32x32") == 1 and "2 of 3 images are not 32x32" in text
    skipped = [line for line in text.splitlines() if "unreadable" in line]
    assert len(skipped) == 1 and "d_broken.png" in skipped[0] and "notes.txt" not in text
    rows = _read_csv(path)
    assert [r["file"] for r in rows] == ["a_small.png", "b_large.JPG", "c_grey.png"]
    model = LitClassifier.load_from_checkpoint(ckpt, map_location="cpu")
    expected = model.classify([Image.open(image_dir / r["file"]) for r in rows])
    for row, name, probs in zip(rows, expected.names, expected.probs, strict=True):
        got = torch.tensor([float(row[f"p_{c}"]) for c in model.class_names])
        torch.testing.assert_close(got, probs, atol=1e-5, rtol=0)
        assert row["predicted"] == name
        assert float(row["probability"]) == pytest.approx(got.max().item(), abs=1e-6)


@pytest.mark.slow
def test_predict_without_dir_predicts_the_test_batch(run, synthetic_data_dir):
    folder, ckpt = run
    before = set(folder.glob("predictions*.csv"))  # other tests predict into this run too
    cli_main(["predict", "--config", str(folder / "config.yaml"), f"--ckpt_path={ckpt}"])
    (written,) = set(folder.glob("predictions*.csv")) - before
    rows = _read_csv(written)
    _, labels = read_split(synthetic_data_dir / "cifar-10-batches-py", train=False)
    model = LitClassifier.load_from_checkpoint(ckpt, map_location="cpu")
    assert [int(r["index"]) for r in rows] == list(range(len(labels)))
    assert [r["label"] for r in rows] == [model.class_names[i] for i in labels.tolist()]
    for row in rows:
        probs = [float(row[f"p_{c}"]) for c in model.class_names]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert row["predicted"] == model.class_names[max(range(10), key=probs.__getitem__)]


def test_predict_dir_that_is_not_a_folder_is_one_error_line(synthetic_data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["predict", *QUICKSTART, f"--data.data_dir={synthetic_data_dir}",
                  f"--trainer.default_root_dir={tmp_path}",
                  f"--data.predict_dir={tmp_path / 'missing'}", "--allow_untrained=true"])
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and err[0].startswith("error: data.predict_dir")
    assert not (tmp_path / "lightning_logs").exists()


def test_predict_dir_without_readable_images_writes_nothing(synthetic_data_dir, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    (images / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    root = tmp_path / "root"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["predict", *QUICKSTART, f"--data.data_dir={synthetic_data_dir}",
                  f"--trainer.default_root_dir={root}", f"--data.predict_dir={images}",
                  "--trainer.enable_progress_bar=false", "--allow_untrained=true"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: data.predict_dir" in err and "broken.jpg" in err
    assert not list(root.rglob("predictions*.csv"))
