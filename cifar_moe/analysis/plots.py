"""Figures for notebooks and TensorBoard: curves, per-class bars, confusion, sample grids,
study rows. Routing figures live in ``cifar_moe/routing/plots.py``.

matplotlib is imported lazily with the Agg backend so that training never needs a display.
"""

from collections.abc import Sequence

import torch

from cifar_moe.core.normalization import denormalize


def pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_grid(images, true, pred, class_names: Sequence[str], columns: int = 8):
    """Normalised images with 'pred / true' titles; wrong predictions in red."""
    plt = pyplot()
    rows = (len(images) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.9 * rows), squeeze=False)
    pictures = denormalize(images).permute(0, 2, 3, 1)  # (B, H, W, 3)
    for ax in axes.flat:
        ax.axis("off")
    for ax, picture, t, p in zip(axes.flat, pictures, true, pred, strict=False):
        ax.imshow(picture.numpy())
        colour = "black" if int(t) == int(p) else "red"
        ax.set_title(f"{class_names[int(p)]}\n({class_names[int(t)]})", fontsize=8, color=colour)
    fig.tight_layout()
    return fig


def curves_figure(scalars: dict, tags: Sequence[str] = ("loss", "acc")):
    """Per-epoch train/val curves from :func:`cifar_moe.runs.read_scalars`, one panel a tag.

    Train and val values are plotted against the epoch they belong to, counted from 1 as
    in the checkpoint names and the summary; the train/mixing tag, when present, shades the
    epochs in which batches were mixed.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(tags), figsize=(5 * len(tags), 3.5), squeeze=False)
    mixing = [v for _, v in scalars.get("train/mixing", [])]
    for ax, tag in zip(axes.flat, tags, strict=True):
        for stage in ("train", "val"):
            values = [v for _, v in scalars.get(f"{stage}/{tag}", [])]
            ax.plot(range(1, len(values) + 1), values, marker="o", label=f"{stage}/{tag}")
        for epoch, on in enumerate(mixing, start=1):
            if on:
                ax.axvspan(epoch - 0.5, epoch + 0.5, color="orange", alpha=0.08, lw=0)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    return fig


def per_class_bars(class_names: Sequence[str], accuracies: Sequence[float], title: str = ""):
    """Horizontal bars of per-class accuracy."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.barh(list(class_names), [float(a) for a in accuracies])
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def confusion_figure(confusion: torch.Tensor, class_names: Sequence[str]):
    """A (C, C) confusion matrix (rows: true class, columns: predicted), drawn by torchmetrics.

    torchmetrics' ``plot`` shows everything the hand-drawn version did (class names on both
    axes, the count in every cell) and picks a readable text colour per cell; only the figure
    size and the cell font (its 15 pt overlaps with 4-digit counts) are set here.
    """
    import warnings

    from torchmetrics.classification import MulticlassConfusionMatrix

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6.5), layout="constrained")
    metric = MulticlassConfusionMatrix(num_classes=len(class_names))
    with warnings.catch_warnings():
        # matplotlib converts the tensor with np.array(copy=False), which torch's __array__
        # does not take (NumPy 2 deprecation): harmless, and not ours to fix.
        warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept")
        metric.plot(val=confusion.cpu(), ax=ax, labels=list(class_names))
    for text in ax.texts:
        text.set_fontsize(8)
    return fig


def study_figure(results: dict):
    """A study's rows side by side (``results.json`` of ``python -m cifar_moe.study``): test
    accuracy per row (mean bar, one dot per run) and the mean validation curve per row. A
    study whose runs did not score the test images (a fold study) shows its own metric."""
    plt = pyplot()
    key = _bar_metric(results)
    rows = [r for r in results.get("rows", []) if _finished(r, key)]
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(12, 0.5 * len(rows) + 2.5), squeeze=True)
    for i, row in enumerate(rows):
        accs = [100 * run[key] for run in _finished(row, key)]
        bars.barh(i, sum(accs) / len(accs), color=f"C{i}", alpha=0.6)
        bars.plot(accs, [i] * len(accs), "k.", ms=5)
        band = row.get("aggregate", {}).get("val_acc_curve") or {}
        if band.get("epochs"):
            curves.plot([e + 1 for e in band["epochs"]], [100 * v for v in band["mean"]],
                        marker="o", ms=3, color=f"C{i}", label=row["name"])
    bars.set_yticks(range(len(rows)), [r["name"] for r in rows], fontsize=8)
    bars.invert_yaxis()
    bars.set_xlabel(f"{key.replace('_', ' ')} % (bar: mean, dots: runs)")
    curves.set_xlabel("epoch")
    curves.set_ylabel("val acc % (mean over runs)")
    if curves.lines:
        curves.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _bar_metric(results: dict) -> str:
    """test_acc where every finished run scored it (a split study, older fold runs), else
    the study's metric, as in its results.md: ``--no-test`` runs record test_acc as null."""
    runs = [run for row in results.get("rows", []) for run in row.get("runs", [])
            if run.get("status") == "ok"]
    if all(run.get("test_acc") is not None for run in runs):
        return "test_acc"
    return results.get("metric") or "test_acc"


def _finished(row: dict, key: str = "test_acc") -> list[dict]:
    return [r for r in row.get("runs", []) if r.get("status") == "ok" and r.get(key) is not None]
