"""Daily workflows around fit: comparable runs, one run folder, the summary, one optimizer
setting, a readable --help, run helpers for notebooks, and the torchmetrics confusion plot."""

import json
import shlex
from pathlib import Path

import pytest
import torch
from tiny_run import CONFIGS, tiny_fit

from cifar_moe.analysis.plots import confusion_figure
from cifar_moe.cli.main import cli_main
from cifar_moe.core.constants import CIFAR10_CLASSES
from cifar_moe.runs.folder import LAUNCH_FILE
from cifar_moe.runs.listing import (
    best_checkpoint,
    find_runs,
    latest_run,
    launch_dir,
    logs_root,
    read_scalars,
    resolve_run_path,
    study_results,
)


def hparams_tab(logdir) -> dict:
    """What TensorBoard's HParams tab shows for ``logdir``: its metric columns, and per run
    (session) its hyperparameters and metric values. Uses TensorBoard's own plugin."""
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import hparams_plugin
    from werkzeug.test import Client

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    context = base_plugin.TBContext(logdir=str(logdir), multiplexer=mux, data_provider=provider)
    apps = hparams_plugin.HParamsPlugin(context).get_plugin_apps()
    experiment = json.loads(Client(apps["/experiment"]).post("/", data="{}").data)
    metrics = [m["name"]["tag"] for m in experiment.get("metricInfos", [])]
    request = {"startIndex": 0, "sliceSize": 100,
               "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                   "STATUS_RUNNING"],
               "colParams": [{"metric": {"tag": m}} for m in metrics]}
    groups = json.loads(Client(apps["/session_groups"]).post("/", data=json.dumps(request)).data)
    sessions = {
        group["name"]: {"hparams": group["hparams"],
                        "metrics": {v["name"]["tag"]: v["value"] for v in group["metricValues"]}}
        for group in groups.get("sessionGroups", [])
    }
    return {"metrics": metrics, "sessions": sessions}


def _error_lines(stderr: str) -> list[str]:
    """stderr without the warning LightningCLI gives for in-process ``args`` (tests only)."""
    lines = stderr.strip().splitlines()
    return [line for line in lines if "args parameter is intended" not in line]


def _versions(root) -> list[str]:
    """The run folders under ``root/lightning_logs``, as group/name."""
    logs = root / "lightning_logs"
    return sorted(str(p.relative_to(logs)) for p in find_runs(logs))


