"""Run a study: every row of a YAML at every seed, each run in its own process, one table.

    python -m cifar_moe.study configs/studies/slice.yaml            # run (or resume) it
    python -m cifar_moe.study configs/studies/slice.yaml --jobs 2   # two runs side by side
    python -m cifar_moe.study configs/studies/slice.yaml --render   # tables/figure only
    python -m cifar_moe.study configs/studies/slice.yaml --row k-1-control-same-network-static
    python -m cifar_moe.study configs/studies/slice.yaml --out lightning_logs/studies/gpu \
        --arg=--trainer.accelerator=gpu                             # same study, on a GPU

The study YAML (relative paths resolve against the current folder, the repo root)::

    data: {data_dir: ../shared/data/cifar-10-mini, val_size: 500}   # --data.<key>=<value>
    seeds: [0, 1, 2]
    out: lightning_logs/studies/slice        # optional; default lightning_logs/studies/<stem>
    args: ["--trainer.max_epochs=3"]         # optional; added to every run (so is --arg)
    rows:
      - name: focal + OneCycle (seed B, K=4)
        configs: [configs/focal_onecycle.yaml]
        args: []                             # optional; after the study's args
        seeds: [0]                           # optional; overrides the study's seeds

Each run (row x seed) is ``fit`` then ``test`` of its best-val/acc checkpoint, in a
subprocess (``cifar_moe.study.child``) with its own folder ``<out>/runs/<row>/seed<k>/``
(trainer root, ``stdout.log``, ``stderr.log``, then ``result.json`` or ``error.json``).
A run that crashes is recorded as failed with its one-line error; the study goes on. A row
whose arguments the CLI refuses (a mistyped setting or value) stops the study with one line
before any run starts.

Resume: running the same command again never redoes a run that has ``result.json``;
half-finished runs (after a kill) and failed runs are wiped and run again. A finished run
whose recipe files or overrides changed since (``inputs.json`` in its folder) stops the
study with one line instead of being kept beside runs of the new recipe.

Outputs in ``<out>``: ``results.json`` (every number of every run, row aggregates),
``results.md`` (tables), ``curves.png`` (val acc per epoch per row). Exit status: 0 when
every run finished, 1 when some failed, 2 for a bad study YAML or option (one line).
"""

import argparse
import contextlib
import sys

from cifar_moe.errors import UserError
from cifar_moe.study.lock import hold_out_folder
from cifar_moe.study.report import render
from cifar_moe.study.runner import (
    check_finished_runs,
    check_row_arguments,
    pick_rows,
    run_study,
    settle_extra_args,
)
from cifar_moe.study.spec import Row, Study, load_study


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
    parser.add_argument("--render", action="store_true",
                        help="only rewrite results.json/md and curves.png from the run folders")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command; returns the exit status (bad input exits 2 after one ``error:`` line)."""
    opts = _parser().parse_args(argv)
    with contextlib.ExitStack() as held:
        try:
            if opts.jobs < 1:
                raise UserError(f"--jobs {opts.jobs}: use 1 or more")
            study = load_study(opts.study, opts.out, opts.extra)  # checks the given --arg too
            rows = pick_rows(study, opts.rows)  # before anything is written to the out folder
            if not opts.render:
                check_row_arguments(study, rows)
                held.enter_context(hold_out_folder(study.out))  # until main returns
            extra = settle_extra_args(study.out, opts.extra, opts.render)
            if extra != opts.extra:  # --render alone: the args recorded by the run
                study = load_study(opts.study, opts.out, extra)
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
        return _run_and_render(study, rows, opts.jobs, opts.render)


def _warn_if_stale(study: Study, rows: list[Row]) -> None:
    """--render shows what the folders hold; it says so when that is an older recipe."""
    try:
        check_finished_runs(study, rows)
    except UserError as err:
        print(f"warning: {err}", file=sys.stderr)


def _run_and_render(study: Study, rows: list[Row], jobs: int, render_only: bool) -> int:
    if not render_only:
        try:
            run_study(study, jobs, rows)
        except KeyboardInterrupt:
            print("interrupted; run the same command again to resume", file=sys.stderr)
            return 130
    results = render(study)
    failed = sum(row["aggregate"]["seeds_failed"] for row in results["rows"])
    print(f"wrote {study.out / 'results.md'}, results.json, curves.png"
          + (f"; {failed} run(s) failed" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
