"""Runs every (row, fold, seed) of a study in its own subprocess (or submitit job,
``submit.py``), resuming what exists.

Folder of a run: ``<out>/runs/<row-slug>/seed<k>/`` (``fold<f>-seed<k>/`` in a fold study).
``result.json`` there means done (never redone); ``error.json`` means failed (retried, like
any folder without ``result.json``, which is wiped first so that a run always starts clean).
Before it is wiped a folder is locked, and its child keeps that lock for life, so a re-run
after ``kill -9`` of the study waits for (or refuses) a child still writing there.
"""

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cifar_moe.core.constants import BATCH_FOLDER, TARBALL, TRAIN_BATCHES
from cifar_moe.core.errors import UserError
from cifar_moe.data.download import ensure_cifar10
from cifar_moe.runs.study import child, submit
from cifar_moe.runs.study.inputs import recorded_inputs, what_changed
from cifar_moe.runs.study.lock import hold_run_folder
from cifar_moe.runs.study.plan import RESULT, Run, fit_args, inputs_of, plan, scores_test
from cifar_moe.runs.study.recorder import fit_argv
from cifar_moe.runs.study.spec import Row, Study


def _untested(study: Study, run: Run) -> str | None:
    """Why a finished run cannot serve a study that compares test accuracy: it was made
    without scoring the test images (by the same study before its metric became test_acc)."""
    if not scores_test(study):
        return None
    try:
        result = json.loads((run.folder / RESULT).read_text())
    except (OSError, ValueError):
        return None  # unreadable: the report shows it as it is
    # Only an explicit null: records without the key predate --no-test and were tested.
    if isinstance(result, dict) and "test_acc" in result and result["test_acc"] is None:
        return "it was run without scoring the test images, for a metric other than test_acc"
    return None


def check_finished_runs(study: Study, rows: list[Row]) -> None:
    """Refuse to resume when a finished run of ``rows`` was made from other inputs, or
    lacks the test accuracy the study now compares: keeping it would mix two recipes (or a
    row with holes) in one row."""
    stale = []
    for run in (run for run in plan(study) if run.row in rows):
        if not (run.folder / RESULT).is_file():
            continue
        recorded = recorded_inputs(run.folder)
        changed = ((recorded is not None and what_changed(recorded, inputs_of(study, run)))
                   or _untested(study, run))
        stale += [(run, changed)] if changed else []
    if stale:
        run, changed = stale[0]
        raise UserError(
            f"{len(stale)} finished run{'s' * (len(stale) != 1)} in {study.out} "
            f"{'were' if len(stale) != 1 else 'was'} made from other inputs "
            f"({run.row.name}, {run.label}: {changed}); give another --out, or move "
            "those run folders away to run them again")


def check_data_dir(study: Study) -> None:
    """The study's ``data_dir``, checked once before any run: a typo there would otherwise
    fail every run in turn, each after a download attempt into a new, empty folder."""
    if "data_dir" not in study.data:
        return  # the configs' own data_dir: each run reads and checks it
    folder = Path(study.data["data_dir"])  # absolute: load_study resolved it
    where = f"{study.path.name} data data_dir"
    if (folder / BATCH_FOLDER).is_dir():
        return
    if folder.name == BATCH_FOLDER or (folder / TRAIN_BATCHES[0]).is_file():
        raise UserError(f"{where}: {folder} is the batch folder itself; give the folder that "
                        f"holds it, {folder.parent}")
    if not folder.is_dir():
        raise UserError(f"{where}: {folder} does not exist; fix the path (a relative one "
                        f"resolves against the current folder, {Path.cwd()})")
    if study.data.get("download") is False and not (folder / TARBALL).is_file():
        raise UserError(f"{where}: {folder} has no {BATCH_FOLDER}/ and data.download is "
                        f"false; put {TARBALL} or the extracted {BATCH_FOLDER}/ there")
    # The folder exists without the batches: extract or download them once, here, rather
    # than in every run (two runs side by side would race for the same folder).
    print(f"{folder} has no {BATCH_FOLDER}/: getting it once, before the runs", flush=True)
    ensure_cifar10(folder, download=study.data.get("download", True))


def check_row_arguments(study: Study, rows: list[Row],
                        argument_problem: Callable[[list[str]], str | None]) -> None:
    """Stop before anything is written when the CLI would refuse a row's arguments (a
    mistyped setting or value), rather than fail each of its runs in turn.

    ``argument_problem(argv)`` is the CLI's own check (``cifar_moe.cli.argument_problem``),
    passed in by the study command: the runner sits below the CLI and never imports it."""

    first_todo = {}  # row -> its first run still to do (every seed and fold parses alike)
    for run in plan(study):
        if run.row in rows and not (run.folder / RESULT).is_file():
            first_todo.setdefault(run.row.name, run)
    for run in first_todo.values():
        problem = argument_problem(fit_argv(run.folder, fit_args(study, run)))
        if problem:
            raise UserError(f"row {run.row.name!r}: {problem}; no run was started")


