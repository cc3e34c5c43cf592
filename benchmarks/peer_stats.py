"""Summary statistics of ``bench_peer.py``: mean +/- standard deviation over seeds, and the
paired (per-fold) difference with a 95 % Student-t interval. No scipy: a t table."""

import statistics

# Two-sided 95 % critical values of Student's t by degrees of freedom (1..30); beyond 30
# the normal value 1.96 is within 2 % of the exact one.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
       2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
       2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(df: int) -> float:
    """Two-sided 95 % critical value of Student's t with ``df`` degrees of freedom."""
    return T95[df - 1] if df <= len(T95) else 1.96


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def interval(values: list[float], sign: str = "+") -> str:
    """'[lo, hi]': the 95 % t-interval of the mean of ``values`` (n >= 2)."""
    mean, sd = mean_sd(values)
    half = t95(len(values) - 1) * sd / len(values) ** 0.5
    return f"[{mean - half:{sign}.1f}, {mean + half:{sign}.1f}]"


def paired_line(template: list[float], peer: list[float],
                names: str = "template - peer") -> str:
    """'template - peer' per fold in percentage points: mean, standard error and 95 %
    t-interval (the selection protocol adopts on mean > 2 SE over >= 5 folds)."""
    diffs = [100 * (t - p) for t, p in zip(template, peer, strict=True)]
    mean, sd = mean_sd(diffs)
    if len(diffs) < 2:
        return f"paired {names}: {mean:+.1f} points (1 fold; no interval)"
    return (f"paired {names}: {mean:+.1f} points, SE {sd / len(diffs) ** 0.5:.1f}, "
            f"95 % t-interval {interval(diffs)} ({len(diffs)} folds: "
            + ", ".join(f"{d:+.1f}" for d in diffs) + ")")


def means_line(results: dict[str, list[dict]]) -> str:
    """Each trainer's mean accuracy with its 95 % t-interval over seeds, in %."""
    parts = []
    for name, rs in results.items():
        accs = [100 * r["val_acc"] for r in rs]
        ci = f", 95 % t-interval {interval(accs, sign='')}" if len(accs) > 1 else ""
        parts.append(f"{name} {mean_sd(accs)[0]:.1f} %{ci}")
    return "held-out fold accuracy: " + "; ".join(parts)


def trainer_part(name: str, accs: list[float], epochs: int, wall_s: list[float]) -> str:
    """'peer: 83.2 +/- 0.6 % (5 seeds, 110 epochs, 14.1 min idle)'; minutes: mean measured
    wall time per fit ("idle": the epoch budget was calibrated on the idle machine)."""
    mean, sd = mean_sd(accs)
    seeds = f"{len(accs)} seed" + ("s" if len(accs) != 1 else "")
    minutes = statistics.fmean(wall_s) / 60
    return f"{name}: {100 * mean:.1f} +/- {100 * sd:.1f} % ({seeds}, {epochs} epochs, " \
           f"{minutes:.1f} min idle)"


def summary_line(peer: list[dict], template: list[dict]) -> str:
    """The benchmark's last line, from the per-seed result dicts of each trainer."""
    parts = [trainer_part(name, [r["val_acc"] for r in rs], rs[0]["settings"]["epochs"],
                          [r["wall_s"] for r in rs])
             for name, rs in (("peer", peer), ("template", template))]
    peer_mean = statistics.fmean(r["val_acc"] for r in peer)
    template_mean = statistics.fmean(r["val_acc"] for r in template)
    ratio = f"{template_mean / peer_mean:.3f}" if peer_mean > 0 else "n/a"
    return f"{parts[0]}; {parts[1]}; ratio {ratio}"
