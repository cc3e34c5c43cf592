"""Issue 15: the speed switches' ``auto`` (fast on CUDA, plain on CPU), shown in one line;
explicit values win; a failing torch.compile falls back to eager with one line."""

from pathlib import Path

import pytest
import torch
import yaml
from tiny_run import TINY_NET

from cifar_moe.cli.main import cli_main
from cifar_moe.core.hardware import (
    CPU,
    DeviceFacts,
    _cuda_device_count,
    auto_choice,
    facts_for_accelerator,
    settle,
    summary_line,
)
from cifar_moe.core.private_api import is_compiled
from cifar_moe.data import CIFAR10DataModule
from cifar_moe.models import MoENet
from cifar_moe.training.module import LitClassifier

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
H100 = DeviceFacts("cuda", "NVIDIA H100 80GB HBM3", bf16=True)
V100 = DeviceFacts("cuda", "Tesla V100-SXM2-16GB", bf16=False)
SETTINGS = ("device_augment", "channels_last", "compile")
CPU_LINE = ("auto settings: device=cpu -> device_augment=false, channels_last=false, "
            "compile=false, precision=32-true")
TINY = TINY_NET


def test_auto_on_cpu_is_todays_behaviour():
    assert [auto_choice(name, CPU) for name in SETTINGS] == [False, False, False]
    assert auto_choice("precision", CPU) == "32-true"
    assert auto_choice("precision", DeviceFacts("mps", "mps")) == "32-true"
    assert not auto_choice("compile", DeviceFacts("mps", "mps"))


@pytest.mark.parametrize(("facts", "precision"), [(H100, "bf16-mixed"), (V100, "32-true")])
def test_auto_on_cuda_is_fast_and_bf16_only_where_supported(facts, precision):
    assert [auto_choice(name, facts) for name in SETTINGS] == [True, True, True]
    assert auto_choice("precision", facts) == precision


def test_auto_keeps_the_classic_path_under_ddp():
    two_gpus = DeviceFacts("cuda", "NVIDIA H100 80GB HBM3", bf16=True, processes=2)
    assert auto_choice("device_augment", two_gpus) is False  # untested under DDP
    assert auto_choice("compile", two_gpus) and auto_choice("channels_last", two_gpus)
    assert auto_choice("precision", two_gpus) == "bf16-mixed"


@pytest.mark.parametrize(("devices", "count"), [(4, 4), ([0, 2], 2), ("0,1", 2), ("3", 3)])
def test_requested_gpu_count(devices, count):
    assert _cuda_device_count(devices) == count


def test_explicit_values_win():
    assert settle(False, "compile", H100) is False
    assert settle(True, "channels_last", CPU) is True
    assert settle("16-mixed", "precision", H100) == "16-mixed"
    assert settle(None, "precision", H100) == "32-true"  # Lightning's default for None
    values = {"device_augment": False, "channels_last": "auto", "compile": "auto",
              "precision": "auto"}
    assert summary_line(values, H100) == (
        "auto settings: device=cuda (NVIDIA H100 80GB HBM3) -> device_augment=false "
        "(explicit), channels_last=true, compile=true, precision=bf16-mixed")
    with pytest.raises(ValueError, match="no auto choice"):
        auto_choice("num_workers", CPU)


def test_facts_from_the_configured_accelerator():
    assert facts_for_accelerator("cpu") == CPU
    if not torch.cuda.is_available():
        assert facts_for_accelerator("auto").kind in ("cpu", "mps")


def test_datamodule_alone_keeps_the_classic_path(synthetic_data_dir):
    def data(setting):
        return CIFAR10DataModule(data_dir=str(synthetic_data_dir), device_augment=setting)

    assert data("auto").uses_device_path is False  # no trainer: the CPU choice
    assert data(True).uses_device_path is True


