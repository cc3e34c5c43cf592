"""Routing figures: the class x expert heat map and per-epoch routing-health curves."""

from collections.abc import Sequence

import torch

from cifar_moe.analysis.plots import pyplot


def matrix_figure(matrix: torch.Tensor, row_names: Sequence[str], title: str = ""):
    """A heat map with values, e.g. mean routing weight per class (rows) and expert (columns)."""
    plt = pyplot()
    rows, cols = matrix.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * cols, 0.45 * rows + 1))
    ax.imshow(matrix.cpu().numpy(), cmap="viridis", aspect="auto")
    ax.set_yticks(range(rows), row_names)
    ax.set_xticks(range(cols), [f"e{k}" for k in range(cols)])
    for i in range(rows):
        for j in range(cols):
            ax.text(j, i, f"{float(matrix[i, j]):.2f}", ha="center", va="center", fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def routing_figure(scalars: dict, metrics: Sequence[str] = ("entropy", "balance", "mutual_info")):
    """Per-epoch routing health of every block (``route/block<i>/<metric>`` tags)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.2), squeeze=False)
    blocks = sorted({tag.split("/")[1] for tag in scalars if tag.startswith("route/block")})
    for ax, metric in zip(axes.flat, metrics, strict=True):
        for block in blocks:
            values = [v for _, v in scalars.get(f"route/{block}/{metric}", [])]
            ax.plot(range(1, len(values) + 1), values, marker="o", label=block)  # epoch 1 first
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.set_ylim(-0.05, 1.05)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
