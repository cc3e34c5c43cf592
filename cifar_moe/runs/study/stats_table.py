"""The Markdown of a study's statistics (``compare.analyse``): one line per row."""

METRIC_WORDS = {
    "final_val_acc": ("final val acc", "validation accuracy of the final epoch's model on the "
                      "run's held-out fold"),
    "best_val_acc": ("best val acc", "the best epoch's validation accuracy on the run's "
                     "held-out fold (selected on that same fold, so biased upward)"),
    "test_acc": ("test acc", "test accuracy of the best-val/acc checkpoint"),
}


def _pct(value, fmt: str = ".1f") -> str:
    return "-" if value is None else f"{value * 100:{fmt}}"


def _interval(summary: dict, fmt: str = ".1f") -> str:
    if summary.get("low") is None:
        return "-"
    return f"[{_pct(summary['low'], fmt)}, {_pct(summary['high'], fmt)}]"


def _floor(floor: dict | None) -> str:
    return "-" if floor is None else f"+/- {floor['half_width'] * 100:.1f}"


def _p(value) -> str:
    if value is None:
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _comparison(row: dict, reference: str | None) -> list[str]:
    diff = row["stats"].get("vs_reference")
    if diff is None:
        return ["reference" if row["name"] == reference else "-", "", "", "", "", ""]
    holm = "(primary)" if diff["role"] == "primary" else _p(diff.get("p_holm"))
    return [_pct(diff["mean"], "+.1f"), _interval(diff, "+.1f"), _floor(diff["image_floor"]),
            str(diff["n"]), _p(diff["p"]), holm]


def stats_section(results: dict, cell) -> list[str]:
    """The explanation and the table; ``cell`` escapes a table cell (``table._cell``)."""
    metric, reference, primary = results["metric"], results["reference"], results["primary"]
    short, long = METRIC_WORDS[metric]
    shown = results.get("folds_shown")
    lines = [
        f"Metric `{metric}`: {long}"
        + (f"; only the runs on folds {', '.join(map(str, shown))}." if shown else ".")
        + " Mean and 95 % CI: Student t over the row's runs. Image floor: 1.96 x the standard "
        "error that the validation images alone impose, sqrt(p (1 - p) / N) over the N images "
        "of the row's distinct folds (for a difference: from the per-image disagreements, "
        "McNemar's form); the CI is the one to read, the floor says how much of it no number "
        "of seeds removes. acc/min: the mean in % over the mean fit minutes.", ""]
    if reference:
        corrected = (f"; the primary comparison, `{cell(primary)}`, is uncorrected" if primary
                     else "")
        lines[0] += (f" Difference to the reference `{cell(reference)}` in points: over the "
                     "(fold, seed) pairs both rows ran, paired t 95 % CI and two-sided p; "
                     f"p Holm: Holm-corrected over the secondary rows{corrected}.")
    head = ["row", "runs", f"{short} %", "95 % CI", "image floor"]
    if reference:
        head += ["diff, pp", "95 % CI", "image floor", "pairs", "p", "p Holm"]
    head += ["fit min", "acc %/min"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in results["rows"]:
        summary = row["stats"]
        cells = [row["name"], str(summary["n"]), _pct(summary["mean"]), _interval(summary),
                 _floor(summary["image_floor"])]
        if reference:
            cells += _comparison(row, reference)
        minutes, per_minute = summary["fit_minutes_mean"], summary["acc_pct_per_minute"]
        cells += ["-" if minutes is None else f"{minutes:.1f}",
                  "-" if per_minute is None else f"{per_minute:.2f}"]
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return lines
