"""Routing's effect against the amount of training data: the data-size curve of
docs/protocols/routing.md, from the run records of one study per training fraction.

    python benchmarks/data_size_curve.py configs/studies/routing_data25.yaml \
        configs/studies/routing_data50.yaml configs/studies/routing.yaml

A study's fraction is its ``--data.train_fraction`` (in ``data:`` or ``args``; 1.0 without
one), the same for all its rows (a row that sets its own is refused). Every point uses the
(fold, seed) pairs that all the studies plan (the curve's design: folds 6-9, seed 0) and both
compared rows finished. Per point: each row's mean accuracy, and the mean paired difference
``primary - reference`` with its 95 % interval, the wider of the t-interval and the
image-sampling floor (the protocol's rule; with one pair, the floor alone, and the line says
so). The last line is the trend: the smallest fraction's paired differences against the
largest's, folds as pairs, "grows" if that 95 % t-interval lies above 0, "shrinks" if below,
else none detectable.
Descriptive: no test, no correction. The test images are never read.
"""

import argparse
import sys
from pathlib import Path

from cifar_moe.core.cli_args import arg_values
from cifar_moe.runs.study import stats
from cifar_moe.runs.study.compare import difference_floor, metric_values
from cifar_moe.runs.study.plan import plan
from cifar_moe.runs.study.report import collect
from cifar_moe.runs.study.spec import load_study

METRIC = "final_val_acc"


def fraction(study) -> float:
    """The study's training fraction; one line naming the study if its rows differ."""
    for row in study.rows:
        if any("train_fraction" in arg for arg in row.args):
            sys.exit(f"{study.path}: row {row.name} sets its own data.train_fraction; a curve "
                     "point is one fraction for every row (put it in the study's args)")
    args = [*study.data_args(), *study.args]
    values = arg_values(args, "data.train_fraction")
    return float(values[-1]) if values else 1.0


def point(study, share: float, keys: set, primary: str, reference: str) -> dict:
    """One fraction (``share`` of the data): each row's mean, and the paired difference over
    ``keys`` run by both."""
    rows = {row["name"]: row for row in collect(study)["rows"]}
    mine, ref = (metric_values(rows[name]["runs"], METRIC) for name in (primary, reference))
    mine = {k: v for k, v in mine.items() if k in keys and k in ref}
    ref = {k: v for k, v in ref.items() if k in mine}
    diff = stats.paired_difference(mine, ref)
    floor = difference_floor(rows[primary]["runs"], rows[reference]["runs"], list(mine), METRIC)
    halves = [h for h in (diff["half_width"], floor and floor["half_width"]) if h is not None]
    half = max(halves) if halves else None
    return {"fraction": share, "n": diff["n"], "mean": diff["mean"],
            "half": half, "per_pair": {k: mine[k] - ref[k] for k in mine},
            "primary_acc": stats.mean_ci(list(mine.values()))["mean"],
            "reference_acc": stats.mean_ci(list(ref.values()))["mean"]}


def trend(small: dict, large: dict) -> str:
    """The last line: d(large) - d(small) over the pairs both points have."""
    change = stats.paired_difference(large["per_pair"], small["per_pair"])
    if change["n"] < 2:
        return f"trend: {change['n']} common pair(s), no interval"
    low, high = 100 * change["low"], 100 * change["high"]
    verdict = "grows" if low > 0 else "shrinks" if high < 0 else "no trend detectable"
    return (f"trend: d{100 * large['fraction']:.0f} - d{100 * small['fraction']:.0f} "
            f"{100 * change['mean']:+.1f} points, 95 % CI [{low:+.1f}, {high:+.1f}] "
            f"({change['n']} folds): {verdict}")


def line(p: dict, primary: str, reference: str) -> str:
    if not p["n"]:
        return f"{100 * p['fraction']:.0f} % of the data: no pair finished yet"
    interval = (f"[{100 * (p['mean'] - p['half']):+.1f}, {100 * (p['mean'] + p['half']):+.1f}]"
                if p["half"] is not None else "(no interval)")
    pairs = "1 pair: image floor only" if p["n"] == 1 else f"{p['n']} pairs"
    return (f"{100 * p['fraction']:.0f} % of the data: {primary} {100 * p['primary_acc']:.1f} %, "
            f"{reference} {100 * p['reference_acc']:.1f} %, difference "
            f"{100 * p['mean']:+.1f} points {interval} ({pairs})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", type=Path, help="study YAMLs, one per fraction")
    opts = parser.parse_args(argv)
    studies = [load_study(path) for path in opts.studies]
    first = studies[0]
    if not first.primary or not first.reference:
        sys.exit(f"{opts.studies[0]}: name a primary and a reference row to compare")
    for path, study in zip(opts.studies, studies, strict=True):
        missing = {first.primary, first.reference} - {row.name for row in study.rows}
        if missing:
            sys.exit(f"{path}: has no row {', '.join(sorted(missing))}; every study of the "
                     "curve needs both compared rows")
    fractions = [fraction(study) for study in studies]
    if len(studies) < 2 or len(set(fractions)) < len(fractions):
        sys.exit(f"give one study per training fraction, at least two (got fractions "
                 f"{', '.join(f'{f:g}' for f in fractions)})")
    keys = set.intersection(*({(run.fold, run.seed) for run in plan(s)} for s in studies))
    points = sorted((point(s, f, keys, first.primary, first.reference)
                     for s, f in zip(studies, fractions, strict=True)),
                    key=lambda p: p["fraction"])
    for p in points:
        print(line(p, first.primary, first.reference))
    print(trend(points[0], points[-1]))


if __name__ == "__main__":
    main()