@pytest.mark.slow
def test_fit_summary_then_its_test_command_log_into_one_run_with_hparams(
    synthetic_data_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # the summary prints paths relative to the working folder
    _, run, best = tiny_fit(tmp_path, synthetic_data_dir, "--model.scheduler=null", epochs=3)
    out = capsys.readouterr().out
    val = [v for _, v in read_scalars(run)["val/acc"]]
    best_epoch = max(range(len(val)), key=val.__getitem__) + 1  # counted from 1 everywhere
    assert f"fit done: best val/acc {max(val):.4f} at epoch {best_epoch} (" in out
    assert f"best checkpoint: lightning_logs/quickstart/seed0-1/checkpoints/{best.name}" in out
    assert best.name == f"best-{best_epoch:03d}.ckpt"
    assert "logs:            lightning_logs/quickstart/seed0-1" in out
    assert "tensorboard --logdir lightning_logs)" in out
    assert (run / LAUNCH_FILE).is_file() and launch_dir(run) == tmp_path
    command = next(line.split("next:", 1)[1] for line in out.splitlines() if "next:" in line)
    argv = shlex.split(command)
    assert argv[:4] == ["python", "-m", "cifar_moe", "test"]

    config_before = (run / "config.yaml").read_bytes()
    tested = cli_main(argv[3:])  # the printed command, as it stands
    assert _versions(tmp_path) == ["quickstart/seed0-1"]  # test wrote into the run's folder
    assert (run / "config.yaml").read_bytes() == config_before
    assert (run / "config_test.yaml").is_file()
    test_acc = float(tested.trainer.callback_metrics["test/acc"])

    tab = hparams_tab(tmp_path / "lightning_logs")
    assert tab["metrics"] == ["val/acc_best", "test/acc"]
    session = tab["sessions"]["quickstart/seed0-1"]
    assert session["metrics"]["val/acc_best"] == pytest.approx(max(val))
    assert session["metrics"]["test/acc"] == pytest.approx(test_acc)
    assert not [k for k in session["hparams"] if k.startswith("_") or "/_" in k]
    hp = session["hparams"]  # fields, not one string per object
    assert hp["model/net/class"] == "MoENet" and hp["model/net/num_experts"] == 2
    assert hp["model/optimizer/class"] == "SGD" and hp["model/optimizer/lr"] == 0.05
    assert hp["data/augment/flip_p"] == 0.5
    assert "hp_metric" not in read_scalars(run)

    cli_main(["validate", "--config", str(run / "config.yaml"), f"--ckpt_path={best}"])
    assert _versions(tmp_path) == ["quickstart/seed0-1"]
    assert "val/acc" in read_scalars(run / "validate")  # beside, not inside, the fit's curve
    assert len(read_scalars(run)["val/acc"]) == len(val)


@pytest.mark.slow
def test_resumed_fit_continues_in_its_run_folder(synthetic_data_dir, tmp_path, capsys,
                                                  tiny_fit_args):
    _, run, _ = tiny_fit(tmp_path, synthetic_data_dir, "--model.scheduler=null", epochs=2)
    cli_main(["fit", *tiny_fit_args(epochs=4), "--model.scheduler=null",
              f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    assert _versions(tmp_path) == ["quickstart/seed0-1"]
    assert (run / "config_resume-1.yaml").is_file()  # beside the first part's config.yaml
    scalars = read_scalars(run)
    steps = [step for step, _ in scalars["val/acc"]]
    assert len(steps) == 4 and steps == sorted(steps)  # one continuous curve
    val = [v for _, v in scalars["val/acc"]]
    best_epoch = max(range(4), key=val.__getitem__) + 1
    # Exactly one best checkpoint, and it is the best epoch over both sessions.
    assert sorted(p.name for p in (run / "checkpoints").glob("best-*.ckpt")) == [
        f"best-{best_epoch:03d}.ckpt"]
    assert f"best val/acc {max(val):.4f} at epoch {best_epoch}" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "names"), [
    (["fit", "--optimizer", "Adam"], ("--optimizer:", "--model.optimizer")),
    (["fit", "--lr_scheduler=torch.optim.lr_scheduler.StepLR"],
     ("--lr_scheduler:", "--model.scheduler")),
])
def test_lightning_optimizer_flags_are_an_error_naming_the_model_setting(args, names, capsys):
    with pytest.raises(SystemExit) as info:
        cli_main(args)
    assert info.value.code == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith(f"error: {names[0]}") and names[1] in err[0]


def test_optimizer_key_in_a_config_file_names_model_optimizer(tmp_path, capsys):
    overlay = tmp_path / "opt.yaml"
    overlay.write_text("optimizer:\n  class_path: torch.optim.Adam\n")
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(CONFIGS / "quickstart.yaml"), "--config", str(overlay)])
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("error: config key optimizer:")
    assert "--model.optimizer" in err[0]


