"""Sweep processes sharing one study: two ``python -m cifar_moe.sweep`` workers on a real
PostgreSQL server (``pgserver`` starts one from pip, no root), and a resumed sweep that does
not repeat its seeded draws."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_sweep import as_args, tiny_settings, write_sweep

from cifar_moe.runs.sweep.budget import FOLDER, SURPLUS, WORKER, counted
from cifar_moe.runs.sweep.reporter import RESULT
from cifar_moe.runs.sweep.spec import load_sweep
from cifar_moe.runs.sweep.storage import open_storage, open_study, storage_url

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A throwaway PostgreSQL server; skipped, saying why, only if none can start."""
    try:
        import pgserver
    except ImportError as err:
        pytest.skip(f"no PostgreSQL server: pgserver is not installed ({err}); "
                    "pip install -e '.[dev]'")
    folder = tmp_path_factory.mktemp("pg")
    try:
        server = pgserver.get_server(folder, cleanup_mode="stop")
    except Exception as err:  # its initdb/pg_ctl failures have no common base
        pytest.skip(f"no PostgreSQL server: pgserver could not start one in {folder} "
                    f"({' '.join(str(err).split())[:300]})")
    yield server
    server.cleanup()


def new_database(server, name: str) -> str:
    """The URL of a new, empty database on ``server``."""
    server.psql(f"CREATE DATABASE {name};")
    head, _, query = server.get_uri().partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}?{query}"


def test_workers_starting_together_on_a_new_database_all_open_it(postgres):
    url = new_database(postgres, "together")
    opened, failed = [], []

    def open_it() -> None:
        try:
            opened.append(open_storage(url, heartbeat=True))
        except Exception as err:  # the race this guards against: a duplicate CREATE TYPE
            failed.append(err)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failed and len(opened) == 4


@pytest.mark.slow
def test_two_sweep_processes_split_one_postgres_study(postgres, synthetic_data_dir, tmp_path):
    postgres_url = new_database(postgres, "shared")
    budget = 4
    # a seeded sampler: each process moves the seed, so the two never draw the same values
    path = write_sweep(tmp_path, trials=budget, name="shared",
                       sampler={"name": "random", "seed": 0})
    command = [sys.executable, "-m", "cifar_moe.sweep", str(path), "--storage", postgres_url,
               *as_args(tiny_settings(synthetic_data_dir))]
    workers = [subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]

    study = optuna.load_study(study_name="shared", storage=open_storage(postgres_url))
    trials = study.get_trials()
    run = [t for t in trials if not t.user_attrs.get(SURPLUS)]
    assert counted(trials) == [t.number for t in run] == list(range(budget))  # none lost
    assert all(t.state == TrialState.COMPLETE for t in run)
    # each trial ran once, in its own folder, and its value is its own run's
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("trial-*")) == sorted(
        f"trial-{t.number}" for t in run)
    for t in run:
        assert t.user_attrs[FOLDER] == f"trial-{t.number}"
        result = json.loads((out / t.user_attrs[FOLDER] / RESULT).read_text())
        assert result["value"] == pytest.approx(t.value)
    # both processes ran trials, and no two trials drew the same setting
    pids = {str(w.pid) for w in workers}
    assert {t.user_attrs[WORKER].rsplit(":", 1)[1] for t in run} == pids
    values = [t.params["model.label_smoothing"] for t in run]
    assert len(set(values)) == budget
    # surplus asks (both workers asked for the last trial) were closed unrun
    assert all(t.state == TrialState.FAIL for t in trials if t.user_attrs.get(SURPLUS))
    for text, err in outputs:
        assert "best: trial" in text and "Warning" not in err


def test_a_resumed_sweep_does_not_repeat_its_seeded_draws(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, sampler={"name": "random", "seed": 0}))
    url = storage_url(None, sweep.out)
    storage = open_storage(url)
    first = open_study(sweep, storage, url)
    drawn = []
    for _ in range(2):
        trial = first.ask()
        drawn.append(trial.suggest_float("x", 0, 1))
        first.tell(trial, 0.5)
    fresh = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    assert fresh.ask().suggest_float("x", 0, 1) == drawn[0]  # a fresh sweep keeps its seed
    resumed = open_study(sweep, storage, url)  # the second run of the same command
    assert resumed.ask().suggest_float("x", 0, 1) not in drawn
