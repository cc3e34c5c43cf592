"""Run a hyperparameter sweep on Optuna: each trial a normal ``fit`` in ``<out>/trial-<n>/``.

    python -m cifar_moe.sweep configs/sweeps/slice_lr_wd.yaml                 # run or resume
    python -m cifar_moe.sweep configs/sweeps/slice_lr_wd.yaml --trials 40 --jobs 2
    python -m cifar_moe.sweep SWEEP.yaml --arg trainer.max_epochs=1           # every trial
    python -m cifar_moe.sweep SWEEP.yaml --storage postgresql://u:p@db/optuna  # many machines
    python -m cifar_moe.sweep SWEEP.yaml --launcher slurm --gpus 1 --cpus 8 --time 120 \
        --partition gpu --arg trainer.accelerator=gpu                         # SLURM jobs
    python -m cifar_moe.sweep SWEEP.yaml --render        # only rewrite the outputs

The sweep YAML is described in ``cifar_moe/runs/sweep/spec.py`` and docs/sweeps.md.
Running the same command again resumes from the storage (default: ``<out>/optuna.journal``);
Ctrl-C stops the running trials, each saving a checkpoint, and the next run resumes them.
Outputs in ``<out>``: ``best.yaml`` (``python -m cifar_moe fit --config best.yaml``),
``trials.csv``, the plots and ``summary.md``. Exit status: 0 when there is a best trial,
1 when no trial completed, 130 after Ctrl-C, 2 for a bad sweep YAML or option (one line).
"""

import argparse
import contextlib
import io
import sys
import warnings

from optuna.exceptions import ExperimentalWarning

from cifar_moe.cli.main import argument_problem, cli_main
from cifar_moe.core.errors import UserError
from cifar_moe.runs.sweep.checks import check_arguments, check_out_folder, hold_out_folder
from cifar_moe.runs.sweep.engine import run_sweep
from cifar_moe.runs.sweep.launch import add_launch_options, launch_flags, launcher_for
from cifar_moe.runs.sweep.outputs import best_trial, write_outputs
from cifar_moe.runs.sweep.spec import load_sweep
from cifar_moe.runs.sweep.storage import (
    is_database,
    open_storage,
    open_study,
    shown_url,
    storage_url,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cifar_moe.sweep",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("sweep", help="the sweep YAML")
    parser.add_argument("--trials", type=int, default=None, help="the budget (overrides YAML)")
    parser.add_argument("--out", default=None, help="results folder (overrides the YAML)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trials side by side (local: each gets cores // jobs threads)")
    parser.add_argument("--storage", default=None,
                        help="Optuna storage: a database URL (postgresql://...) shared by "
                             "several sweep processes, or a journal file path (default "
                             "<out>/optuna.journal)")
    parser.add_argument("--arg", action="append", default=[], dest="extra", metavar="KEY=VALUE",
                        help="repeatable: a setting for every trial, e.g. trainer.max_epochs=1")
    add_launch_options(parser, "trials")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite best.yaml, trials.csv, plots and summary.md")
    return parser


def print_config(args: list[str]) -> str | None:
    """The CLI's full config for ``args`` (``--print_config``), or None if it refuses them."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "LightningCLI's args parameter is intended")
        try:
            cli_main([*args, "--print_config"])
        except SystemExit as stop:
            if stop.code not in (0, None):
                return None
    return buffer.getvalue() or None


def main(argv: list[str] | None = None) -> int:
    """The command; returns the exit status (bad input exits 2 after one ``error:`` line)."""
    opts = _parser().parse_args(argv)
    # Optuna marks the retry and heartbeat helpers the sweep relies on as experimental.
    warnings.filterwarnings("ignore", category=ExperimentalWarning)
    with contextlib.ExitStack() as held:
        try:
            if opts.jobs < 1:
                raise UserError(f"--jobs {opts.jobs}: use 1 or more")
            sweep = load_sweep(opts.sweep, opts.out, opts.trials, opts.extra, launch_flags(opts))
            url = storage_url(opts.storage, sweep.out)
            if not opts.render:
                check_arguments(sweep, argument_problem)
                if not is_database(url):
                    held.enter_context(hold_out_folder(sweep.out))
            storage = open_storage(url, heartbeat=True)
            study = open_study(sweep, storage, url)
            if not opts.render:
                check_out_folder(sweep, study)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        interrupted = False
        if not opts.render:
            try:
                interrupted = run_sweep(sweep, study, storage, url,
                                        launcher_for(sweep.launch), opts.jobs)
            except KeyboardInterrupt:  # a second Ctrl-C: the storage holds what finished
                interrupted = True
        return _report(sweep, study, url, interrupted)


def _report(sweep, study, url: str, interrupted: bool) -> int:
    summary = write_outputs(sweep, study, shown_url(url), print_config, argument_problem)
    best = best_trial(study)
    if best is not None:
        print(f"best: trial {best.number}, {sweep.metric} {best.value:.4f} -> "
              f"{sweep.out / 'best.yaml'}", flush=True)
    print(f"wrote {summary}, trials.csv and the plots", flush=True)
    if interrupted:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0 if best is not None else 1


if __name__ == "__main__":
    sys.exit(main())
