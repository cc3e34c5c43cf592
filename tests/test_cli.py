"""Smoke tier: short in-process CLI fits and tests (the config tier is test_configs.py)."""

from pathlib import Path

import pytest
import torch
import yaml
from tiny_run import TINY_NET

from cifar_moe.cli.main import cli_main
from cifar_moe.data import AugmentSettings
from cifar_moe.runs.listing import (
    best_checkpoint,
    latest_run,
    read_image_tags,
    read_scalars,
    run_datamodule,
)
from cifar_moe.training.module import LitClassifier

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def fast_trainer(root: Path, epochs: int = 1) -> list[str]:
    return [
        f"--trainer.default_root_dir={root}",
        f"--trainer.max_epochs={epochs}",
        "--trainer.limit_train_batches=3",
        "--trainer.limit_val_batches=2",
        "--trainer.enable_progress_bar=false",
        "--trainer.log_every_n_steps=1",
        "--trainer.accelerator=cpu",
        "--data.num_workers=0",
        "--data.batch_size=16",
    ]


@pytest.mark.slow
def test_fit_then_test_best_checkpoint(synthetic_data_dir, tmp_path):
    base = ["--config", str(CONFIGS / "quickstart.yaml"), *TINY_NET,
            f"--data.data_dir={synthetic_data_dir}", "--data.val_size=40"]
    cli_main(["fit", *base, *fast_trainer(tmp_path)])
    run = latest_run(tmp_path / "lightning_logs")
    assert (run / "config.yaml").is_file()
    ckpt = best_checkpoint(run)
    assert ckpt.name.startswith("best-") and (run / "checkpoints" / "last.ckpt").is_file()
    cli_main(["test", *base, *fast_trainer(tmp_path), f"--ckpt_path={ckpt}"])
    scalars = read_scalars(run)
    for tag in ["train/loss", "train/acc", "val/loss", "val/acc", "train/loss_step",
                "val/acc_class/cat", "lr-SGD"]:
        assert tag in scalars, f"{tag} missing from {sorted(scalars)}"
    test_scalars = read_scalars(latest_run(tmp_path / "lightning_logs"))
    assert "test/acc" in test_scalars and "test/acc_class/truck" in test_scalars
    assert "val/confusion" in read_image_tags(run)


@pytest.mark.slow
def test_checkpoint_loads_without_yaml(synthetic_data_dir, tmp_path):
    args = ["fit", "--config", str(CONFIGS / "mixup_cosine.yaml"), *TINY_NET,
            f"--data.data_dir={synthetic_data_dir}", "--data.val_size=40",
            "--model.net.init_args.widths=[8, 16]", *fast_trainer(tmp_path)]
    cli = cli_main(args)
    ckpt = best_checkpoint(latest_run(tmp_path / "lightning_logs"))
    loaded = LitClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(loaded(x), cli.model.cpu().eval()(x))
    assert loaded.class_names == cli.model.class_names


@pytest.mark.slow
def test_mixing_on_before_switch_epoch_and_off_after(synthetic_data_dir, tmp_path):
    args = ["fit", "--config", str(CONFIGS / "mixup_cosine.yaml"), *TINY_NET,
            f"--data.data_dir={synthetic_data_dir}", "--data.val_size=40",
            "--model.mix_until_epoch=1", *fast_trainer(tmp_path, epochs=3)]
    cli_main(args)
    mixing = [v for _, v in read_scalars(latest_run(tmp_path / "lightning_logs"))["train/mixing"]]
    assert mixing == [1.0, 0.0, 0.0]


@pytest.mark.slow
def test_onecycle_steps_per_batch_and_logs_the_lr_used(synthetic_data_dir, tmp_path):
    cli = cli_main(["fit", "--config", str(CONFIGS / "quickstart.yaml"), *TINY_NET,
                    f"--data.data_dir={synthetic_data_dir}", "--data.val_size=40",
                    *fast_trainer(tmp_path, epochs=2)])
    config = cli.trainer.lr_scheduler_configs[0]
    assert config.interval == "step"
    assert config.scheduler.total_steps == 6  # 2 epochs x 3 batches
    used = [v for _, v in read_scalars(latest_run(tmp_path / "lightning_logs"))["lr-SGD"]]
    assert len(used) == 6
    max_lr = 0.2  # quickstart.yaml; div_factor 25 and final_div_factor 1e4 are the defaults
    assert used[0] == pytest.approx(max_lr / 25)
    assert max(used) == pytest.approx(max_lr, rel=0.1)
    assert used[-1] == pytest.approx(max_lr / 25 / 1e4)


@pytest.mark.slow
@pytest.mark.real_data
def test_both_recipes_run_on_the_real_slice(real_data_dir, tmp_path):
    for recipe in ["mixup_cosine.yaml", "focal_onecycle.yaml"]:
        # The recipes' own networks, on a few real batches.
        cli_main(["fit", "--config", str(CONFIGS / recipe),
                  f"--data.data_dir={real_data_dir}", "--data.val_size=500",
                  *fast_trainer(tmp_path)])
        scalars = read_scalars(latest_run(tmp_path / "lightning_logs"))
        assert {"train/loss", "val/acc", "val/acc_class/airplane"} <= scalars.keys()


