"""Mistakes caught before training, as one line; schedules checked against the run."""

import pytest
import torch

from cifar_moe.cli.main import cli_main
from cifar_moe.runs.listing import latest_run, read_scalars
from tests.test_reliability import _args


def _ckpt_files(folder):
    """Every kind of bad --ckpt_path: name -> (path, text the one line must contain)."""
    folder.mkdir()
    real = folder / "real.ckpt"
    torch.save({"state_dict": {"w": torch.ones(64, 64)}, "epoch": 0, "global_step": 4}, real)
    cases = {
        "garbage": (b"\x13\x37" * 500, "not a torch checkpoint"),
        "truncated": (real.read_bytes()[: real.stat().st_size // 2], "truncated"),
        "text file": (b"epoch: 3\n", "not a torch checkpoint"),
        "zero bytes": (b"", "empty (0 bytes"),
    }
    files = {}
    for name, (content, expected) in cases.items():
        path = folder / f"{name.replace(' ', '_')}.ckpt"
        path.write_bytes(content)
        files[name] = (path, expected)
    torch.save({"weights": torch.ones(2)}, folder / "dict.ckpt")
    torch.save(torch.ones(3), folder / "tensor.ckpt")
    files["plain dict"] = (folder / "dict.ckpt", "dict without state_dict")
    files["tensor"] = (folder / "tensor.ckpt", "holds a Tensor")
    files["missing"] = (folder / "nope.ckpt", "does not exist")
    files["folder"] = (folder, "is a folder")
    return files


CKPT_CASES = ["garbage", "truncated", "text file", "zero bytes", "plain dict", "tensor",
              "missing", "folder"]


def _one_line_error(capsys, info) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith("error: "), err[-1]
    return err[-1]


@pytest.mark.parametrize("case", CKPT_CASES)
def test_every_bad_ckpt_path_is_one_line(case, synthetic_data_dir, tmp_path, capsys):
    path, expected = _ckpt_files(tmp_path / "ckpts")[case]
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as info:
        cli_main(_args(synthetic_data_dir, runs, f"--ckpt_path={path}"))
    line = _one_line_error(capsys, info)
    assert str(path) in line and expected in line, line
    assert "weights_only=False" not in line
    assert not (runs / "lightning_logs").exists()  # no stray version_N


def _blocked(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    return blocker


BEFORE_TRAINING = {  # case: (extra arguments given the tmp_path, text the line must contain)
    "checkpoint dirpath": (lambda t: [f"--checkpoint.dirpath={_blocked(t)}/ckpts"],
                           "checkpoint.dirpath"),
    "logger save_dir": (lambda t: ['--trainer.logger={"class_path": "lightning.pytorch.loggers.'
                                   'TensorBoardLogger", "init_args": {"save_dir": "'
                                   f'{_blocked(t)}/logs"}}}}'], "save_dir"),
    "monitor typo": (lambda t: ["--checkpoint.monitor=val/acc_typo"], "checkpoint.monitor"),
    "devices 0": (lambda t: ["--trainer.devices=0"], "devices"),
    "strategy typo": (lambda t: ["--trainer.strategy=ddpp"], "strategy='ddpp'"),
    "max_epochs 0": (lambda t: ["--trainer.max_epochs=0"], "trainer.max_epochs is 0"),
    "focal_gamma < 0": (lambda t: ["--model.loss=focal", "--model.focal_gamma=-1"],
                        "model.focal_gamma"),
    # Silently unused before: the run trained plain cross-entropy.
    "focal_gamma with CE": (lambda t: ["--model.focal_gamma=3"],
                            "only used by loss: focal"),
    "focal_form with CE": (lambda t: ["--model.focal_form=smoothed_ce"],
                           "only used by loss: focal"),
    "OneCycle, max_epochs -1": (lambda t: ["--trainer.max_epochs=-1"], "known length"),
    # 1 epoch x 4 batches x pct_start 0.25: a one-step warm-up (ZeroDivisionError before).
    "OneCycle, too few steps": (lambda t: ["--trainer.max_epochs=1"], "warm-up"),
    "hold of the whole run": (lambda t: [*HELD, "--model.scheduler.init_args.hold=1"],
                              "init_args.hold is 1.0"),
    "unknown scheduler key": (lambda t: ["--model.scheduler.init_args.max_lrr=3"], "'max_lrr'"),
    "empty config": (lambda t: [f"--config={t / 'empty.yaml'}"], "empty.yaml is empty"),
    "empty config, value as its own word": (lambda t: ["--config", str(t / "empty.yaml")],
                                            "empty.yaml is empty"),
    "broken YAML config": (lambda t: [f"--config={t / 'broken.yaml'}"],
                           "broken.yaml is not valid YAML at line 2"),
    "binary config": (lambda t: [f"--config={t / 'binary.yaml'}"], "binary.yaml is not a text"),
    # torch's own check of OneCycleLR's settings, at the start of fit (a traceback before).
    "scheduler pct_start": (lambda t: ["--model.scheduler.init_args.pct_start=25"],
                            "model.scheduler (OneCycleLR): Expected float between 0 and 1"),
}
if not torch.cuda.is_available():
    BEFORE_TRAINING["gpu without a GPU"] = (lambda t: ["--trainer.accelerator=gpu"],
                                            "accelerator='gpu'")


@pytest.mark.parametrize("case", list(BEFORE_TRAINING))
def test_mistakes_are_one_line_before_training(case, synthetic_data_dir, tmp_path, capsys):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    (tmp_path / "broken.yaml").write_text("trainer:\n\tmax_epochs: 2\n")  # a tab indent
    (tmp_path / "binary.yaml").write_bytes(b"\x80\xff\x00 not text")
    make_extra, expected = BEFORE_TRAINING[case]
    with pytest.raises(SystemExit) as info:
        cli_main(_args(synthetic_data_dir, tmp_path / "runs", *make_extra(tmp_path)))
    line = _one_line_error(capsys, info)
    assert expected in line, line
    # Nothing trained: no checkpoint was written anywhere.
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.slow
@pytest.mark.parametrize("subcommand", ["test", "validate"])
def test_evaluating_without_ckpt_path_refuses_unless_allowed(subcommand, synthetic_data_dir,
                                                            tmp_path, capsys):
    args = [subcommand, *_args(synthetic_data_dir, tmp_path)[1:], "--trainer.limit_test_batches=2"]
    with pytest.raises(SystemExit) as stop:
        cli_main(args)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {subcommand} without --ckpt_path would use untrained" in err
    assert "--allow_untrained true" in err
    cli_main([*args, "--allow_untrained=true"])  # on purpose: it runs, and says so
    err = capsys.readouterr().err
    assert f"warning: {subcommand} of untrained (random) weights" in err


@pytest.mark.slow
def test_cosine_t_max_shorter_than_the_run_warns(synthetic_data_dir, tmp_path, capsys):
    cli_main(_args(synthetic_data_dir, tmp_path, "--model.scheduler=CosineAnnealingLR",
                   "--model.scheduler.init_args.T_max=35", "--trainer.max_epochs=2"))
    assert "T_max is 35 but trainer.max_epochs is 2" in capsys.readouterr().err


@pytest.mark.slow
def test_cosine_without_t_max_follows_the_run(synthetic_data_dir, tmp_path):
    cli = cli_main(_args(synthetic_data_dir, tmp_path, "--trainer.max_epochs=3",
                         "--model.scheduler=cifar_moe.training.schedules.CosineToRunEnd",
                         "--model.scheduler.init_args.eta_min=0.001",
                         "--trainer.log_every_n_steps=1"))
    assert cli.trainer.lr_scheduler_configs[0].scheduler.T_max == 2  # max_epochs - 1
    lrs = [v for _, v in read_scalars(latest_run(tmp_path / "lightning_logs"))["lr-SGD"]]
    assert lrs[-1] == pytest.approx(0.001)  # the last epoch trains at eta_min


HELD = ["--model.scheduler=cifar_moe.training.schedules.OneCycleThenHold",
        "--model.scheduler.init_args.hold=0.25"]  # configs/archive/slice_v1.yaml


@pytest.mark.slow
def test_one_cycle_then_hold_follows_the_run(synthetic_data_dir, tmp_path):
    cli = cli_main(_args(synthetic_data_dir, tmp_path, "--trainer.max_epochs=4", *HELD,
                         "--trainer.log_every_n_steps=1"))
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert (scheduler.run_steps, scheduler.total_steps) == (16, 12)  # 4 epochs x 4 batches
    lrs = [v for _, v in read_scalars(latest_run(tmp_path / "lightning_logs"))["lr-SGD"]]
    assert len(lrs) == 16
    assert lrs[0] == pytest.approx(0.2 / 25)  # quickstart.yaml's max_lr 0.2 carried over
    assert lrs[11:] == pytest.approx([0.2 / 25 / 1e4] * 5)  # the last quarter holds the end


@pytest.mark.slow
@pytest.mark.parametrize("schedule", [[], HELD], ids=["OneCycleLR", "OneCycleThenHold"])
def test_extending_a_finished_onecycle_run_is_one_line(schedule, synthetic_data_dir, tmp_path,
                                                       capsys):
    cli_main(_args(synthetic_data_dir, tmp_path, "--trainer.max_epochs=2", *schedule))
    last = latest_run(tmp_path / "lightning_logs") / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit) as info:
        cli_main(_args(synthetic_data_dir, tmp_path, "--trainer.max_epochs=4", *schedule,
                       f"--ckpt_path={last}"))
    line = _one_line_error(capsys, info)
    assert "has 8 steps but this run has 16" in line and "Resume with the max_epochs" in line


@pytest.mark.slow
def test_checkpoint_of_another_network_version_is_one_line(synthetic_data_dir, tmp_path,
                                                          capsys):
    cli_main(_args(synthetic_data_dir, tmp_path))
    last = latest_run(tmp_path / "lightning_logs") / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    saved["state_dict"]["net.blocks.0.router.mlp.3.bias"] = torch.zeros(2)  # an older router
    old = tmp_path / "old.ckpt"
    torch.save(saved, old)
    test_args = ["test", *_args(synthetic_data_dir, tmp_path / "eval")[1:], f"--ckpt_path={old}"]
    with pytest.raises(SystemExit) as info:
        cli_main(test_args)
    line = _one_line_error(capsys, info)
    assert "holds weights of a different network (unexpected net.blocks.0.router.mlp.3.bias" \
        in line
    assert not (tmp_path / "eval" / "lightning_logs").exists()  # nothing written
