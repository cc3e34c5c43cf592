"""The trial loop: ``--jobs`` workers each ask Optuna for a trial, run it as a normal CLI
``fit`` in ``<out>/trial-<n>/`` and tell Optuna how it ended.

* The budget (``trials``) counts every trial that ran to an end: complete, pruned or failed.
  Workers in several processes share it through the storage: a trial whose number falls past
  the budget (two workers asked at once) is closed at once, unrun, marked ``surplus``.
* A failed trial is recorded FAIL with its one-line error in the user attribute ``error``;
  the sweep goes on.
* Ctrl-C stops every running trial (each saves its checkpoint), records it as interrupted and
  queues the same parameters again; the next run of the command resumes that trial from its
  ``last.ckpt`` in the same folder. A trial whose process died unseen (kill -9 of the sweep)
  is found RUNNING at the next start (journal storage) or by its missing heartbeat (database)
  and is queued again the same way.
"""

import json
import os
import shutil
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

from cifar_moe.core.atomic_files import host_name
from cifar_moe.runs.study.child import one_line_error, threads_per_run
from cifar_moe.runs.sweep.budget import (
    ERROR,
    FOLDER,
    SURPLUS,
    WORKER,
    counted,
    folder_number,
    requeue,
    retry_stale,
    trials_left,
)
from cifar_moe.runs.sweep.launch import STDERR
from cifar_moe.runs.sweep.reporter import RESULT
from cifar_moe.runs.sweep.spec import Sweep
from cifar_moe.runs.sweep.storage import HEARTBEAT_S, is_database

REPORTER = "cifar_moe.runs.sweep.reporter.TrialReporter"
INTERRUPTED = {130, 143, -2, -15}
"""Exit statuses of a run stopped by Ctrl-C or SIGTERM (the CLI's, or the signal's)."""
POLL_S = 0.5

# Optuna marks the retry and heartbeat helpers used here experimental; they are stable API.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning,
                        module=r"cifar_moe\.runs\.sweep")
# The sweep asks and tells itself (each trial is a process) and beats the heartbeat in _wait.
warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize",
                        UserWarning)


@dataclass
class Context:
    """What the workers of one sweep process share."""

    sweep: Sweep
    study: optuna.Study
    storage: object  # the study's storage, as opened (its heartbeat for a database)
    url: str
    launcher: object
    env: dict
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    errors: list = field(default_factory=list)
    done: list = field(default_factory=list)  # one event per worker, set when it ends

    def say(self, line: str) -> None:
        with self.lock:
            print(line, flush=True)


def trial_command(ctx: Context, number: int, params: dict, folder: Path) -> list[str]:
    """``python -m cifar_moe fit ...`` for one trial: its folder, and the reporter."""
    reporter = {"class_path": REPORTER, "init_args": {
        "storage": ctx.url, "study_name": ctx.sweep.name, "number": number,
        "metric": ctx.sweep.metric, "direction": ctx.sweep.direction,
        "pruner": ctx.sweep.pruner, "result_dir": str(folder)}}
    return [sys.executable, "-m", "cifar_moe", "fit", *ctx.sweep.fit_args(params),
            f"--trainer.default_root_dir={folder}", "--trainer.enable_progress_bar=false",
            f"--trainer.callbacks+={json.dumps(reporter)}"]


def run_trial(ctx: Context, trial: optuna.Trial) -> None:
    root = folder_number(ctx.study, trial.number)
    folder = ctx.sweep.out / f"trial-{root}"
    if root == trial.number and folder.exists():
        shutil.rmtree(folder)  # a new trial starts clean; a retry resumes in its folder
    (folder / RESULT).unlink(missing_ok=True)
    params = {p.key: p.suggest(trial) for p in ctx.sweep.space}
    trial.set_user_attr(FOLDER, folder.name)
    trial.set_user_attr(WORKER, f"{host_name()}:{os.getpid()}")  # who ran it, shared storage
    trial.set_user_attr(ERROR, "")  # a retry copies the interrupted trial's attributes
    resumed = " (resumed)" if root != trial.number else ""
    ctx.say(f"[trial {trial.number}] started{resumed} in {folder.name}: {_shown(params)}")
    handle = ctx.launcher.start(trial_command(ctx, trial.number, params, folder), folder,
                                ctx.env)
    code = _wait(ctx, trial.number, handle)
    _finish(ctx, trial, folder, code, handle.error)


def _wait(ctx: Context, number: int, handle) -> int:
    beat = _heartbeat(ctx, number)
    last = 0.0
    while (code := handle.poll()) is None:
        if ctx.stop.is_set():
            handle.cancel()
        if beat and time.monotonic() - last > HEARTBEAT_S / 2:
            beat()
            last = time.monotonic()
        time.sleep(POLL_S)
    return code


