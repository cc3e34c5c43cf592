"""The budget of a sweep, shared through its storage by every worker and sweep process: which
trials count, how many are left, and an interrupted or orphaned trial queued again.

A trial's user attributes: ``folder`` (``trial-<n>``, the folder it ran in: a retry runs in
its first attempt's), ``worker`` (``host:pid`` of the sweep process that ran it), ``error``
(a failed trial's one line) and ``surplus`` (asked past the budget, closed unrun).
"""

import optuna
from optuna.trial import TrialState

from cifar_moe.runs.sweep.storage import RetryCallback

SURPLUS, ERROR, FOLDER, WORKER = "surplus", "error", "folder", "worker"


def counted(trials: list) -> list[int]:
    """The numbers of the trials the budget counts, in order: all but surplus ones and
    those replaced by a retry."""
    replaced = {RetryCallback.retried_trial_number(t) for t in trials}
    return sorted(t.number for t in trials
                  if t.number not in replaced and not t.user_attrs.get(SURPLUS))


def trials_left(study: optuna.Study, budget: int) -> int:
    """Trials still to start; queued retries are still to start."""
    trials = study.get_trials(deepcopy=False)
    waiting = {t.number for t in trials if t.state == TrialState.WAITING}
    return budget - len([n for n in counted(trials) if n not in waiting])


def requeue(study: optuna.Study, storage, number: int, why: str) -> None:
    """Record trial ``number`` as failed for ``why`` and queue its parameters again."""
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), number)
    storage.set_trial_user_attr(trial_id, ERROR, why)
    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    RetryCallback(max_retry=None)(study, storage.get_trial(trial_id))


def retry_stale(study: optuna.Study, storage) -> int:
    """Queue again the trials left RUNNING by a sweep process that died (journal storage:
    the caller holds the out folder, so no other process runs them)."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        requeue(study, storage, trial.number, "its sweep process ended while it ran; queued "
                "again")
    return len(stale)


def folder_number(study: optuna.Study, number: int) -> int:
    """A retried trial runs in the folder of the trial it retries (the first of the chain)."""
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    history = RetryCallback.retry_history(frozen)
    return history[0] if history else number
