"""Run a study: every row of a YAML at every seed, each run in its own process, one table.

    python -m cifar_moe.study configs/studies/slice.yaml            # run (or resume) it
    python -m cifar_moe.study configs/studies/slice.yaml --jobs 2   # two runs side by side
    python -m cifar_moe.study configs/studies/slice.yaml --render   # tables/figure only
    python -m cifar_moe.study configs/studies/slice.yaml --row k-1-control-same-network-static
    python -m cifar_moe.study configs/studies/slice.yaml --out lightning_logs/studies/gpu \
        --arg=--trainer.accelerator=gpu                             # same study, on a GPU
    python -m cifar_moe.study STUDY.yaml --jobs 8 --launcher slurm --gpus 1 --cpus 8 \
        --time 120 --partition gpu --arg=--trainer.accelerator=gpu  # each run a SLURM job

The study YAML (relative paths resolve against the current folder, the repo root)::

    data: {data_dir: ../shared/data/cifar-10-mini, val_size: 500}   # --data.<key>=<value>
    seeds: [0, 1, 2]
    folds: [0, 1, 2]                         # optional: validation folds (--data.val_fold)
    out: lightning_logs/studies/slice        # optional; default lightning_logs/studies/<stem>
    args: ["--trainer.max_epochs=3"]         # optional; added to every run (so is --arg)
    metric: final_val_acc                    # optional: final_val_acc, best_val_acc, test_acc
    reference: K=1 control                   # optional: rows are compared with this row
    primary: focal + OneCycle (seed B, K=4)  # optional: the one uncorrected comparison
    launcher: {name: slurm, gpus: 1, cpus: 8, time: 120, partition: gpu}  # optional; flags win
    rows:
      - name: focal + OneCycle (seed B, K=4)
        configs: [configs/focal_onecycle.yaml]
        args: []                             # optional; after the study's args
        seeds: [0]                           # optional; overrides the study's seeds
        folds: [0, 1]                        # optional; overrides the study's folds
      - name: K=1 control
        configs: [configs/focal_onecycle.yaml, configs/controls/k1.yaml]

Each run (row x fold x seed) is ``fit`` then ``test`` of its best-val/acc checkpoint, in a
subprocess (``cifar_moe.cli.study_child``) with its own folder ``<out>/runs/<row>/seed<k>/``,
or ``fold<f>-seed<k>/`` in a fold study (trainer root, ``stdout.log``, ``stderr.log``, then
``result.json`` or ``error.json``). Only a study whose metric is ``test_acc`` (a split study's
default) tests its runs: the protocols score the test images once per adopted recipe, never
per run, so any other study's runs (every fold study's, by default) skip ``test``
(``--no-test`` to the child, ``test_acc: null`` in ``result.json``), and its tables and
progress lines show its metric instead. Runs made before that, which did test, are kept;
finished runs without a test accuracy stop a study whose metric became ``test_acc``.

A run that crashes is recorded as failed with its one-line error; the study goes on. A row
whose arguments the CLI refuses (a mistyped setting or value), or a study whose data_dir
does not exist, stops the study with one line before any run starts.

A fold study's table leads with statistics of its metric (default ``final_val_acc``): per
row the mean and 95 % CI, and the paired difference to ``reference`` over the (fold, seed)
pairs both rows ran, with its CI, p and Holm-corrected p (``cifar_moe/runs/study/stats.py``).
``--folds 7,8,9`` reports only those folds, into ``results_folds7-9.md`` / ``.json``.

Resume: running the same command again never redoes a run that has ``result.json``;
half-finished runs (after a kill) and failed runs are wiped and run again. A finished run
whose recipe files or overrides changed since (``inputs.json`` in its folder) stops the
study with one line instead of being kept beside runs of the new recipe. A run folder still
held by a run of a killed study process is waited for, then refused in one line. SIGTERM
stops the running runs too and exits 143 with one line on how to resume.

``--launcher slurm`` (or ``submitit-local``, the same jobs on this machine) runs each run as
a submitit job, with ``--gpus --cpus --time --mem-gb --partition`` (or the YAML's
``launcher:``); its logs are also in ``submitit/`` of its folder. A preempted job is
requeued, and a stopped job's folder is kept: its next job resumes from its ``last.ckpt``.

Outputs in ``<out>``: ``results.json`` (every number of every run, row aggregates),
``results.md`` (tables), ``curves.png`` (val acc per epoch per row), with paths relative to
the project. ``--render`` of a folder without run folders (a committed study) keeps its
files as they are. Exit status: 0 when every run finished, 1 when some failed, 2 for a bad
study YAML or option (one line), 130 / 143 when interrupted.
"""

import argparse
import contextlib
import signal
import sys

from cifar_moe.cli.main import argument_problem
from cifar_moe.core.errors import UserError
from cifar_moe.runs.study.child import Stopped
from cifar_moe.runs.study.extra_args import settle_extra_args
from cifar_moe.runs.study.lock import hold_out_folder
from cifar_moe.runs.study.report import has_run_folders, render, results_names
from cifar_moe.runs.study.runner import (
    check_data_dir,
    check_finished_runs,
    check_row_arguments,
    pick_rows,
    run_study,
)
from cifar_moe.runs.study.spec import Row, Study, load_study
from cifar_moe.runs.sweep.launch import add_launch_options, launch_flags, launcher_for

