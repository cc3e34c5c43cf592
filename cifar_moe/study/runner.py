"""Runs every (row, seed) of a study in its own subprocess, resuming what exists.

Folder of a run: ``<out>/runs/<row-slug>/seed<k>/``. ``result.json`` there means done (never
redone); ``error.json`` means failed (retried, like any folder without ``result.json``,
which is wiped first so that a run always starts clean).
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cifar_moe.errors import UserError
from cifar_moe.study.child import fit_argv, write_json_atomic
from cifar_moe.study.inputs import INPUTS, recorded_inputs, run_inputs, what_changed
from cifar_moe.study.spec import Row, Study

RESULT, ERROR, STDOUT, STDERR = "result.json", "error.json", "stdout.log", "stderr.log"
EXTRA_ARGS = "extra_args.json"
"""In ``<out>``: the ``--arg`` list the study's runs got, so ``--render`` alone can list it."""


@dataclass(frozen=True)
class Run:
    """One cell of the table: a row at a seed, and its folder."""

    row: Row
    seed: int
    folder: Path


def settle_extra_args(out: Path, given: list[str], render: bool) -> list[str]:
    """The ``--arg`` list to use for ``out``: the given one, or for ``--render`` without
    ``--arg`` the recorded one. Runs made with other args are never mixed into a folder."""
    path = out / EXTRA_ARGS
    recorded = _recorded_extra_args(path)
    if render and not given:
        return recorded or []
    # Any run that did not fail (finished, or maybe running in another process) holds the
    # folder to its args; a mistyped --arg whose runs all failed is corrected by running
    # again with the right one.
    if recorded is not None and recorded != given and _runs_not_failed(out):
        shown = " ".join(recorded) or "no --arg"
        raise UserError(f"the runs in {out} were made with {shown}; give the same --arg, "
                        "or another --out for a study with different args")
    if not render:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"extra_args": given})
    return given


def _runs_not_failed(out: Path) -> bool:
    return any(f.is_dir() and not (f / ERROR).is_file() for f in out.glob("runs/*/seed*"))