def test_fit_help_is_short_and_lists_the_project_networks(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")  # a narrow terminal: the most lines
    with pytest.raises(SystemExit) as info:
        cli_main(["fit", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    # Every project setting keeps one or two lines; Lightning's rarer flags are one list.
    assert len(text.splitlines()) < 320
    net_help = text[text.index("  --model.net "):text.index("  --model.loss")]
    assert "cifar_moe.models.MoENet" in net_help and "cifar_moe.models.CifarResNet18" in net_help
    assert "torch.nn" not in text and "torchvision" not in text
    assert "--model.optimizer" in text and "\n  --optimizer" not in text
    # Lightning's less common flags are still named (and still work, below).
    assert "detect_anomaly" in text and "enable_version_counter" in text


def test_any_module_class_path_still_works_as_the_network(synthetic_data_dir):
    cli = cli_main(["--model.net=torchvision.models.SqueezeNet", "--trainer.detect_anomaly=true",
                    f"--data.data_dir={synthetic_data_dir}", "--data.val_size=40"], run=False)
    assert type(cli.model.net).__name__ == "SqueezeNet"
    assert cli.model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_logs_root_is_found_from_the_repo_root_and_from_notebooks(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "notebooks").mkdir()
    # No runs yet: the folder a fit from the checkout would create.
    assert logs_root(tmp_path / "notebooks") == tmp_path / "lightning_logs"
    (tmp_path / "lightning_logs").mkdir()
    assert logs_root(tmp_path) == logs_root(tmp_path / "notebooks") == tmp_path / "lightning_logs"


def test_newest_run_with_a_checkpoint_and_its_paths(tmp_path):
    logs = tmp_path / "lightning_logs"
    for n, has_ckpt in [(0, True), (1, True), (2, False)]:  # version_2: e.g. a predict
        (logs / f"version_{n}" / "checkpoints").mkdir(parents=True)
        if has_ckpt:
            (logs / f"version_{n}" / "checkpoints" / "last.ckpt").write_bytes(b"")
    (logs / "version_3_old").mkdir()  # a copy a user made: not a run of this series
    assert latest_run(logs).name == "version_2"
    assert latest_run(logs, with_checkpoint=True).name == "version_1"
    run = logs / "version_1"
    assert resolve_run_path(run, "data") == tmp_path / "data"  # no launch.yaml: beside logs
    (run / LAUNCH_FILE).write_text("cwd: /somewhere/else\n")
    assert str(resolve_run_path(run, "data")) == "/somewhere/else/data"
    assert str(resolve_run_path(run, "/abs/data")) == "/abs/data"
    assert study_results(tmp_path / "missing.json") is None


@pytest.mark.slow
def test_best_checkpoint_is_the_recorded_best_when_several_are_kept(synthetic_data_dir,
                                                                   tmp_path):
    cli, run, best = tiny_fit(tmp_path, synthetic_data_dir, "--checkpoint.save_top_k=-1",
                              "--seed_everything=2", epochs=4)  # here best-002, not 003
    kept = sorted((run / "checkpoints").glob("best-*.ckpt"))
    (callback,) = [c for c in cli.trainer.checkpoint_callbacks if c.monitor]
    scores = {Path(p).name: float(v) for p, v in callback.best_k_models.items()}
    assert len(kept) == 4
    assert best.name == max(scores, key=scores.get) == Path(callback.best_model_path).name
    # Whatever this machine's run scored: the file the callback recorded, not the newest.
    last = run / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=False)
    for state in saved["callbacks"].values():
        if isinstance(state, dict) and state.get("monitor"):
            state["best_model_path"] = f"/another/machine/{kept[0].name}"
    torch.save(saved, last)
    assert best_checkpoint(run) == kept[0]


def test_confusion_figure_is_torchmetrics_plot_with_names_and_counts():
    counts = torch.arange(100).reshape(10, 10)
    fig = confusion_figure(counts, CIFAR10_CLASSES)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CIFAR10_CLASSES)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CIFAR10_CLASSES)
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
             for t in ax.texts}
    assert len(cells) == 100
    assert all(cells[i, j] == str(int(counts[i, j])) for i in range(10) for j in range(10))
    assert ax.get_ylabel() == "True class" and ax.get_xlabel() == "Predicted class"


def _tree(*folders: Path) -> set[Path]:
    return {p for f in folders if f.is_dir() for p in f.iterdir()}


def test_quickstart_fit_from_notebooks_finds_the_slice_and_leaves_no_stray_folder(
        real_data_dir, tmp_path, monkeypatch):
    """Finding 4: ``fit --config ../configs/quickstart.yaml`` started in notebooks/ reads the
    config's relative data_dir against the project root, not the working folder."""
    from tiny_run import TINY_ROUTED_NET

    checkout = CONFIGS.parent
    monkeypatch.delenv("CIFAR_MOE_DATA", raising=False)
    monkeypatch.delenv("CIFAR_MOE_SLICE_DIR", raising=False)
    monkeypatch.chdir(checkout / "notebooks")
    watched = (checkout, checkout / "notebooks", checkout.parent / "shared",
               checkout.parent / "shared" / "data", real_data_dir)
    before = _tree(*watched)
    cli = cli_main(["fit", "--config", "../configs/quickstart.yaml", *TINY_ROUTED_NET,
                    "--data.num_workers=0", "--data.batch_size=16", "--trainer.max_epochs=1",
                    "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2",
                    "--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu",
                    f"--trainer.default_root_dir={tmp_path}"])
    assert cli.datamodule.folder.parent.resolve() == real_data_dir.resolve()
    run = Path(cli.trainer.log_dir)
    assert run.is_relative_to(tmp_path / "lightning_logs") and any(run.rglob("*.ckpt"))
    assert _tree(*watched) == before  # nothing new beside the checkout, the data, notebooks/
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lightning_logs"]