EXIT_SIGTERM = 128 + signal.SIGTERM


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cifar_moe.study",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("study", help="the study YAML")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs side by side (each gets cores // jobs torch threads)")
    parser.add_argument("--out", default=None, help="results folder (overrides the YAML)")
    parser.add_argument("--arg", action="append", default=[], dest="extra", metavar="ARG",
                        help="repeatable: one more fit argument for every run, after the "
                             "YAML's args, e.g. --arg=--trainer.accelerator=gpu (give --out "
                             "too: an out folder keeps the --arg its runs got, refuses "
                             "others, and --render alone lists it in results.md)")
    parser.add_argument("--row", action="append", default=[], dest="rows", metavar="NAME",
                        help="repeatable: run only this row (its name or folder name); the "
                             "tables still show every row")
    parser.add_argument("--folds", default=None, metavar="F,F,...",
                        help="only these validation folds of a fold study, e.g. 7,8,9: run "
                             "them (unless --render) and report them into results_folds7-9.md"
                             " and .json, beside the whole study's")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite results.json/md and curves.png from the run folders")
    add_launch_options(parser, "runs")
    return parser


def _folds_option(text: str | None, study: Study) -> list[int] | None:
    if text is None:
        return None
    known = sorted({f for row in study.rows for f in (row.folds or [])})
    if not known:
        raise UserError(f"--folds: {study.path.name} names no folds; drop --folds")
    try:
        folds = [int(part) for part in text.split(",")]
    except ValueError:
        folds = []
    if not folds or any(f not in known for f in folds) or len(set(folds)) != len(folds):
        raise UserError(f"--folds {text}: give distinct folds of the study, comma-separated, "
                        f"from {', '.join(map(str, known))}")
    return folds


def main(argv: list[str] | None = None) -> int:
    """The command; returns the exit status (bad input exits 2 after one ``error:`` line)."""
    opts = _parser().parse_args(argv)
    with contextlib.ExitStack() as held:
        try:
            if opts.jobs < 1:
                raise UserError(f"--jobs {opts.jobs}: use 1 or more")
            # checks the given --arg and launcher flags too
            study = load_study(opts.study, opts.out, opts.extra, launch_flags(opts))
            rows = pick_rows(study, opts.rows)  # before anything is written to the out folder
            folds = _folds_option(opts.folds, study)
            if not opts.render:
                check_data_dir(study)  # once, here: not a download attempt per run
                check_row_arguments(study, rows, argument_problem)
                held.enter_context(hold_out_folder(study.out))  # until main returns
            extra = settle_extra_args(study.out, opts.extra, opts.render)
            if extra != opts.extra:  # --render alone: the args recorded by the run
                study = load_study(opts.study, opts.out, extra, launch_flags(opts))
                rows = pick_rows(study, opts.rows)
            if not opts.render:  # after the --arg check, whose message is the more exact one
                check_finished_runs(study, rows)
            else:
                _warn_if_stale(study, rows)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:  # during the checks: nothing ran yet
            print("interrupted before any run", file=sys.stderr)
            return 130
        return _run_and_render(study, rows, folds, opts.jobs, opts.render)


def _warn_if_stale(study: Study, rows: list[Row]) -> None:
    """--render shows what the folders hold; it says so when that is an older recipe."""
    try:
        check_finished_runs(study, rows)
    except UserError as err:
        print(f"warning: {err}", file=sys.stderr)


def _on_sigterm(signum, frame) -> None:
    # Once: the stop itself (passing SIGTERM on, waiting for the runs) must not be cut short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stopped


def _stopped_line(stop: Stopped) -> str:
    runs = getattr(stop, "in_flight", [])
    what = "; ".join(f"{run.row.name}, {run.label}" for run in runs) or "no run was running"
    done = (f"{stop.done} of {stop.total} runs are finished and kept"
            if hasattr(stop, "done") else "no run had started")
    return (f"stopped by SIGTERM ({what}); {done}; run the same command again to resume "
            "(the interrupted runs start again)")


def _run(study: Study, rows: list[Row], folds: list[int] | None, jobs: int) -> int | None:
    """Run the study; an exit status when it did not run to the end, else None."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        local = study.launch.name == "local"
        run_study(study, jobs, rows, folds, None if local else launcher_for(study.launch))
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Stopped as stop:
        print(_stopped_line(stop), file=sys.stderr, flush=True)
        return EXIT_SIGTERM
    except UserError as err:  # a run folder still held by a killed study's run
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    return None


def _run_and_render(study: Study, rows: list[Row], folds: list[int] | None, jobs: int,
                    render_only: bool) -> int:
    if not render_only:
        code = _run(study, rows, folds, jobs)
        if code is not None:
            return code
    elif not has_run_folders(study):
        # A committed study (its results without its run folders): rendering would replace
        # its tables with "not run" ones.
        kept = [name for name in results_names(folds) if (study.out / name).is_file()]
        if kept:
            print(f"{study.out} has no run folders to render from; kept "
                  f"{', '.join(kept)} unchanged", flush=True)
            return 0
    results = render(study, folds)
    failed = sum(row["aggregate"]["seeds_failed"] for row in results["rows"])
    json_name, md_name, png_name = results_names(folds)
    print(f"wrote {study.out / md_name}, {json_name}, {png_name}"
          + (f"; {failed} run(s) failed" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
