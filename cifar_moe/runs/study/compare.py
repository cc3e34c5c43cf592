"""A study's statistics, row by row, from the run records (``report.collect``'s rows).

Per row: n runs, mean and 95 % t-interval of the study's metric, its image-sampling floor,
mean fit minutes and accuracy per minute. Per row other than the reference: the paired
difference to the reference over the (fold, seed) pairs both ran, its 95 % t-interval, its
image-sampling floor from per-image disagreements, and the paired t-test p, Holm-corrected
over the secondary rows (the ``primary`` row's is the one uncorrected comparison).
"""

import statistics

from cifar_moe.runs.study import stats

BITS = {"final_val_acc": "val_correct_final", "best_val_acc": "val_correct_best"}
"""Where a run records the per-image correctness behind each validation metric."""


def _ok(runs: list[dict]) -> list[dict]:
    return [run for run in runs if run["status"] == "ok"]


def _key(run: dict) -> tuple:
    return (run.get("fold"), run["seed"])


def metric_values(runs: list[dict], metric: str) -> dict[tuple, float]:
    """``{(fold, seed): value}`` of the finished runs that recorded ``metric``."""
    return {_key(run): run[metric] for run in _ok(runs) if run.get(metric) is not None}


def _bits(run: dict, metric: str) -> list[int] | None:
    text, n = run.get(BITS.get(metric, "")), run.get("val_images")
    return stats.unpack_bits(text, n) if text and n else None


def _row_floor(runs: list[dict], metric: str, mean: float | None) -> dict | None:
    """``sqrt(p (1 - p) / N)``, N the validation images of the row's distinct folds (seeds
    rerun the same images); None for test accuracy or runs that did not record their size."""
    if metric not in BITS or mean is None:
        return None
    sizes: dict = {}
    for run in _ok(runs):
        if run.get("val_images"):
            sizes.setdefault(run.get("fold"), run["val_images"])
    if not sizes:
        return None
    images = sum(sizes.values())
    se = stats.binomial_se(mean, images)
    return {"images": images, "se": se, "half_width": stats.Z95 * se}


def difference_floor(runs: list[dict], ref_runs: list[dict], keys: list,
                      metric: str) -> dict | None:
    """The paired difference's floor from per-image disagreements (``stats.image_diff_se``);
    None unless every pair recorded its per-image correctness."""
    if metric not in BITS or not keys:
        return None
    mine = {_key(run): run for run in _ok(runs)}
    theirs = {_key(run): run for run in _ok(ref_runs)}
    per_fold: dict = {}
    for key in keys:
        a, b = _bits(mine[key], metric), _bits(theirs[key], metric)
        if a is None or b is None:
            return None
        per_fold.setdefault(key[0], []).append((a, b))
    se = stats.image_diff_se(per_fold)
    return None if se is None else {"se": se, "half_width": stats.Z95 * se}


def _speed(runs: list[dict], mean: float | None) -> dict:
    """Mean fit minutes, and the mean metric in % per mean fit minute (a ratio of means:
    one slow run does not swamp it as a mean of ratios would)."""
    fits = [run["fit_seconds"] for run in _ok(runs) if run.get("fit_seconds")]
    minutes = statistics.fmean(fits) / 60 if fits else None
    per_minute = mean * 100 / minutes if minutes and mean is not None else None
    return {"fit_minutes_mean": minutes, "acc_pct_per_minute": per_minute}


def analyse(rows: list[dict], metric: str, reference: str | None,
            primary: str | None) -> None:
    """Add ``stats`` to every row dict (see the module's docstring for what it holds)."""
    values = {row["name"]: metric_values(row["runs"], metric) for row in rows}
    ref = next((row for row in rows if row["name"] == reference), None)
    for row in rows:
        summary = stats.mean_ci(list(values[row["name"]].values()))
        summary["image_floor"] = _row_floor(row["runs"], metric, summary["mean"])
        summary.update(_speed(row["runs"], summary["mean"]))
        if ref is not None and row is not ref:
            diff = stats.paired_difference(values[row["name"]], values[reference])
            keys = [tuple(pair) for pair in diff["pairs"]]
            diff["image_floor"] = difference_floor(row["runs"], ref["runs"], keys, metric)
            diff["role"] = "primary" if row["name"] == primary else "secondary"
            summary["vs_reference"] = diff
        row["stats"] = summary
    compared = [row["stats"]["vs_reference"] for row in rows if "vs_reference" in row["stats"]]
    secondary = {i: d["p"] for i, d in enumerate(compared)
                 if d["role"] == "secondary" and d["p"] is not None}
    adjusted = stats.holm(secondary)
    for i, diff in enumerate(compared):
        diff["p_holm"] = adjusted.get(i)
