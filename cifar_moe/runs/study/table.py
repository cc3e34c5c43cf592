"""The Markdown of a study: one results line per row, one routing line per row x block."""

import re
import statistics

from cifar_moe.runs.study.stats_table import METRIC_WORDS, stats_section

ROUTING = ("balance", "mutual_info", "dead_fraction", "entropy", "max_share", "expert_spread")


def _cell(text: str) -> str:
    """Keep a table cell on one line and its pipes from splitting the row."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _num(value, fmt: str = ".1f", scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:{fmt}}"


def shown_metric(results: dict) -> str:
    """The accuracy of the results table: test accuracy where every finished run scored it
    (a split study; fold runs made before ``--no-test``), else the study's metric (runs that
    did not score the test images have no test accuracy to show)."""
    ok = [run for row in results["rows"] for run in row["runs"] if run["status"] == "ok"]
    if all(run.get("test_acc") is not None for run in ok):
        return "test_acc"
    return results.get("metric") or "test_acc"


def _per_seed(runs: list[dict], shown: str, key: str) -> str:
    """``seed: acc`` per run (``f<fold> s<seed>: acc`` in a fold study); an error already in
    the mean's cell (``shown``) is not repeated."""
    parts = []
    for run in runs:
        label = run["seed"] if run.get("fold") is None else f"f{run['fold']} s{run['seed']}"
        if run["status"] == "ok":
            parts.append(f"{label}: {_num(run.get(key), scale=100)}")
        elif run["status"] == "failed":
            error = "" if shown == f"failed: {run['error']}" else f": {run['error']}"
            parts.append(f"{label}: failed{error}")
        else:
            parts.append(f"{label}: not run")
    return ", ".join(parts)


def _mean_cell(row: dict, key: str) -> str:
    values = [run[key] for run in row["runs"]
              if run["status"] == "ok" and run.get(key) is not None]
    if len(values) >= 2:
        return f"{statistics.fmean(values) * 100:.1f} +/- {statistics.stdev(values) * 100:.1f}"
    if len(values) == 1:
        return f"{values[0] * 100:.1f} (1 seed)"
    if row["aggregate"]["seeds_ok"]:
        return "-"  # finished runs that did not record it
    failed = [r for r in row["runs"] if r["status"] == "failed"]
    return f"failed: {failed[0]['error']}" if failed else "not run"


def results_table(rows: list[dict], key: str = "test_acc") -> list[str]:
    """One line per row; ``key`` the accuracy of its first two columns (``shown_metric``)."""
    short = METRIC_WORDS[key][0]
    lines = [f"| row | {short} % (mean +/- std) | seed: {short} % | best val acc % "
             "| val gain over last quarter, pp | epochs | fit s | train img/s |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        agg = row["aggregate"]
        mean = _mean_cell(row, key)
        cells = [row["name"], mean, _per_seed(row["runs"], mean, key),
                 _num(agg["best_val_acc_mean"], scale=100),
                 _num(agg.get("last_quarter_gain_mean"), "+.1f", scale=100),
                 _num(agg["epochs_run_mean"], ".3g"),
                 _num(agg["fit_seconds_mean"], ".0f"), _num(agg["train_img_per_s_mean"], ".0f")]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _blocks(routing: dict) -> list[str]:
    found = {m.group(1) for k in routing if (m := re.match(r"route/(block\d+)/", k))}
    return sorted(found, key=lambda b: int(b[len("block"):]))


def routing_table(rows: list[dict]) -> list[str]:
    lines = ["| row | block | " + " | ".join(ROUTING) + " |",
             "|---|---|" + "---|" * len(ROUTING)]
    for row in rows:
        routing = row["aggregate"]["routing_mean"]
        for block in _blocks(routing):
            values = [_num(routing.get(f"route/{block}/{m}"), ".2f") for m in ROUTING]
            lines.append(f"| {_cell(row['name'])} | {block} | " + " | ".join(values) + " |")
    return lines if len(lines) > 2 else ["No row has routed blocks (K > 1)."]


def markdown(results: dict) -> str:
    """The whole ``results.md``; a fold study (or one naming a metric or a reference row)
    has its statistics first."""
    seeds = ", ".join(str(s) for s in results["seeds"])
    data = ", ".join(f"{k}={v}" for k, v in results["data"].items())
    folds = results.get("folds")
    first = (f"Folds {', '.join(map(str, folds))} x seeds {seeds} (unless a row names its "
             "own; each run validates on its fold and trains on the others)" if folds
             else f"Seeds {seeds} (unless a row names its own)")
    stats = [*stats_section(results, _cell), ""] if results.get("metric") else []
    key = shown_metric(results)
    described = METRIC_WORDS[key][1]
    lines = [f"# Study `{results['study']}`", "",
             f"{first}; data {data}. {described[0].upper()}{described[1:]}; means over the "
             "seeds that finished; img/s over training epochs only."
             + (f" Every run adds `{' '.join(results['args'])}`." if results["args"] else ""),
             "", *stats, *results_table(results["rows"], key), "",
             "Routing health at the last validation epoch (mean over seeds):", "",
             *routing_table(results["rows"]), ""]
    return "\n".join(lines)
