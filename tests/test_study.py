"""Study runner: YAML validation, the report from run folders, and real tiny studies
(table and JSON, a failing row, resume after kill -9, retry of failures)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from study_records import result_record
from tiny_run import TINY_NET

from cifar_moe.cli.study import main
from cifar_moe.runs.study.child import usable_cores
from cifar_moe.runs.study.report import last_quarter_gain

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
QUICK = str(CONFIG_DIR / "quickstart.yaml")
K1 = str(CONFIG_DIR / "controls" / "k1.yaml")
# A 4 K-parameter network, 3 training and 2 validation batches of 16, 2 epochs: seconds.
TINY = [
    *TINY_NET, "--trainer.max_epochs=2",
    "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2",
    "--trainer.accelerator=cpu",
]
EXTRA = "--arg=--trainer.limit_test_batches=2"  # a study-wide override given on the command line
BROKEN_ERROR = "model.net.init_args.num_experts is 0; use 1 (static control) or more"


def write_study(folder: Path, data_dir, rows: list[dict], seeds=(0,), **extra) -> Path:
    spec = {"data": {"data_dir": str(data_dir), "val_size": 40, "num_workers": 0,
                     "batch_size": 16},
            "seeds": list(seeds), "out": str(folder / "out"), "args": TINY, "rows": rows,
            **extra}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_last_quarter_gain_tells_a_converged_curve_from_a_rising_one():
    flat = [0.1 * i for i in range(6)] + [0.7] * 14  # 20 epochs, flat from epoch 6
    rising = [0.03 * i for i in range(20)]
    assert last_quarter_gain(flat) == pytest.approx(0.0)
    # quarter of 5: windows of 2 that do not overlap, (18+19 - 15-16) / 2 * 0.03
    assert last_quarter_gain(rising) == pytest.approx(0.09)
    assert last_quarter_gain([0.03 * i for i in range(40)]) == pytest.approx(0.21)  # 3 and 3
    assert last_quarter_gain([0.03 * i for i in range(12)]) == pytest.approx(0.06)  # 1 and 1
    assert last_quarter_gain([0.5] * 7) is None


def test_render_aggregates_marks_single_seeds_and_failures(tmp_path):
    path = write_study(tmp_path, tmp_path / "data", seeds=(0, 1), rows=[
        {"name": "two", "configs": [QUICK]}, {"name": "one", "configs": [QUICK], "seeds": [0]},
        {"name": "half", "configs": [QUICK]}, {"name": "pending", "configs": [QUICK]}])
    runs = tmp_path / "out" / "runs"
    route = {"route/block0/balance": 0.9, "route/block0/mutual_info": 0.1,
             "route/block0/dead_fraction": 0.0}
    for seed, acc in ((0, 0.30), (1, 0.40)):
        (runs / "two" / f"seed{seed}").mkdir(parents=True)
        (runs / "two" / f"seed{seed}" / "result.json").write_text(
            json.dumps(result_record(acc, [0.1, acc], route)))
    for row in ("one", "half"):
        (runs / row / "seed0").mkdir(parents=True)
        (runs / row / "seed0" / "result.json").write_text(json.dumps(result_record(0.25, [0.2])))
    (runs / "half" / "seed1").mkdir(parents=True)
    (runs / "half" / "seed1" / "error.json").write_text(json.dumps({"error": "out of | luck"}))
    assert main([str(path), "--render"]) == 1  # a failed run is there
    out = tmp_path / "out"
    rows = {r["name"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    two = rows["two"]["aggregate"]
    assert two["test_acc_mean"] == pytest.approx(0.35)
    assert two["test_acc_std"] == pytest.approx(0.0707, abs=1e-4)
    assert two["val_acc_curve"]["max"] == [0.1, 0.4]
    assert two["routing_mean"]["route/block0/balance"] == pytest.approx(0.9)
    table = (out / "results.md").read_text().splitlines()
    assert "| two | 35.0 +/- 7.1 | 0: 30.0, 1: 40.0 | 35.0 | - | 2 | 10 | 100 |" in table
    assert "| one | 25.0 (1 seed) | 0: 25.0 | 20.0 | - | 1 | 10 | 100 |" in table
    assert "| half | 25.0 (1 seed) | 0: 25.0, 1: failed: out of \\| luck |" in "\n".join(table)
    assert "| pending | not run | 0: not run, 1: not run | - | - | - | - | - |" in table
    assert "| two | block0 | 0.90 | 0.10 | 0.00 | - | - | - |" in table
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("where", ["row args", "data", "loss setting"])
def test_mistyped_setting_stops_the_study_before_anything_is_written(
        synthetic_data_dir, tmp_path, capsys, where):
    typo = {"name": "typo", "configs": [QUICK], "args": ["--model.label_smoothng=0.1"]}
    rows = [{"name": "fine", "configs": [QUICK]}, typo]
    if where == "data":
        typo["args"] = []
    if where == "loss setting":  # parses, but cross-entropy would ignore it (pre-flight)
        typo["args"] = ["--model.focal_gamma=3"]
    path = write_study(tmp_path, synthetic_data_dir, rows)
    if where == "data":  # a study-wide mistake: the first row to run names it
        spec = yaml.safe_load(path.read_text())
        spec["data"]["val_sise"] = 40
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(SystemExit) as info:
        main([str(path)])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and "\n" not in err, err
    row, setting = {"row args": ("typo", "model.label_smoothng"),
                    "data": ("fine", "data.val_sise"),
                    "loss setting": ("typo", "model.focal_gamma")}[where]
    assert err.startswith(f"error: row '{row}': ") and setting in err, err
    assert err.endswith("; no run was started")
    assert not (tmp_path / "out").exists()  # no folder, no extra_args.json, no run


# --- real tiny studies (each run a subprocess of a few seconds) ------------------------

ROWS = [{"name": "quick K=2", "configs": [QUICK]},
        {"name": "K=1 control", "configs": [QUICK, K1]},
        {"name": "broken", "configs": [QUICK], "args": ["--model.net.init_args.num_experts=0"]}]


@pytest.fixture(scope="module")
def finished_study(synthetic_data_dir, tmp_path_factory):
    """A three-row study run once, two runs at a time; the broken row fails."""
    folder = tmp_path_factory.mktemp("study")
    path = write_study(folder, synthetic_data_dir, ROWS)
    code = main([str(path), "--jobs", "2", EXTRA])
    return path, folder / "out", code


def _rows(out: Path) -> dict:
    return {r["name"]: r for r in json.loads((out / "results.json").read_text())["rows"]}


@pytest.mark.slow
def test_study_writes_table_and_json(finished_study):
    _, out, code = finished_study
    rows = _rows(out)
    assert list(rows) == ["quick K=2", "K=1 control", "broken"] and code == 1
    for name in ("quick K=2", "K=1 control"):
        (run,) = rows[name]["runs"]
        assert run["status"] == "ok" and 0.0 <= run["test_acc"] <= 1.0
        assert run["epochs_run"] == 2 and len(run["val_acc_curve"]) == 2
        assert run["val_acc_curve"][run["best_epoch"]] == run["best_val_acc"]
        assert run["train_images"] == 2 * 3 * 16 and run["train_img_per_s"] > 0
        assert run["fit_seconds"] > run["train_seconds"] > 0
        # Relative to the project in results.json; the temporary out folder stays absolute.
        assert "--config=configs/quickstart.yaml" in run["argv"]
        assert "--seed_everything=0" in run["argv"]
        assert run["torch_threads"] == max(1, usable_cores() // 2)
        assert Path(run["best_checkpoint"]).is_file()
        assert Path(run["best_checkpoint"]).is_relative_to(out / "runs")
    routing = rows["quick K=2"]["runs"][0]["routing"]
    for key in ("balance", "mutual_info", "dead_fraction", "entropy", "max_share"):
        assert 0.0 <= routing[f"route/block1/{key}"] <= 1.0, key
    assert rows["K=1 control"]["runs"][0]["routing"] == {}  # K = 1 does not route
    table = (out / "results.md").read_text()
    every = " ".join([*TINY, EXTRA.removeprefix("--arg=")])
    assert f"Every run adds `{every}`." in table  # the study's args are not hidden
    acc = rows["quick K=2"]["runs"][0]["test_acc"] * 100
    assert f"| quick K=2 | {acc:.1f} (1 seed) | 0: {acc:.1f} |" in table
    assert "| quick K=2 | block0 |" in table and "| K=1 control | block" not in table
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == 700 and int.from_bytes(png[20:24], "big") == 400


@pytest.mark.slow
def test_out_folder_keeps_its_args_for_render_and_refuses_others(finished_study, capsys):
    path, out, _ = finished_study
    added = EXTRA.removeprefix("--arg=")
    assert added in _rows(out)["quick K=2"]["runs"][0]["argv"]
    main([str(path), "--render"])  # without --arg: the args the runs were made with
    assert json.loads((out / "results.json").read_text())["args"][-1] == added
    assert f"Every run adds `{' '.join([*TINY, added])}`." in (out / "results.md").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([str(path), "--arg=--trainer.max_epochs=1"])  # would mix runs made otherwise
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and "\n" not in err
    assert err == (f"error: the runs in {out} were made with {added}; give the same --arg, "
                   "or another --out for a study with different args")


@pytest.mark.slow
def test_failing_row_is_one_line_and_the_study_goes_on(finished_study):
    _, out, code = finished_study
    assert code == 1  # the study's exit status says that a run failed
    run = _rows(out)["broken"]["runs"][0]
    assert run["status"] == "failed" and run["error"] == BROKEN_ERROR and run["returncode"] == 2
    assert (Path(run["folder"]) / "error.json").is_file()
    assert not (Path(run["folder"]) / "result.json").exists()
    assert f"| broken | failed: {BROKEN_ERROR} | 0: failed |" in (out / "results.md").read_text()


@pytest.mark.slow
def test_rerun_keeps_finished_runs_and_retries_failed_ones(finished_study, capsys):
    path, out, _ = finished_study
    done = sorted((out / "runs").glob("*/seed0/result.json"))
    assert all((p.parent / "inputs.json").is_file() for p in done)  # compared on resume
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in done}
    failed_log = out / "runs" / "broken" / "seed0" / "stderr.log"
    old_log = failed_log.stat().st_mtime_ns
    assert main([str(path), EXTRA]) == 1
    assert "2 of 3 runs already done, 1 to run" in capsys.readouterr().out
    assert len(done) == 2 and all(
        (p.stat().st_mtime_ns, p.read_bytes()) == before[p] for p in done)
    assert failed_log.stat().st_mtime_ns > old_log  # the failed run ran again


@pytest.mark.slow
def test_killed_study_resumes_without_redoing_finished_runs(synthetic_data_dir, tmp_path,
                                                             capsys):
    path = write_study(tmp_path, synthetic_data_dir, seeds=(0, 1),
                       rows=[{"name": "quick", "configs": [QUICK]}])
    first = tmp_path / "out" / "runs" / "quick" / "seed0" / "result.json"
    proc = subprocess.Popen([sys.executable, "-m", "cifar_moe.study", str(path)],
                            cwd=REPO_ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not first.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the study and the run it had just started
    proc.wait()
    assert first.is_file(), "the first run never finished"
    assert not (tmp_path / "out" / "results.md").exists()  # killed before the end
    stale = tmp_path / "out" / "runs" / "quick" / "seed1" / "stale.txt"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("left by the killed run")
    kept = (first.stat().st_mtime_ns, first.read_bytes())
    assert main([str(path)]) == 0
    printed = capsys.readouterr().out
    assert "1 of 2 runs already done, 1 to run" in printed
    assert re.search(r"^ran 1 run in \d+\.\d min \(1 at a time\)$", printed, re.M), printed
    assert (first.stat().st_mtime_ns, first.read_bytes()) == kept
    assert not stale.exists()  # the half-finished folder was wiped and run again
    assert (stale.parent / "result.json").is_file()
    assert "| quick | " in (tmp_path / "out" / "results.md").read_text()
    assert _rows(tmp_path / "out")["quick"]["aggregate"]["seeds_ok"] == 2
