"""Which runs a study is made of, where each one writes, and the command that runs it.

A run is one row at one seed, and in a fold study at one validation fold. Its folder is
``<out>/runs/<row-slug>/seed<k>/``, or ``fold<f>-seed<k>/`` when the row names folds (so a
study without folds keeps the layout of the studies committed before folds existed).
"""

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cifar_moe.runs.study.inputs import run_inputs
from cifar_moe.runs.study.spec import Row, Study

RESULT, ERROR, STDOUT, STDERR = "result.json", "error.json", "stdout.log", "stderr.log"
CHILD_MODULE = "cifar_moe.cli.study_child"
"""What each run executes (``python -m``): fit, test of the best checkpoint, result.json."""
NO_TEST = "--no-test"
"""The child's flag for a run that must not score the test images (``scores_test``)."""


@dataclass(frozen=True)
class Run:
    """One cell of the table: a row at a seed (and a fold), and its folder."""

    row: Row
    seed: int
    folder: Path
    fold: int | None = None

    @property
    def label(self) -> str:
        """How a reader names it: ``seed 1``, or ``fold 3, seed 1``."""
        return f"seed {self.seed}" if self.fold is None else f"fold {self.fold}, seed {self.seed}"

    @property
    def lock_path(self) -> Path:
        """Beside the folder, not in it: the folder is wiped while its lock is held."""
        return self.folder.parent / f".{self.folder.name}.lock"


def run_folder(study: Study, row: Row, seed: int, fold: int | None = None) -> Path:
    name = f"seed{seed}" if fold is None else f"fold{fold}-seed{seed}"
    return study.out / "runs" / row.slug / name


def plan(study: Study) -> list[Run]:
    """Every run, seed by seed and fold by fold, so that an interrupted study has whole
    seeds (and folds) of all rows: rows compared at equal (fold, seed) pairs."""
    # The study's seeds (folds) in their order, then those that only some rows name.
    seeds = list(dict.fromkeys([*study.seeds, *(s for row in study.rows for s in row.seeds)]))
    folds = list(dict.fromkeys([*(study.folds or []),
                                *(f for row in study.rows for f in (row.folds or [None]))]))
    return [Run(row, seed, run_folder(study, row, seed, fold), fold)
            for seed in seeds for fold in folds for row in study.rows
            if seed in row.seeds and fold in (row.folds or [None])]


def fold_args(run: Run) -> list[str]:
    return [] if run.fold is None else [f"--data.val_fold={run.fold}"]


def inputs_of(study: Study, run: Run) -> dict:
    """What ``run`` is made from now (compared with what a finished run recorded)."""
    return run_inputs(run.row.configs, study.data,
                      [*study.args, *run.row.args, *fold_args(run)], run.seed)


def fit_args(study: Study, run: Run) -> list[str]:
    """The run's ``fit`` arguments: configs first (later args override them), forced last."""
    return [*(f"--config={c}" for c in run.row.configs), *study.data_args(), *study.args,
            *run.row.args, *fold_args(run), f"--seed_everything={run.seed}",
            "--trainer.enable_progress_bar=false"]


def scores_test(study: Study) -> bool:
    """Whether each run tests its best checkpoint: only where the study compares test
    accuracy (the split studies). The protocols score the test images once per adopted
    recipe, never per run, so a fold study's runs (metric a validation fold's) never do."""
    return study.primary_metric == "test_acc"


def child_command(study: Study, run: Run, threads: int | None, job: bool = False) -> list[str]:
    """The child's full argv: its own options, then the run's ``fit`` arguments. ``job``: it
    runs as a submitit job, which outlives this process and takes the folder's lock itself."""
    thread_args = ["--threads", str(threads)] if threads else []
    # A module name, not an import: the child is the CLI layer's, in its own process. A
    # local child watches this process's pid and stops when this process dies (kill -9); a
    # job's child watches the job's process instead (its parent).
    own = (["--lock", str(run.lock_path)] if job else ["--parent-pid", str(os.getpid())])
    # Decided here and passed on, not left to the child: a submitit job runs the same argv.
    no_test = [] if scores_test(study) else [NO_TEST]
    return [sys.executable, "-m", CHILD_MODULE, "--run-dir", str(run.folder), *own,
            *thread_args, *no_test, "--", *fit_args(study, run)]
