"""Reading the run folders back: per-run records, row aggregates, and the three outputs.

``render(study)`` writes ``results.json`` (every run's numbers plus row aggregates),
``results.md`` (tables) and ``curves.png`` (validation accuracy per row) into ``study.out``.
It reads only the run folders, so it works on a half-finished study too. Paths in them are
written relative to the project (``paths.py``). ``render(study, folds)`` reports only the
runs on those folds, into ``results_folds<f>.*`` beside the whole study's files.
"""

import json
import statistics
from pathlib import Path

from cifar_moe.core.atomic_files import atomic_write_text, write_json_atomic
from cifar_moe.runs.study.compare import analyse
from cifar_moe.runs.study.paths import portable
from cifar_moe.runs.study.plan import ERROR, RESULT, plan
from cifar_moe.runs.study.runner import pick_folds
from cifar_moe.runs.study.spec import Study

SCALARS = ("test_acc", "best_val_acc", "epochs_run", "fit_seconds", "train_img_per_s")


def load_run(folder: Path, seed: int, fold: int | None = None) -> dict:
    """A run's record: ``status`` ok (with its result), failed (with its error) or not run."""
    # A run without a fold keeps the record of the studies made before folds existed.
    record = {"seed": seed, "folder": str(folder)} if fold is None else {
        "fold": fold, "seed": seed, "folder": str(folder)}
    if (folder / RESULT).is_file():
        return {**record, "status": "ok", **json.loads((folder / RESULT).read_text())}
    if (folder / ERROR).is_file():
        return {**record, "status": "failed", **json.loads((folder / ERROR).read_text())}
    return {**record, "status": "not run"}


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def curve_band(runs: list[dict]) -> dict:
    """Validation accuracy per epoch over the runs: epochs, mean, min, max, std."""
    by_epoch: dict[int, list[float]] = {}
    for run in runs:
        # A run that validates several times per epoch contributes its last value.
        last = dict(zip(run["val_epochs"], run["val_acc_curve"], strict=True))
        for epoch, value in last.items():
            by_epoch.setdefault(epoch, []).append(value)
    epochs = sorted(by_epoch)
    values = [by_epoch[e] for e in epochs]
    return {"epochs": epochs, "mean": [statistics.fmean(v) for v in values],
            "min": [min(v) for v in values], "max": [max(v) for v in values],
            "std": [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]}


def last_quarter_gain(curve: list[float]) -> float | None:
    """How much validation accuracy still rose over the run's last quarter: the mean of its
    last 3 values minus the mean of the 3 values where the last quarter starts (a converged
    run is near 0). Under 24 validations the windows shrink (to quarter // 2 values) so that
    they never overlap. None for runs too short to tell (under 8 validations)."""
    quarter = len(curve) // 4
    if quarter < 2:
        return None
    window, start = min(3, quarter // 2), len(curve) - quarter
    return statistics.fmean(curve[-window:]) - statistics.fmean(curve[start:start + window])


def aggregate(runs: list[dict]) -> dict:
    """Means over a row's finished runs (std of test acc where 2+ of them scored it)."""
    ok = [r for r in runs if r["status"] == "ok"]
    agg = {"seeds_ok": len(ok), "seeds_failed": sum(r["status"] == "failed" for r in runs),
           "seeds_not_run": sum(r["status"] == "not run" for r in runs)}
    for key in SCALARS:
        agg[f"{key}_mean"] = _mean([r.get(key) for r in ok])
    # None: a run of a study that does not score the test images (``plan.scores_test``).
    accs = [r["test_acc"] for r in ok if r.get("test_acc") is not None]
    agg["test_acc_std"] = statistics.stdev(accs) if len(accs) > 1 else None
    agg["last_quarter_gain_mean"] = _mean([last_quarter_gain(r["val_acc_curve"]) for r in ok])
    keys = sorted({k for r in ok for k in r.get("routing", {})})
    agg["routing_mean"] = {k: _mean([r["routing"].get(k) for r in ok]) for k in keys}
    agg["val_acc_curve"] = curve_band(ok)
    return agg


def collect(study: Study, folds: list[int] | None = None) -> dict:
    """Everything the run folders hold (on ``folds``, default all), row by row, with
    aggregates, and for a fold study (or one naming a metric or reference) its statistics."""
    runs = pick_folds(plan(study), folds)
    rows = []
    for row in study.rows:
        records = [load_run(r.folder, r.seed, r.fold) for r in runs if r.row is row]
        folds_of_row = {} if row.folds is None else {"folds": row.folds}
        rows.append({"name": row.name, "slug": row.slug,
                     "configs": [str(c) for c in row.configs], "args": row.args,
                     "seeds": row.seeds, **folds_of_row, "aggregate": aggregate(records),
                     "runs": records})
    results = {"study": str(study.path), "out": str(study.out), "data": study.data,
               "seeds": study.seeds, "args": study.args, "rows": rows}
    if study.analysed:
        analyse(rows, study.primary_metric, study.reference, study.primary)
        results.update(folds=study.folds, folds_shown=folds, metric=study.primary_metric,
                       reference=study.reference, primary=study.primary)
    return results


def results_names(folds: list[int] | None) -> tuple[str, str, str]:
    """results.json / .md / curves.png, or for ``--folds 7,8,9`` results_folds7-9.json, ...
    (a run of folds as ``7-9``, others joined by ``_``), so the whole study's stay."""
    if folds is None:
        return "results.json", "results.md", "curves.png"
    ordered = sorted(folds)
    contiguous = len(ordered) > 1 and ordered == list(range(ordered[0], ordered[-1] + 1))
    tag = f"{ordered[0]}-{ordered[-1]}" if contiguous else "_".join(map(str, ordered))
    return f"results_folds{tag}.json", f"results_folds{tag}.md", f"curves_folds{tag}.png"


def has_run_folders(study: Study) -> bool:
    """Whether ``<out>/runs`` holds any run folder (finished, failed or half-done)."""
    return any(folder.is_dir() for folder in study.out.glob("runs/*/*"))


def render(study: Study, folds: list[int] | None = None) -> dict:
    """Write results.json, results.md and curves.png from the run folders; the collection."""
    from cifar_moe.runs.study.figure import curves_figure
    from cifar_moe.runs.study.table import markdown

    results = portable(collect(study, folds))
    json_name, md_name, png_name = results_names(folds)
    study.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(study.out / json_name, results)
    atomic_write_text(study.out / md_name, markdown(results))
    curves_figure(results, study.out / png_name)
    return results
