"""What a sweep leaves in its out folder when it ends: ``trials.csv``, ``best.yaml``, the
plots and ``summary.md``. All are rewritten whole (atomically) from the storage each time,
so several sweep processes sharing one study may each write them."""

import csv
import io
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from cifar_moe.core.atomic_files import atomic_write_text
from cifar_moe.runs.sweep.budget import ERROR, FOLDER, SURPLUS, WORKER
from cifar_moe.runs.sweep.plots import write_plots
from cifar_moe.runs.sweep.spec import Sweep

BEST, TRIALS, SUMMARY = "best.yaml", "trials.csv", "summary.md"


def recorded_trials(study: optuna.Study) -> list:
    """Every trial but the surplus ones (closed unrun), in number order."""
    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS)]


def best_trial(study: optuna.Study):
    try:
        return study.best_trial
    except ValueError:  # no completed trial
        return None


def write_trials_csv(sweep: Sweep, trials: list, path: Path) -> None:
    keys = [p.key for p in sweep.space]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["number", "state", sweep.metric, "folder", "seconds", "pruned_epoch",
                     *keys, "worker", "error"])
    for t in trials:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if (
            t.datetime_complete and t.datetime_start) else ""
        writer.writerow([t.number, t.state.name.lower(), "" if t.value is None else t.value,
                         t.user_attrs.get(FOLDER, ""), f"{seconds:.1f}" if seconds else "",
                         t.user_attrs.get("pruned_epoch", ""),
                         *(t.params.get(k, "") for k in keys), t.user_attrs.get(WORKER, ""),
                         t.user_attrs.get(ERROR, "")])
    atomic_write_text(path, buffer.getvalue())


def write_best_yaml(sweep: Sweep, best, print_config: Callable[[list[str]], str | None],
                    argument_problem: Callable[[list[str]], str | None]) -> str | None:
    """``best.yaml``: the CLI's own full config for the best trial (base configs, fixed
    settings, its params, ``--arg``), checked by parsing it back; None when it parses, else
    the problem."""
    path = sweep.out / BEST
    text = print_config(["fit", *sweep.fit_args(best.params)])
    if text is None:
        return "the CLI could not print the best trial's config"
    head = (f"# Best trial {best.number} of sweep {sweep.name}: {sweep.metric} {best.value:.4f}"
            f" (run folder {sweep.out / best.user_attrs.get(FOLDER, '')})\n"
            f"#   python -m cifar_moe fit --config {path}\n")
    atomic_write_text(path, head + text)
    return argument_problem(["fit", f"--config={path}"])


def write_outputs(sweep: Sweep, study: optuna.Study, storage_shown: str,
                  print_config: Callable[[list[str]], str | None],
                  argument_problem: Callable[[list[str]], str | None]) -> Path:
    """Write every output; the summary's path."""
    sweep.out.mkdir(parents=True, exist_ok=True)
    trials = recorded_trials(study)
    write_trials_csv(sweep, trials, sweep.out / TRIALS)
    best = best_trial(study)
    problem = write_best_yaml(sweep, best, print_config, argument_problem) if best else None
    plots = write_plots(study, sweep.out)
    text = summary(sweep, trials, best, problem, plots, storage_shown)
    atomic_write_text(sweep.out / SUMMARY, text)
    return sweep.out / SUMMARY


def summary(sweep: Sweep, trials: list, best, problem: str | None, plots: dict,
            storage_shown: str) -> str:
    states = {s: sum(t.state == s for t in trials) for s in TrialState}
    counts = ", ".join(f"{n} {s.name.lower()}" for s, n in states.items() if n)
    lines = [f"# Sweep {sweep.name}", "",
             f"- sweep file: `{sweep.path}`; study `{sweep.name}` in `{storage_shown}`",
             f"- objective: {sweep.direction} the best `{sweep.metric}` of each run",
             f"- trials: {len(trials)} recorded of a budget of {sweep.trials} ({counts or 'none'})",
             f"- sampler: {sweep.sampler}; pruner: {sweep.pruner}", ""]
    if best is None:
        lines += ["No trial has completed, so there is no best.yaml yet.", ""]
    else:
        lines += [f"## Best: trial {best.number}, {sweep.metric} {best.value:.4f}", "",
                  "| setting | value |", "|---|---|",
                  *(f"| `{k}` | {v:.6g} |" if isinstance(v, float) else f"| `{k}` | {v} |"
                    for k, v in best.params.items()), "",
                  f"Reproduce: `python -m cifar_moe fit --config {sweep.out / BEST}`"
                  + (f" (warning: the CLI refuses it: {problem})" if problem else ""), ""]
    lines += ["## Plots", "", *(f"- {name}: {note}" for name, note in plots.items()), ""]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if failed:
        lines += ["## Failed trials", "",
                  *(f"- trial {t.number}: {t.user_attrs.get(ERROR) or 'no error recorded'}"
                    for t in failed), ""]
    lines += [f"Every trial: `{TRIALS}`; curves: `tensorboard --logdir {sweep.out}`", ""]
    return "\n".join(lines)
