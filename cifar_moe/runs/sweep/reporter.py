"""Inside each trial's ``fit``: report the metric to Optuna, stop a pruned trial cleanly, and
write ``result.json`` for the sweep.

The sweep adds :class:`TrialReporter` with ``--trainer.callbacks+=`` to an otherwise normal
CLI run. It reconnects to the study's storage, so the pruner sees every validation as it
happens, and wraps optuna-integration's ``PyTorchLightningPruningCallback``: a pruned trial
stops at the end of that epoch (a normal end of ``fit``, checkpoints written) rather than
with a traceback.
"""

import os
import signal
import threading
import time
from pathlib import Path

import optuna
from optuna_integration import PyTorchLightningPruningCallback

from cifar_moe.core.atomic_files import write_json_atomic
from cifar_moe.runs.sweep.storage import open_storage, pruner_for

RESULT = "result.json"
"""In a trial folder: the trial's outcome, written when its ``fit`` ends."""


def attach_trial(storage: str, study_name: str, number: int, pruner: dict) -> optuna.Trial:
    """The live trial ``number`` of the study, as the process that asked for it sees it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = open_storage(storage)
    study_id = backend.get_study_id_from_name(study_name)
    trial_id = backend.get_trial_id_from_study_id_trial_number(study_id, number)
    # This process only reports: a random sampler avoids fitting TPE for nothing.
    study = optuna.load_study(study_name=study_name, storage=backend,
                              sampler=optuna.samplers.RandomSampler(),
                              pruner=pruner_for(pruner))
    return optuna.trial.Trial(study, trial_id)


class TrialReporter(PyTorchLightningPruningCallback):
    """Reports ``metric`` after each validation; writes ``result.json`` at the end of ``fit``.

    Args:
        storage: the sweep's storage (journal file path or database URL).
        study_name: the Optuna study.
        number: this trial's number.
        metric: the logged metric the sweep optimises (``val/acc``).
        direction: ``maximize`` or ``minimize``: the trial's value is the best reported.
        pruner: the sweep's pruner spec (``{name: median, ...}``).
        result_dir: the trial folder, where ``result.json`` goes.
    """

    def __init__(self, storage: str, study_name: str, number: int, metric: str,
                 direction: str, pruner: dict, result_dir: str) -> None:
        super().__init__(attach_trial(storage, study_name, number, pruner), metric)
        self.direction, self.result_dir = direction, Path(result_dir)
        self.curve: list[list[float]] = []  # [epoch, value]; in checkpoints, for resumes
        self.pruned_epoch: int | None = None
        _stop_with_parent()

    def on_validation_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if not trainer.sanity_checking and value is not None:
            self.curve.append([pl_module.current_epoch, float(value)])
        try:
            super().on_validation_end(trainer, pl_module)
        except optuna.TrialPruned:
            self.pruned_epoch = pl_module.current_epoch
            trainer.should_stop = True

    def state_dict(self) -> dict:
        return {"curve": self.curve}

    def load_state_dict(self, state_dict: dict) -> None:
        self.curve = list(state_dict.get("curve", []))

    def on_fit_end(self, trainer, pl_module) -> None:
        try:
            self.check_pruned()  # under DDP the pruning decision is in the storage
        except optuna.TrialPruned:
            self.pruned_epoch = trainer.current_epoch
        log_dir = trainer.log_dir  # a collective call under DDP: every rank asks
        if not trainer.is_global_zero:
            return
        values = [value for _, value in self.curve]
        best = (max if self.direction == "maximize" else min)(values) if values else None
        write_json_atomic(self.result_dir / RESULT, {
            "value": best, "curve": self.curve, "pruned": self.pruned_epoch is not None,
            "pruned_epoch": self.pruned_epoch, "epochs_run": trainer.current_epoch,
            "log_dir": log_dir})


def _stop_with_parent() -> None:
    """SIGTERM this trial when the process that started it dies (a sweep or job killed with
    kill -9): the CLI then saves ``interrupted.ckpt`` and exits, instead of an orphan going
    on writing into a folder that a re-run resumes."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="trial-parent-watch").start()
