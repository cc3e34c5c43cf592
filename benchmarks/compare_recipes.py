"""The adoption check of docs/protocols/selection.md on two folders of bench_peer results.

    python benchmarks/bench_peer.py --trainers template \\
        --template-config configs/archive/slice_v1.yaml \\
        --out benchmarks/incumbent_results            # the incumbent, folds 0-4
    python benchmarks/compare_recipes.py benchmarks/incumbent_results benchmarks/slice_v2_results

Each folder holds ``template_seed<s>.json`` files (seed s holds out fold s). Fits are paired
on (fold, seed); the candidate is adopted only if its mean gain over at least 5 pairs on
distinct folds of 0-6 is larger than twice its standard error, and every routed block of
every candidate fit ends above the health bar (``HEALTH_BAR``, from each fit's
``detail.routing``). Prints the paired line, the health line and the verdict; exits 0
whether or not the candidate passes (an answer, not an error).
"""

import argparse
import json
import sys
from pathlib import Path

from peer_stats import mean_sd, means_line, paired_line

from cifar_moe.analysis.routing.stats import HEALTH_BAR

MIN_PAIRS = 5
SELECTION_FOLDS = range(7)
FUTILITY_CAP = 5.0  # points: the largest mean gain a plan may hope for on its missing pairs


def read_fits(folder: Path) -> dict[int, dict]:
    """seed -> stored result of each ``template_seed<s>.json`` in ``folder``."""
    fits = {}
    for path in sorted(folder.glob("template_seed*.json")):
        result = json.loads(path.read_text())
        fits[result["settings"]["seed"]] = result
    return fits


RECIPE_KEYS = ("config", "config_content", "epochs", "template_args", "threads", "limit_batches")


def mixed_settings(fits: dict[int, dict]) -> str | None:
    """Why these fits are not one recipe's full runs (a smoke run, another config), or None."""
    recipes = {json.dumps([f["settings"].get(k) for k in RECIPE_KEYS]) for f in fits.values()}
    if len(recipes) > 1:
        return f"the fits differ in {', '.join(RECIPE_KEYS)}: not one recipe's runs"
    if any(f["settings"].get("limit_batches") for f in fits.values()):
        return "smoke runs (limit_batches set): not full fits"
    return None


def passes(diffs: list[float]) -> bool:
    """The protocol's rule: mean gain above twice its standard error (enough pairs aside)."""
    mean, sd = mean_sd(diffs)
    return mean > 2 * sd / len(diffs) ** 0.5


def passing_gains(diffs: list[float], cap: float = FUTILITY_CAP) -> tuple[float, float] | None:
    """(lowest, highest) mean gain, in points and 0.01 steps within +/- ``cap``, that the
    pairs still missing from MIN_PAIRS could have for all of them to pass; None if none
    can: the futility stop of a plan (docs/studies/selection/trivial_augment.md). For a
    given mean of the missing pairs, equal values give the smallest standard error, so
    trying equal values is enough. The passing means form one range, bounded above too
    when 3 or 4 pairs exist: a large gain on few pairs widens the SE faster than it lifts
    the mean."""
    missing = MIN_PAIRS - len(diffs)
    if missing <= 0:
        raise ValueError(f"{len(diffs)} pairs: nothing is missing; use the rule itself")
    steps = range(round(-100 * cap), round(100 * cap) + 1)
    gains = [g / 100 for g in steps if passes(diffs + [g / 100] * missing)]
    return (gains[0], gains[-1]) if gains else None