def pick_rows(study: Study, names: list[str]) -> list[Row]:
    """The rows named (by name or folder name) by ``--row``; all rows when none is given."""
    known = {key: row for row in study.rows for key in (row.name, row.slug)}
    unknown = [name for name in names if name not in known]
    if unknown:
        listed = ", ".join(repr(row.name) for row in study.rows)
        raise UserError(f"--row {unknown[0]!r} is not a row of {study.path.name}; "
                        f"use one of {listed}")
    return [known[name] for name in names] if names else list(study.rows)


def pick_folds(runs: list[Run], folds: list[int] | None) -> list[Run]:
    """The runs on ``folds`` (``--folds``); all runs when None."""
    return runs if folds is None else [run for run in runs if run.fold in folds]


def _waiting(run: Run) -> Callable[[], None]:
    return lambda: print(f"waiting for {run.folder}: a run of an earlier study process "
                         "still holds it", flush=True)


def wait_for_free_folders(runs: list[Run]) -> None:
    """Before any run starts: every folder to be (re)run is free, or becomes free within
    the wait (a killed study's child stops within about a second), or the study stops."""
    for run in runs:
        if run.lock_path.is_file():  # only a folder that was ever run can be held
            hold_run_folder(run.lock_path, run.folder, on_wait=_waiting(run)).close()


def _describe(study: Study, run: Run, error: dict | None) -> str:
    if error is not None:
        return f"failed: {error['error']}"
    result = json.loads((run.folder / RESULT).read_text())
    # The study's metric: a run that did not score the test images has no test acc to show.
    metric = study.primary_metric
    value = result.get(metric)
    shown = "-" if value is None else f"{value * 100:.1f}%"
    return f"{metric.replace('_', ' ')} {shown} (fit {result['fit_seconds']:.0f} s)"


def _start(study: Study, rows: list[Row] | None, folds: list[int] | None,
           how: str) -> tuple[list[Run], list[Run]]:
    """The runs asked for and those still to do (their folders free by now), in one line."""
    runs = pick_folds([run for run in plan(study) if rows is None or run.row in rows], folds)
    todo = [run for run in runs if not (run.folder / RESULT).is_file()]
    child.start_of_study()
    wait_for_free_folders(todo)
    if todo:  # the data's hash once, before N threads would each compute it at once
        inputs_of(study, todo[0])
    print(f"study {study.path.name}: {len(runs) - len(todo)} of {len(runs)} runs "
          f"already done, {len(todo)} to run ({how}) -> {study.out}", flush=True)
    return runs, todo


def _in_pool(one, todo: list[Run], runs: list[Run], jobs: int, in_flight: dict) -> None:
    """``one(index, run)`` for each run to do, ``jobs`` at a time; on SIGTERM the running
    children are stopped and :class:`child.Stopped` says which runs it interrupted."""
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        for future in [pool.submit(one, i, run) for i, run in enumerate(todo, 1)]:
            future.result()
    except child.Stopped as stop:
        stop.in_flight = list(in_flight.values())  # before the children end and leave the list
        stop.done = sum((run.folder / RESULT).is_file() for run in runs)
        stop.total = len(runs)
        child.stop_children()
        raise
    except KeyboardInterrupt:  # local children got the terminal's SIGINT; jobs did not
        child.cancel_jobs()
        raise
    finally:
        # On Ctrl-C start nothing new; the running children got the same SIGINT.
        pool.shutdown(wait=True, cancel_futures=True)


def run_study(study: Study, jobs: int = 1, rows: list[Row] | None = None,
              folds: list[int] | None = None, launcher=None) -> int:
    """Run what is not done yet of ``rows`` (default: all) on ``folds`` (default: all),
    ``jobs`` at a time, as local children or, given a submitit ``launcher``, as its jobs;
    the number of runs that failed. On SIGTERM (:class:`child.Stopped` raised by the
    caller's handler) the running children are stopped too, and ``Stopped`` carries
    ``in_flight`` (the runs it interrupted) and ``done`` / ``total``."""
    runs, todo = _start(study, rows, folds, f"{jobs} at a time" + (
        f", {launcher.name} jobs" if launcher is not None else ""))
    total, lock, failed, in_flight = len(todo), threading.Lock(), [], {}  # index -> run
    threads = child.threads_per_run(jobs)  # a job's cores are its --cpus instead

    def one(index: int, run: Run) -> None:
        label = f"[{index}/{total}] {run.row.name}, {run.label}"
        with lock:
            in_flight[index] = run
            print(f"{label}: started", flush=True)
        error = (child.execute(study, run, threads, _waiting(run)) if launcher is None
                 else submit.execute_job(study, run, launcher, _waiting(run)))
        with lock:
            in_flight.pop(index, None)
            if error and error.get("interrupted"):
                return
            failed.extend([run] if error else [])
            print(f"{label}: {_describe(study, run, error)}", flush=True)

    start = time.perf_counter()
    _in_pool(one, todo, runs, jobs, in_flight)
    # The study's budget is wall time: this line measures it (for the runs it ran).
    print(f"ran {total} run{'s' * (total != 1)} in {(time.perf_counter() - start) / 60:.1f} min "
          f"({jobs} at a time)", flush=True)
    return len(failed)
