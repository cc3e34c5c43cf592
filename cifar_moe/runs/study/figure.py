"""``curves.png``: validation accuracy per epoch, one mean line and min-max band per row."""

from pathlib import Path

from cifar_moe.core.atomic_files import atomic_write


def curves_figure(results: dict, path: Path) -> None:
    """Draw every row that has a curve and save it (7 x 4 in, 100 dpi) atomically."""
    # Agg via the object API: no display needed, and the study process never imports torch.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.subplots()
    drawn = 0
    for row in results["rows"]:
        band = row["aggregate"]["val_acc_curve"]
        if not band["epochs"]:
            continue
        # Epochs count from 1 on the axis, as a reader says "after 3 epochs".
        x = [e + 1 for e in band["epochs"]]
        pct = {k: [v * 100 for v in band[k]] for k in ("mean", "min", "max")}
        seeds = row["aggregate"]["seeds_ok"]
        (line,) = ax.plot(x, pct["mean"], marker="o", markersize=3,
                          label=f"{row['name']} ({seeds} seed{'s' if seeds != 1 else ''})")
        if seeds > 1:
            ax.fill_between(x, pct["min"], pct["max"], color=line.get_color(), alpha=0.2)
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center",
                transform=ax.transAxes)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("val acc % (mean, min-max band)")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"))