def _print_config(capsys, *extra) -> tuple[str, dict]:
    with pytest.raises(SystemExit) as stop:
        cli_main(["fit", f"--config={CONFIG_DIR / 'focal_onecycle.yaml'}", *extra,
                  "--print_config"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    return out.splitlines()[0], yaml.safe_load(out)


def test_print_config_shows_what_auto_resolves_to(capsys):
    if torch.cuda.is_available():
        pytest.skip("the expected line is the CPU one")
    first, config = _print_config(capsys)
    assert first == f"# {CPU_LINE}"
    # Still valid YAML that keeps 'auto', so it can be saved and reused on another machine.
    assert config["trainer"]["precision"] == "auto"
    assert config["model"]["compile"] == "auto" and config["data"]["device_augment"] == "auto"


def test_print_config_marks_explicit_values(capsys):
    first, config = _print_config(capsys, "--trainer.accelerator=cpu", "--model.compile=true",
                                  "--trainer.precision=bf16-mixed")
    assert "compile=true (explicit)" in first and "precision=bf16-mixed (explicit)" in first
    assert "channels_last=false," in first
    assert config["model"]["compile"] is True


def test_unknown_precision_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as stop:
        cli_main(["fit", f"--config={CONFIG_DIR / 'quickstart.yaml'}",
                  "--trainer.precision=bogus"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "trainer.precision" in err[0]


def _tiny_model(compile_setting) -> tuple[LitClassifier, torch.nn.Module]:
    torch.manual_seed(0)
    net = MoENet(stem_width=8, widths=[8, 16], pool_after=[0, 1], num_experts=2).eval()
    return LitClassifier(net, compile=compile_setting), net


def _raise(*args, **kwargs):
    raise RuntimeError("simulated: no C++ compiler\nsecond line of the error")


@pytest.mark.parametrize("where", ["at compile()", "at the first call"])
def test_compile_failure_falls_back_to_eager_with_one_line(where, monkeypatch, capsys):
    if where == "at compile()":
        monkeypatch.setattr(torch, "compile", _raise)
    else:
        monkeypatch.setattr(torch, "compile", lambda *a, **k: _raise)
    model, net = _tiny_model(True)
    x = torch.randn(3, 3, 32, 32)
    model.configure_model()
    with torch.no_grad():
        out = model(x)
        again = model(x)
        torch.testing.assert_close(out, net(x))
    torch.testing.assert_close(again, out)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1  # said once, not per call; the error's own lines are folded
    assert lines[0].startswith("warning: model.compile: torch.compile failed")
    assert "simulated: no C++ compiler second line" in lines[0]
    assert lines[0].endswith("continuing eager")
    assert not is_compiled(net)


def test_a_failing_compile_of_the_net_and_the_loss_is_said_once_per_fit(monkeypatch, capsys):
    from cifar_moe.training.auto_settings import call_compiled_or_eager

    monkeypatch.setattr(torch, "compile", lambda *a, **k: _raise)  # fails at each first call
    torch.manual_seed(0)
    net = MoENet(stem_width=8, widths=[8, 16], pool_after=[0, 1], num_experts=2).eval()
    model = LitClassifier(net, loss="focal", compile=True)
    for _ in range(2):  # two fits in one process (a notebook): each says it once
        model.configure_model()
        assert is_compiled(net) and is_compiled(model.loss_fn)
        with torch.no_grad():
            logits = model(torch.randn(3, 3, 32, 32))
            call_compiled_or_eager(model.loss_fn, logits, torch.tensor([0, 1, 2]))
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("warning: model.compile")
        assert not is_compiled(net) and not is_compiled(model.loss_fn)


def test_auto_compile_without_trainer_stays_eager():
    model, net = _tiny_model("auto")
    model.configure_model()
    assert not is_compiled(net) and model.channels_last is False


def _fit(tmp_path, data_dir, *extra):
    return cli_main([
        "fit", f"--config={CONFIG_DIR / 'quickstart.yaml'}", *TINY,
        f"--data.data_dir={data_dir}", "--data.val_size=40", "--data.num_workers=0",
        "--data.batch_size=16", f"--trainer.default_root_dir={tmp_path}",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=3",
        "--trainer.limit_val_batches=2", "--trainer.enable_progress_bar=false", *extra,
    ])


@pytest.mark.slow
def test_cli_fit_with_auto_on_cpu(synthetic_data_dir, tmp_path, capsys):
    cli = _fit(tmp_path, synthetic_data_dir, "--trainer.accelerator=auto")
    err = capsys.readouterr().err
    if not torch.cuda.is_available():
        assert err.count("auto settings:") == 1 and CPU_LINE in err
        assert cli.trainer.precision == "32-true"
        assert cli.datamodule.uses_device_path is False
        assert cli.model.channels_last is False and not is_compiled(cli.model.net)
    assert cli.trainer.global_step == 3
    saved = yaml.safe_load(next(tmp_path.rglob("config.yaml")).read_text())
    assert saved["trainer"]["precision"] == "auto"  # the saved config stays portable


@pytest.mark.slow
def test_cli_fit_compile_failure_continues_eager(synthetic_data_dir, tmp_path, capsys,
                                                 monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda *a, **k: _raise)
    cli = _fit(tmp_path, synthetic_data_dir, "--model.compile=true",
               "--data.device_augment=true")
    err = capsys.readouterr().err
    assert "compile=true (explicit)" in err and "device_augment=true (explicit)" in err
    assert err.count("torch.compile failed") == 1
    assert cli.trainer.global_step == 3 and cli.datamodule.uses_device_path is True
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
