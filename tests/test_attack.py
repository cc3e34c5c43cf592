"""The hostile round of issue 36, findings 14 and 17 and predict: each bad input fed through
the CLI in-process ends as one ``error: ...`` line (exit 2) or as correct behaviour."""

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
from tiny_run import tiny_args, tiny_fit

from cifar_moe.cli.main import cli_main


def _error_line(capsys, info) -> str:
    """The one error line, with no traceback and exit code 2."""
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if "args parameter is intended" not in line]
    assert info.value.code == 2
    assert "Traceback" not in "\n".join(err)
    assert err and err[-1].startswith("error: "), err
    return err[-1]


@pytest.fixture(scope="module")
def run(synthetic_data_dir, tmp_path_factory):
    """One tiny fit shared by the tests that need a trained run."""
    root = tmp_path_factory.mktemp("attack_run")
    _, folder, ckpt = tiny_fit(root, synthetic_data_dir)
    return root, folder, ckpt


@pytest.mark.parametrize("ckpt, expected", [
    ("best", "ckpt_path"), ("last", "ckpt_path"),
    ("https://example.invalid/model.ckpt", "ckpt_path")])
def test_test_with_a_checkpoint_that_is_not_there_is_one_line(ckpt, expected, synthetic_data_dir,
                                                               tmp_path, capsys):
    """Finding 14: never random weights tested with exit 0, never a traceback."""
    with pytest.raises(SystemExit) as info:
        cli_main(["test", *tiny_args(tmp_path, synthetic_data_dir), f"--ckpt_path={ckpt}"])
    assert expected in _error_line(capsys, info)
    assert not list(tmp_path.rglob("*.ckpt"))


def test_predict_without_a_checkpoint_is_refused(synthetic_data_dir, tmp_path, capsys):
    """Finding 14: predict with untrained weights needs --allow_untrained."""
    with pytest.raises(SystemExit) as info:
        cli_main(["predict", *tiny_args(tmp_path, synthetic_data_dir)])
    line = _error_line(capsys, info)
    assert "ckpt_path" in line and "--allow_untrained" in line, line
    assert not list(tmp_path.rglob("predictions*.csv"))


@pytest.mark.parametrize("setting, names, wrong", [
    ("--trainer.max_epochs=-3", "max_epochs", "accelerator"),
    ("--trainer.precision=15", "precision", None)])
def test_wrong_trainer_values_get_the_right_advice(setting, names, wrong, synthetic_data_dir,
                                                   tmp_path, capsys):
    """Finding 17: the message names the setting, and gives no unrelated advice."""
    with pytest.raises(SystemExit) as info:
        cli_main(["fit", *tiny_args(tmp_path, synthetic_data_dir), setting])
    line = _error_line(capsys, info)
    assert names in line, line
    if wrong:
        assert wrong not in line, line
    if "precision" in setting:
        assert "32" in line and "16-mixed" in line, line  # the valid values, not only 'auto'
    assert not list(tmp_path.rglob("*.ckpt"))


def test_predict_twice_keeps_both_csvs(run, capsys):
    """Finding 2: the second predict writes beside the first and prints where."""
    _, folder, ckpt = run
    before = set(folder.glob("predictions*.csv"))
    for _ in range(2):
        cli_main(["predict", "--config", str(folder / "config.yaml"), f"--ckpt_path={ckpt}"])
    written = sorted(set(folder.glob("predictions*.csv")) - before)
    assert len(written) == 2, written
    out = capsys.readouterr().out
    assert all(str(Path(p).name) in out for p in written), out
    assert all(p.read_text().count("\n") > 1 for p in written)


def test_mix_until_epoch_below_zero_is_one_line(synthetic_data_dir, tmp_path, capsys):
    """Finding 17: ``mix_until_epoch -5`` no longer turns mixing off silently."""
    with pytest.raises(SystemExit) as info:
        cli_main(["fit", *tiny_args(tmp_path, synthetic_data_dir), "--model.mix_until_epoch=-5"])
    assert "model.mix_until_epoch" in _error_line(capsys, info)
    assert not list(tmp_path.rglob("*.ckpt"))


def test_duplicate_class_names_are_one_line(synthetic_data_dir, tmp_path, capsys):
    """Finding 17: two classes of one name would merge their per-class metrics."""
    import pickle
    import shutil

    from cifar_moe.core.constants import BATCH_FOLDER, META_FILE

    shutil.copytree(synthetic_data_dir, tmp_path / "data")
    meta = tmp_path / "data" / BATCH_FOLDER / META_FILE
    names = pickle.loads(meta.read_bytes())
    names["label_names"][1] = names["label_names"][0]
    meta.write_bytes(pickle.dumps(names))
    with pytest.raises(SystemExit) as info:
        cli_main(["fit", *tiny_args(tmp_path, tmp_path / "data")])
    line = _error_line(capsys, info)
    assert "names a class more than once" in line and str(meta) in line, line


def test_classify_of_an_empty_uint8_batch_is_a_user_error(run):
    """Finding 17: an empty batch is named, not a traceback from inside the network."""
    import torch

    from cifar_moe.core.errors import UserError
    from cifar_moe.training.classify import classify
    from cifar_moe.training.module import LitClassifier

    model = LitClassifier.load_from_checkpoint(run[2], map_location="cpu")
    with pytest.raises(UserError, match="empty batch"):
        classify(model, torch.zeros((0, 3, 32, 32), dtype=torch.uint8))


def _claim(args):
    from cifar_moe.runs.claims import claim_run_folder

    return str(claim_run_folder(Path(args), "seed0"))


def test_run_folders_claimed_at_the_same_moment_differ(tmp_path):
    """Finding 11: eight processes claiming a run folder at once get eight folders."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(4) as pool:
        folders = list(pool.map(_claim, [tmp_path / "quickstart"] * 8))
    assert len(set(folders)) == 8
    assert sorted(p.name for p in (tmp_path / "quickstart").iterdir()) == \
        sorted(Path(f).name for f in folders)


@contextlib.contextmanager
def _read_only(*folders: Path):
    """The folders read-only for this process: chmod 555, or for root (who writes through
    modes) the immutable flag, which stops root too; skipped where neither is possible."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in folders}
        for p in folders:
            p.chmod(0o555)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    flagged = []
    try:
        for p in folders:
            if subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode != 0:
                pytest.skip("root, and this filesystem has no immutable flag (chattr +i)")
            flagged.append(p)
        yield
    finally:
        for p in flagged:
            subprocess.run(["chattr", "-i", str(p)], check=True)


def test_test_into_a_read_only_run_is_one_line_then_redirects(run, tmp_path, capsys):
    """Finding 15: a read-only run folder is named with the fix; the fix then works."""
    _, folder, ckpt = run
    with _read_only(folder, folder / "checkpoints"):
        with pytest.raises(SystemExit) as info:
            cli_main(["test", "--config", str(folder / "config.yaml"), f"--ckpt_path={ckpt}"])
        assert "--trainer.default_root_dir" in _error_line(capsys, info)
        cli_main(["test", "--config", str(folder / "config.yaml"), f"--ckpt_path={ckpt}",
                  f"--trainer.default_root_dir={tmp_path}"])
        assert list((tmp_path / "lightning_logs").rglob("config_test*.yaml"))
