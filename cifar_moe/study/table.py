"""The Markdown of a study: one results line per row, one routing line per row x block."""

import re

ROUTING = ("balance", "mutual_info", "dead_fraction", "entropy", "max_share", "expert_spread")


def _cell(text: str) -> str:
    """Keep a table cell on one line and its pipes from splitting the row."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _num(value, fmt: str = ".1f", scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:{fmt}}"


def _per_seed(runs: list[dict], shown: str) -> str:
    """``seed: acc`` per run; an error already in the mean's cell (``shown``) is not repeated."""
    parts = []
    for run in runs:
        if run["status"] == "ok":
            parts.append(f"{run['seed']}: {run['test_acc'] * 100:.1f}")
        elif run["status"] == "failed":
            error = "" if shown == f"failed: {run['error']}" else f": {run['error']}"
            parts.append(f"{run['seed']}: failed{error}")
        else:
            parts.append(f"{run['seed']}: not run")
    return ", ".join(parts)


def _test_acc(row: dict) -> str:
    agg = row["aggregate"]
    if agg["seeds_ok"] >= 2:
        return f"{agg['test_acc_mean'] * 100:.1f} +/- {agg['test_acc_std'] * 100:.1f}"
    if agg["seeds_ok"] == 1:
        return f"{agg['test_acc_mean'] * 100:.1f} (1 seed)"
    failed = [r for r in row["runs"] if r["status"] == "failed"]
    return f"failed: {failed[0]['error']}" if failed else "not run"


def results_table(rows: list[dict]) -> list[str]:
    lines = ["| row | test acc % (mean +/- std) | seed: test acc % | best val acc % "
             "| val gain over last quarter, pp | epochs | fit s | train img/s |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        agg = row["aggregate"]
        mean = _test_acc(row)
        cells = [row["name"], mean, _per_seed(row["runs"], mean),
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
    """The whole ``results.md``."""
    seeds = ", ".join(str(s) for s in results["seeds"])
    data = ", ".join(f"{k}={v}" for k, v in results["data"].items())
    lines = [f"# Study `{results['study']}`", "",
             f"Seeds {seeds} (unless a row names its own); data {data}. Test accuracy of "
             "the best-val/acc checkpoint; means over the seeds that finished; img/s over "
             "training epochs only."
             + (f" Every run adds `{' '.join(results['args'])}`." if results["args"] else ""),
             "", *results_table(results["rows"]), "",
             "Routing health at the last validation epoch (mean over seeds):", "",
             *routing_table(results["rows"]), ""]
    return "\n".join(lines)