@pytest.mark.slow
@pytest.mark.real_data
def test_slice_recipe_runs_on_the_real_slice_with_its_own_settings(real_data_dir, tmp_path):
    # Its batch size, bf16 on the CPU, device augmentation with TrivialAugment, whitening stem,
    # routed block, flip-TTA and linear one-cycle schedule (warm-up over the first quarter,
    # decay to ~0).
    cli = cli_main(["fit", "--config", str(CONFIGS / "slice.yaml"),
                    f"--data.data_dir={real_data_dir}", f"--trainer.default_root_dir={tmp_path}",
                    "--trainer.max_epochs=2", "--trainer.limit_train_batches=4",
                    "--trainer.limit_val_batches=2", "--trainer.log_every_n_steps=1",
                    "--trainer.enable_progress_bar=false"])
    assert cli.datamodule.hparams.batch_size == 128 and cli.trainer.precision == "bf16-mixed"
    assert cli.datamodule.hparams.val_fold == 0 and cli.model.net.stem.conv.weight.requires_grad \
        is False  # the whitening filters come from the training fold, not from training
    scalars = read_scalars(latest_run(tmp_path / "lightning_logs"))
    assert cli.datamodule.augment.trivial_augment and cli.datamodule.uses_device_path
    assert {"route/block5/balance", "val/acc"} <= scalars.keys()
    assert not any(key.startswith("route/block3/") for key in scalars)  # block 3 is static
    lrs = [v for _, v in scalars["lr-SGD"]]
    sched = cli.config["fit"]["model"]["scheduler"]["init_args"]  # the recipe's own numbers
    peak = lrs.index(max(lrs))  # OneCycleLR peaks at step pct_start x total - 1
    assert len(lrs) == 8 and peak == round(sched["pct_start"] * 8) - 1 == 1
    assert max(lrs) == pytest.approx(sched["max_lr"])
    assert lrs[0] == pytest.approx(sched["max_lr"] / sched["div_factor"])
    assert lrs[:peak + 1] == sorted(lrs[:peak + 1]) and lrs[peak:] == sorted(lrs[peak:])[::-1]


def test_augment_block_on_the_command_line_and_in_print_config(synthetic_data_dir, capsys):
    base = ["--config", str(CONFIGS / "quickstart.yaml"), f"--data.data_dir={synthetic_data_dir}",
            "--data.augment.flip_p", "0.3", "--data.augment.hue=0.05"]
    cli = cli_main(base, run=False)
    assert cli.datamodule.augment == AugmentSettings(flip_p=0.3, crop_padding=4, hue=0.05)
    assert cli.datamodule.train_transform.transforms[0].p == 0.3
    with pytest.raises(SystemExit):
        cli_main([*base, "--print_config"], run=False)
    printed = yaml.safe_load(capsys.readouterr().out)["data"]["augment"]
    assert printed == AugmentSettings(flip_p=0.3, crop_padding=4, hue=0.05).as_dict()


@pytest.mark.parametrize(("flag", "line"), [
    ("--data.augment.hue=0.7", "error: data.augment.hue is 0.7; use a value in [0, 0.5]"),
    ("--data.augment.crop_padding=-2", "error: data.augment.crop_padding is -2; use 0 (off) or "
                                       "more"),
    ("--data.flip_p=0.3", "error: data.flip_p: now data.augment.flip_p; pass "
                          "--data.augment.flip_p, or in YAML nest it under data: augment: (as "
                          "the recipes in configs/ do)"),
])
def test_bad_augment_setting_is_one_line(flag, line, synthetic_data_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--config", str(CONFIGS / "quickstart.yaml"),
                  f"--data.data_dir={synthetic_data_dir}", flag], run=False)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert [e for e in err.splitlines() if e.startswith("error")] == [line]


@pytest.mark.slow
def test_saved_run_config_round_trips_the_augment_block(synthetic_data_dir, tmp_path, capsys):
    expected = AugmentSettings(flip_p=0.3, crop_padding=2, brightness=0.2, hue=0.05)
    cli_main(["fit", "--config", str(CONFIGS / "mixup_cosine.yaml"), *TINY_NET,
              f"--data.data_dir={synthetic_data_dir}", "--data.val_size=40",
              "--data.augment.flip_p=0.3", "--data.augment.crop_padding=2",
              "--data.augment.contrast=0", "--data.augment.saturation=0",
              "--data.augment.hue=0.05", *fast_trainer(tmp_path)])
    run = latest_run(tmp_path / "lightning_logs")
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["augment"] == expected.as_dict()
    # Back in through --config, with the run's checkpoint (read with weights_only=True).
    cli = cli_main(["validate", "--config", str(run / "config.yaml"),
                    f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    assert cli.datamodule.augment == expected
    # A run saved before the augment block (flat keys) still gives its data module.
    flat = {**saved, "data": {**saved["data"], **saved["data"].pop("augment")}}
    (run / "config.yaml").write_text(yaml.safe_dump(flat))
    assert run_datamodule(run).augment == expected
