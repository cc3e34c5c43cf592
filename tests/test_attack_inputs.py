"""Issue 36's hostile round, findings 10, 12, 13 and 17 and the general rules on data: each
bad setting, checkpoint use or file fed as a user would, ending as one ``error:`` line or as
correct behaviour."""

import pickle
import shutil

import pytest
from tiny_run import tiny_args, tiny_fit

from cifar_moe.cli.main import cli_main
from cifar_moe.core.constants import BATCH_FOLDER


def _error_line(capsys, info) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if "args parameter is intended" not in line]
    assert info.value.code == 2 and "Traceback" not in "\n".join(err)
    assert err and err[-1].startswith("error: "), err
    return err[-1]


def test_negative_onecycle_max_lr_is_refused_before_training(synthetic_data_dir, tmp_path,
                                                              capsys):
    """Finding 12: OneCycle overrides the optimizer's lr, so its max_lr is checked too."""
    with pytest.raises(SystemExit) as info:
        cli_main(["fit", *tiny_args(tmp_path, synthetic_data_dir),
                  "--model.scheduler.init_args.max_lr=-0.2"])
    assert "max_lr" in _error_line(capsys, info)
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.slow
@pytest.mark.parametrize("change", ["--model.optimizer.init_args.lr=0.5", "--data.split_seed=7"])
def test_resume_that_changes_a_setting_is_refused_and_keeps_the_record(
        change, synthetic_data_dir, tmp_path, capsys):
    """Findings 10 and 13: the refusal names the difference; config.yaml and launch.yaml of
    the first part are byte-for-byte unchanged and no resume record is written."""
    _, run, _ = tiny_fit(tmp_path, synthetic_data_dir)
    record = {p: p.read_bytes() for p in run.glob("*.yaml")}
    with pytest.raises(SystemExit) as info:
        cli_main(["fit", *tiny_args(tmp_path, synthetic_data_dir, epochs=2), change,
                  f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    line = _error_line(capsys, info)
    assert change.split("=")[0].lstrip("-").rsplit(".", 1)[-1] in line, line
    assert {p: p.read_bytes() for p in run.glob("*.yaml")} == record


def test_float_labels_in_a_batch_file_are_one_line(synthetic_data_dir, tmp_path, capsys):
    """Finding 17: float labels are no longer truncated to integers."""
    shutil.copytree(synthetic_data_dir, tmp_path / "data")
    path = tmp_path / "data" / BATCH_FOLDER / "data_batch_1"
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    key = b"labels" if b"labels" in batch else "labels"
    batch[key] = [label + 0.5 for label in batch[key]]
    path.write_bytes(pickle.dumps(batch))
    with pytest.raises(SystemExit) as info:
        cli_main(["fit", *tiny_args(tmp_path, tmp_path / "data")])
    line = _error_line(capsys, info)
    assert "labels" in line and str(path) in line, line


@pytest.mark.parametrize("where", ["batch folder", "parent"])
def test_data_dir_at_the_batch_folder_or_its_parent_works_or_says_what_to_change(
        where, synthetic_data_dir, tmp_path, capsys):
    """General rule 2: the batch folder itself works; one level up names the folder to use."""
    shutil.copytree(synthetic_data_dir, tmp_path / "up" / "cifar")
    data_dir = (tmp_path / "up" / "cifar" / BATCH_FOLDER if where == "batch folder"
                else tmp_path / "up")
    args = ["fit", *tiny_args(tmp_path / "runs", data_dir)]
    if where == "batch folder":
        cli_main(args)
        assert list((tmp_path / "runs").rglob("last.ckpt"))
        return
    with pytest.raises(SystemExit) as info:
        cli_main(args)
    assert str(tmp_path / "up" / "cifar") in _error_line(capsys, info)
    assert sorted(p.name for p in (tmp_path / "up").iterdir()) == ["cifar"]  # nothing made


def test_every_undecodable_image_is_skipped_and_named(tmp_path, capsys):
    """General rule 1: truncated, empty, text-as-PNG and a folder named .png never end it."""
    from PIL import Image

    from cifar_moe.data.image_folder import read_image_folder

    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "good.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "good.png").read_bytes()[:40])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "dir.png").mkdir()
    found = read_image_folder(tmp_path)
    assert found.names == ["good.png"] and tuple(found.images.shape) == (1, 3, 32, 32)
    skipped = " ".join(found.unreadable)
    assert all(n in skipped for n in ("cut.png", "empty.jpg", "text.png")), skipped
