"""Issue 36, finding 7: everything a user reads counts epochs from 1 (checkpoint names, the
run summary, the curves and the progress bar)."""

import pytest
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from tiny_run import tiny_args, tiny_fit

from cifar_moe.cli.main import cli_main


@pytest.mark.slow
def test_progress_bar_checkpoints_and_summary_count_epochs_from_1(synthetic_data_dir, tmp_path,
                                                                  capsys):
    _, run, best = tiny_fit(tmp_path, synthetic_data_dir, "--trainer.enable_progress_bar=true",
                            epochs=2)
    out = capsys.readouterr().out
    # The captured bar keeps its last state: Lightning's own would read "Epoch 1/1".
    assert "Epoch 2/2" in out and "Epoch 1/1" not in out, out[-2000:]
    names = sorted(p.name for p in (run / "checkpoints").glob("best-*.ckpt"))
    assert names and all(n in ("best-001.ckpt", "best-002.ckpt") for n in names), names
    assert f"at epoch {int(best.stem.split('-')[1])} " in out  # the summary names the file's


def test_a_progress_bar_of_the_config_is_kept_and_no_second_one_added(synthetic_data_dir,
                                                                       tmp_path):
    cli = cli_main([*tiny_args(tmp_path, synthetic_data_dir),
                    "--trainer.enable_progress_bar=true",
                    "--trainer.callbacks+=lightning.pytorch.callbacks.TQDMProgressBar"],
                   run=False)
    bars = [c for c in cli.trainer.callbacks if isinstance(c, ProgressBar)]
    assert len(bars) == 1 and isinstance(bars[0], TQDMProgressBar)


def test_no_bar_when_the_config_turns_it_off(synthetic_data_dir, tmp_path):
    cli = cli_main([*tiny_args(tmp_path, synthetic_data_dir)], run=False)
    assert not [c for c in cli.trainer.callbacks if isinstance(c, ProgressBar)]