def _heartbeat(ctx: Context, number: int):
    """Tell a database storage that this trial is alive (None for journal storage)."""
    storage = ctx.storage
    if not is_database(ctx.url) or not hasattr(storage, "record_heartbeat"):
        return None
    study_id = storage.get_study_id_from_name(ctx.study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    return lambda: storage.record_heartbeat(trial_id)


def _finish(ctx: Context, trial: optuna.Trial, folder: Path, code: int,
            launch_error: str | None) -> None:
    result = _read_result(folder)
    metric, label = ctx.sweep.metric, f"[trial {trial.number}]"
    if code == 0 and result and result.get("pruned"):
        trial.set_user_attr("pruned_epoch", result.get("pruned_epoch"))
        ctx.study.tell(trial, state=TrialState.PRUNED)
        ctx.say(f"{label} pruned at epoch {result.get('pruned_epoch')}")
    elif code == 0 and result and result.get("value") is not None:
        ctx.study.tell(trial, result["value"])
        ctx.say(f"{label} {metric} {result['value']:.4f}{_best(ctx.study)}")
    elif ctx.stop.is_set() or code in INTERRUPTED:
        requeue(ctx.study, ctx.storage, trial.number, "interrupted; queued again")
        ctx.say(f"{label} interrupted; queued again (the next run resumes it)")
    else:
        error = launch_error or (
            one_line_error((folder / STDERR).read_text(errors="replace"), code) if code
            else f"the run logged no {metric}; check 'metric' in the sweep YAML")
        trial.set_user_attr(ERROR, error)
        ctx.study.tell(trial, state=TrialState.FAIL)
        ctx.say(f"{label} failed: {error}")


def _read_result(folder: Path) -> dict | None:
    try:
        return json.loads((folder / RESULT).read_text())
    except (OSError, ValueError):
        return None


def _best(study: optuna.Study) -> str:
    try:
        best = study.best_trial
    except ValueError:
        return ""
    return f" (best {best.value:.4f}, trial {best.number})"


def _shown(params: dict) -> str:
    return ", ".join(f"{key.rsplit('.', 1)[-1]}={value:.4g}" if isinstance(value, float)
                     else f"{key.rsplit('.', 1)[-1]}={value}" for key, value in params.items())


def worker(ctx: Context, done: threading.Event) -> None:
    """Ask, run, tell until the budget is spent or the sweep is stopped."""
    try:
        while not ctx.stop.is_set():
            fail_stale_trials(ctx.study)  # a database's dead trials: failed, queued again
            if trials_left(ctx.study, ctx.sweep.trials) <= 0:
                return
            trial = ctx.study.ask()
            if trial.number not in counted(ctx.study.get_trials(deepcopy=False))[
                    :ctx.sweep.trials]:
                trial.set_user_attr(SURPLUS, True)
                ctx.study.tell(trial, state=TrialState.FAIL)
                return
            run_trial(ctx, trial)
    except Exception as err:  # a storage or launcher failure: stop the others too
        ctx.errors.append(err)
        ctx.stop.set()
    finally:
        done.set()


def _join(ctx: Context) -> bool:
    """Wait for the workers; a Ctrl-C (anywhere in this loop) stops them: True if one came.

    It polls each worker's ``done`` event with sleeps: a Ctrl-C that lands inside
    ``Thread.join`` can leave the thread reported as ended while it still runs (CPython
    before 3.13), and the sweep would exit under its running trials."""
    interrupted = False
    while True:
        try:
            if all(done.is_set() for done in ctx.done):
                return interrupted
            time.sleep(POLL_S)
        except KeyboardInterrupt:
            interrupted = True
            ctx.stop.set()
            print("stopping: the running trials save a checkpoint and are queued again",
                  file=sys.stderr, flush=True)


def run_sweep(sweep: Sweep, study: optuna.Study, storage, url: str, launcher,
              jobs: int) -> bool:
    """Run the trials still to do, ``jobs`` at a time; True if it was interrupted (Ctrl-C)."""
    if not is_database(url) and Path(url) == sweep.out / "optuna.journal":
        stale = retry_stale(study, storage)
        if stale:
            print(f"{stale} trial(s) of an earlier sweep process that ended were queued "
                  "again", flush=True)
    threads = threads_per_run(jobs) if launcher.name == "local" else None
    ctx = Context(sweep, study, storage, url, launcher, {"OMP_NUM_THREADS": str(threads)}
                  if threads else {})
    left = max(0, trials_left(study, sweep.trials))
    print(f"sweep {sweep.name}: {sweep.trials - left} of {sweep.trials} trials done, {left} "
          f"to run ({jobs} at a time, {launcher.name}) -> {sweep.out}", flush=True)
    ctx.done = [threading.Event() for _ in range(jobs)]
    for done in ctx.done:
        threading.Thread(target=worker, args=(ctx, done), daemon=True).start()
    interrupted = _join(ctx)
    if ctx.errors:
        raise ctx.errors[0]
    return interrupted
