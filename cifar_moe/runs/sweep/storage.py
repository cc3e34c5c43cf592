"""The Optuna study behind a sweep: its storage, sampler, pruner and direction.

Storage: by default Optuna's journal file ``<out>/optuna.journal`` (safe for the trials that
``--jobs N`` runs side by side; one sweep process per out folder). ``--storage`` takes a
database URL (``postgresql://...``, ``mysql://...``, ``sqlite:///...``), shared by sweep
processes on several machines; there a heartbeat marks the trials of a process that died as
failed and queues them again. Any other ``--storage`` text is a journal file path.
"""

import inspect
import os
import time
import zlib
from pathlib import Path

import numpy as np
import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from cifar_moe.core.atomic_files import host_name
from cifar_moe.core.errors import UserError

# Optuna 4.9 renamed the retry callback (the old name warns, and goes in 6.0).
RetryCallback = (getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
                 or optuna.storages.RetryFailedTrialCallback)
"""Queues a failed trial's parameters again; its static methods read a retry's history."""

JOURNAL = "optuna.journal"
HEARTBEAT_S = 20
"""How often a running trial says it is alive in a database storage."""
GRACE_S = 90
"""After this long without a heartbeat a database trial counts as dead and is run again."""
CREATE_TRIES = 4


def storage_url(given: str | None, out: Path) -> str:
    """The storage as one text that every process of the sweep (and each trial) opens."""
    if given and "://" in given:
        return given
    return str(Path(given).resolve() if given else out / JOURNAL)


def is_database(url: str) -> bool:
    return "://" in url


def open_storage(url: str, heartbeat: bool = False):
    """The storage behind ``url``; a bad URL or an unreachable server is one line."""
    try:
        if not is_database(url):
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(url))
        return _open_database(url, heartbeat)
    except ImportError as err:  # e.g. no psycopg for postgresql://
        raise UserError(f"--storage {shown_url(url)}: its database driver is not installed "
                        f"({err}); pip install it (PostgreSQL: pip install -e '.[sweep]')"
                        ) from None
    except Exception as err:  # SQLAlchemy's connection and URL errors have no common base
        gist = " ".join(str(err).split())[:200]
        raise UserError(f"--storage {shown_url(url)}: cannot be opened ({gist}); check the URL "
                        "and that the database server is running") from None


def _open_database(url: str, heartbeat: bool) -> RDBStorage:
    """``RDBStorage``, tried again when another process was creating the same tables at the
    same moment (sweep workers started together on a new database: a duplicate type or
    table)."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    options = {}
    if heartbeat:  # the argument was renamed with the callback
        renamed = "heartbeat_stale_trial_callback" in inspect.signature(RDBStorage).parameters
        options = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S,
                   ("heartbeat_stale_trial_callback" if renamed else "failed_trial_callback"):
                   RetryCallback(max_retry=None)}
    for attempt in range(CREATE_TRIES - 1):
        try:
            return RDBStorage(url, **options)
        except (IntegrityError, ProgrammingError):
            time.sleep(1.0 + attempt)
    return RDBStorage(url, **options)


def sampler_for(spec: dict, seed: int | None = None):
    """The sampler; ``seed`` replaces the YAML's seed (see :func:`process_seed`)."""
    options = {k: v for k, v in spec.items() if k != "name"}
    if seed is not None:
        options["seed"] = seed
    make = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    return _build(make[spec["name"]], options, f"sampler {spec['name']}")


def pruner_for(spec: dict):
    options = {k: v for k, v in spec.items() if k != "name"}
    make = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
            "hyperband": optuna.pruners.HyperbandPruner,
            "threshold": optuna.pruners.ThresholdPruner}
    return _build(make[spec["name"]], options, f"pruner {spec['name']}")


def _build(cls, options: dict, what: str):
    try:
        return cls(**options)
    except (TypeError, ValueError) as err:
        raise UserError(f"{what}: {err}; see optuna's {cls.__name__} for its options") from None


def open_study(sweep, storage, url: str) -> optuna.Study:
    """Create the sweep's study in ``storage`` (opened from ``url``), or load it to resume
    (same name, direction and metric)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints its own lines
    study = optuna.create_study(
        study_name=sweep.name, storage=storage,
        sampler=sampler_for(sweep.sampler), pruner=pruner_for(sweep.pruner),
        direction=sweep.direction, load_if_exists=True)
    if study.direction.name.lower() != sweep.direction:
        raise UserError(f"study {sweep.name} in {shown_url(url)} was made to "
                        f"{study.direction.name.lower()}; give another name or --storage")
    seed = process_seed(sweep, study, url)
    if seed is not None:
        study.sampler = sampler_for(sweep.sampler, seed)
    recorded = study.user_attrs.get("metric")
    if recorded is None:
        study.set_user_attr("metric", sweep.metric)
    elif recorded != sweep.metric:
        raise UserError(f"study {sweep.name} in {shown_url(url)} optimises {recorded}, not "
                        f"{sweep.metric}; give another name, --out or --storage")
    return study


def process_seed(sweep, study: optuna.Study, url: str) -> int | None:
    """The seed of a seeded sampler in this process, so that no two draw the same values: it
    mixes in the trials already in the study (a resumed sweep does not repeat its first
    draws) and, when the storage may be shared by several sweep processes (a database, or a
    journal outside ``<out>``), this machine and process. None (the YAML's seed as it is)
    for an unseeded sampler and for a fresh single-process sweep."""
    seed = sweep.sampler.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        return None
    shared = is_database(url) or Path(url) != sweep.out / JOURNAL
    done = len(study.get_trials(deepcopy=False))
    if not done and not shared:
        return None
    entropy = [seed, done, *((os.getpid(), zlib.crc32(host_name().encode())) if shared else ())]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def shown_url(url: str) -> str:
    """A URL without its password."""
    head, at, tail = url.rpartition("@")
    if not at or "://" not in head:
        return url
    scheme, _, user = head.partition("://")
    return f"{scheme}://{user.split(':', 1)[0]}:***@{tail}"