def verdict(diffs: list[float], unhealthy: bool = False) -> str:
    """The protocol's rule on paired differences (candidate - incumbent, in points); a
    candidate with a routed block below the health bar (``unhealthy``) keeps the incumbent
    whatever the rule says, and the verdict says what the rule alone gave."""
    if len(diffs) < MIN_PAIRS:
        gains = passing_gains(diffs)
        hope = (f"no mean gain up to {FUTILITY_CAP:+.1f} points on the missing pairs passes"
                if gains is None else "passes only if the missing pairs' mean gain is in "
                f"[{gains[0]:+.2f}, {gains[1]:+.2f}] (searched within +/-{FUTILITY_CAP:.1f})")
        return (f"not decided: {len(diffs)} pairs, the protocol needs at least {MIN_PAIRS}; "
                + hope)
    mean, sd = mean_sd(diffs)
    se = sd / len(diffs) ** 0.5
    passed = passes(diffs)
    rule = (f"mean gain {mean:+.2f} points {'>' if passed else '<='} 2 SE = {2 * se:.2f} "
            f"over {len(diffs)} pairs")
    if unhealthy:
        return (f"keep the incumbent: routing below the health bar (the accuracy rule alone "
                f"{'passes' if passed else 'fails'}: {rule})")
    return f"{'ADOPT' if passed else 'keep the incumbent'}: {rule}"


def routing_of(fit: dict) -> dict[str, float]:
    """The routing health a fit logged; empty for a static network or an older result."""
    return fit.get("detail", {}).get("routing", {})


def health(fits: dict[int, dict]) -> list[str]:
    """'seed 2: block3 mutual_info 0.028' for each routed block of each fit below the bar."""
    return [f"seed {s}: {failure}" for s, fit in sorted(fits.items())
            for failure in HEALTH_BAR.failures(routing_of(fit))]


def health_line(fits: dict[int, dict], failures: list[str]) -> str:
    recorded = sum(bool(routing_of(f)) for f in fits.values())
    head = f"candidate routing ({HEALTH_BAR}; {recorded} of {len(fits)} fits recorded it): "
    if failures:
        return head + "; ".join(failures) + " below the bar"
    return head + ("every routed block healthy" if recorded else "nothing to check")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("incumbent", type=Path, help="folder of the incumbent's results")
    p.add_argument("candidate", type=Path, help="folder of the candidate's results")
    args = p.parse_args(argv)
    incumbent, candidate = read_fits(args.incumbent), read_fits(args.candidate)
    seeds = sorted(set(incumbent) & set(candidate))
    for s in seeds:
        folds = {incumbent[s]["settings"]["fold"], candidate[s]["settings"]["fold"]}
        if folds != {s} or s not in SELECTION_FOLDS:
            sys.exit(f"error: seed {s}: folds {sorted(folds)}; pairs must hold out fold s, "
                     f"one of 0-{SELECTION_FOLDS[-1]}")
    if not seeds:
        sys.exit(f"error: no seed has a result in both {args.incumbent} and {args.candidate}")
    for name, fits in (("incumbent", incumbent), ("candidate", candidate)):
        if problem := mixed_settings(fits):
            sys.exit(f"error: {name}: {problem}")
    data = {f["settings"].get("data") for f in (*incumbent.values(), *candidate.values())}
    if len(data) != 1:
        sys.exit("error: the two folders' fits ran on different data (settings.data differs)")
    pairs = {"incumbent": [incumbent[s] for s in seeds],
             "candidate": [candidate[s] for s in seeds]}
    for name, fits in pairs.items():
        first = fits[0]["settings"]
        extra = "".join(f" --{a}" for a in first.get("template_args") or [])
        print(f"{name}: {first['config']}{extra} at {first['epochs']} epochs, minutes per fit "
              + ", ".join(f"{f['wall_s'] / 60:.1f}" for f in fits))
    print(means_line(pairs))
    accs = {name: [f["val_acc"] for f in fits] for name, fits in pairs.items()}
    print(paired_line(accs["candidate"], accs["incumbent"], "candidate - incumbent"))
    pairs_of = zip(accs["candidate"], accs["incumbent"], strict=True)
    failures = health(candidate)  # every fit: a failed bar anywhere rules adoption out
    print(health_line(candidate, failures))
    print(verdict([100 * (c - i) for c, i in pairs_of], unhealthy=bool(failures)))


if __name__ == "__main__":
    main()