def _recorded_extra_args(path: Path) -> list[str] | None:
    """The recorded ``--arg`` list; None where there is none yet."""
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text())["extra_args"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    if not isinstance(recorded, list):
        raise UserError(f"{path} is unreadable; delete it, then give the --arg list the "
                        "study's runs were made with")
    return recorded


def run_folder(study: Study, row: Row, seed: int) -> Path:
    return study.out / "runs" / row.slug / f"seed{seed}"


def plan(study: Study) -> list[Run]:
    """Every run, seed by seed, so that an interrupted study has whole seeds of all rows."""
    # The study's seeds in their order, then seeds that only some rows name.
    seeds = list(dict.fromkeys([*study.seeds, *(s for row in study.rows for s in row.seeds)]))
    return [Run(row, seed, run_folder(study, row, seed))
            for seed in seeds for row in study.rows if seed in row.seeds]


def inputs_of(study: Study, run: Run) -> dict:
    """What ``run`` is made from now (compared with what a finished run recorded)."""
    return run_inputs(run.row.configs, study.data, [*study.args, *run.row.args], run.seed)


def check_finished_runs(study: Study, rows: list[Row]) -> None:
    """Refuse to resume when a finished run of ``rows`` was made from other inputs: keeping
    it would mix two recipes in one row."""
    stale = []
    for run in (run for run in plan(study) if run.row in rows):
        recorded = recorded_inputs(run.folder)
        if recorded is not None and (run.folder / RESULT).is_file():
            changed = what_changed(recorded, inputs_of(study, run))
            stale += [(run, changed)] if changed else []
    if stale:
        run, changed = stale[0]
        raise UserError(
            f"{len(stale)} finished run{'s' * (len(stale) != 1)} in {study.out} "
            f"{'were' if len(stale) != 1 else 'was'} made from other inputs "
            f"({run.row.name}, seed {run.seed}: {changed}); give another --out, or move "
            "those run folders away to run them again")


def fit_args(study: Study, run: Run) -> list[str]:
    """The run's ``fit`` arguments: configs first (later args override them), forced last."""
    return [*(f"--config={c}" for c in run.row.configs), *study.data_args(), *study.args,
            *run.row.args, f"--seed_everything={run.seed}", "--trainer.enable_progress_bar=false"]


def child_command(study: Study, run: Run, threads: int | None) -> list[str]:
    """The child's full argv: its own options, then the run's ``fit`` arguments."""
    thread_args = ["--threads", str(threads)] if threads else []
    return [sys.executable, "-m", "cifar_moe.study.child", "--run-dir", str(run.folder),
            *thread_args, "--", *fit_args(study, run)]


def check_row_arguments(study: Study, rows: list[Row]) -> None:
    """Stop before anything is written when the CLI would refuse a row's arguments (a
    mistyped setting or value), rather than fail each of its runs in turn."""
    from cifar_moe.cli import argument_problem  # torch and Lightning: only when runs are due

    first_todo = {}  # row -> its first run still to do (every seed parses alike)
    for run in plan(study):
        if run.row in rows and not (run.folder / RESULT).is_file():
            first_todo.setdefault(run.row.name, run)
    for run in first_todo.values():
        problem = argument_problem(fit_argv(run.folder, fit_args(study, run)))
        if problem:
            raise UserError(f"row {run.row.name!r}: {problem}; no run was started")


def one_line_error(stderr: str, returncode: int) -> str:
    """The last ``error: ...`` line, else the signal that killed the run (its last output
    line is then whatever it was printing), else the last non-empty line, else the status."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if errors:
        return errors[-1][len("error:"):].strip()
    if returncode < 0:
        return f"killed by signal {-returncode}"
    if lines:
        return lines[-1][:400]
    return f"exit code {returncode} without a message"


def threads_per_run(jobs: int) -> int | None:
    """Torch threads per child when runs share the cores; None (torch's default) for one."""
    return max(1, usable_cores() // jobs) if jobs > 1 else None


def usable_cores() -> int:
    """The cores this process may run on (``taskset``, a container's cpuset), not the host's."""
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def execute(study: Study, run: Run, threads: int | None) -> dict | None:
    """Run one cell from a clean folder; None when it succeeded, else its error record."""
    if run.folder.exists():
        shutil.rmtree(run.folder)
    run.folder.mkdir(parents=True)
    write_json_atomic(run.folder / INPUTS, inputs_of(study, run))
    cmd = child_command(study, run, threads)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
    with open(run.folder / STDOUT, "w") as out, open(run.folder / STDERR, "w") as err:
        code = subprocess.run(cmd, stdout=out, stderr=err, env=env).returncode
    if code == 0 and (run.folder / RESULT).is_file():
        return None
    message = one_line_error((run.folder / STDERR).read_text(errors="replace"), code)
    record = {"error": message, "returncode": code, "argv": cmd}
    write_json_atomic(run.folder / ERROR, record)
    return record


def _describe(run: Run, error: dict | None) -> str:
    if error is not None:
        return f"failed: {error['error']}"
    result = json.loads((run.folder / RESULT).read_text())
    return f"test acc {result['test_acc'] * 100:.1f}% (fit {result['fit_seconds']:.0f} s)"


def pick_rows(study: Study, names: list[str]) -> list[Row]:
    """The rows named (by name or folder name) by ``--row``; all rows when none is given."""
    known = {key: row for row in study.rows for key in (row.name, row.slug)}
    unknown = [name for name in names if name not in known]
    if unknown:
        listed = ", ".join(repr(row.name) for row in study.rows)
        raise UserError(f"--row {unknown[0]!r} is not a row of {study.path.name}; "
                        f"use one of {listed}")
    return [known[name] for name in names] if names else list(study.rows)


def run_study(study: Study, jobs: int = 1, rows: list[Row] | None = None) -> int:
    """Run what is not done yet of ``rows`` (default: all), ``jobs`` at a time; the number
    of runs that failed."""
    runs = [run for run in plan(study) if rows is None or run.row in rows]
    todo = [run for run in runs if not (run.folder / RESULT).is_file()]
    if todo:  # the data's hash once, before N threads would each compute it at once
        inputs_of(study, todo[0])
    total, lock, failed = len(todo), threading.Lock(), []
    threads = threads_per_run(jobs)
    print(f"study {study.path.name}: {len(runs) - total} of {len(runs)} runs "
          f"already done, {total} to run ({jobs} at a time) -> {study.out}", flush=True)

    def one(index: int, run: Run) -> None:
        label = f"[{index}/{total}] {run.row.name}, seed {run.seed}"
        with lock:
            print(f"{label}: started", flush=True)
        error = execute(study, run, threads)
        with lock:
            failed.extend([run] if error else [])
            print(f"{label}: {_describe(run, error)}", flush=True)

    start, pool = time.perf_counter(), ThreadPoolExecutor(max_workers=jobs)
    try:
        for future in [pool.submit(one, i, run) for i, run in enumerate(todo, 1)]:
            future.result()
    finally:
        # On Ctrl-C start nothing new; the running children got the same SIGINT.
        pool.shutdown(wait=True, cancel_futures=True)
    # The study's budget is wall time: this line measures it (for the runs it ran).
    print(f"ran {total} run{'s' * (total != 1)} in {(time.perf_counter() - start) / 60:.1f} min "
          f"({jobs} at a time)", flush=True)
    return len(failed)
