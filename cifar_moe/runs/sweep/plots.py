"""Optuna's optimisation-history, parameter-importance and parallel-coordinate plots: PNGs
through ``optuna.visualization.matplotlib``, else HTML through plotly where it is installed.
A plot that cannot be drawn yet (too few trials) is named with the reason instead."""

import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from cifar_moe.analysis.plots import pyplot
from cifar_moe.core.atomic_files import atomic_write

PLOTS = ("optimization_history", "param_importances", "parallel_coordinate")


def write_plots(study: optuna.Study, out: Path) -> dict[str, str]:
    """Each plot's file name in ``out``, or ``not drawn: <why>``."""
    notes = {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for name in PLOTS:
        why = _not_drawable(name, complete)
        notes[name] = f"not drawn: {why}" if why else _draw(name, study, out)
    return notes


def _not_drawable(name: str, complete: list) -> str | None:
    if not complete:
        return "no trial has completed yet"
    if name != "param_importances":
        return None
    if len(complete) < 2:
        return "parameter importance needs at least 2 completed trials"
    if all(t.params == complete[0].params for t in complete):
        return "the completed trials share the same value of every parameter"
    return None


def _draw(name: str, study: optuna.Study, out: Path) -> str:
    with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
        warnings.simplefilter("ignore")
        try:
            plt = pyplot()  # Agg: a sweep may run without a display
            axes = getattr(optuna.visualization.matplotlib, f"plot_{name}")(study)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
            atomic_write(out / f"{name}.png", lambda fh: figure.savefig(
                fh, format="png", dpi=120, bbox_inches="tight"))
            plt.close(figure)
            return f"{name}.png"
        except Exception as err:  # any failure: try plotly, else say why
            drawn = _draw_html(name, study, out)
            return drawn or f"not drawn: {' '.join(str(err).split())[:200]}"


def _draw_html(name: str, study: optuna.Study, out: Path) -> str | None:
    try:
        figure = getattr(optuna.visualization, f"plot_{name}")(study)
        html = figure.to_html(include_plotlyjs="cdn")
    except Exception:  # plotly absent, or the plot impossible
        return None
    atomic_write(out / f"{name}.html", lambda fh: fh.write(html.encode()))
    return f"{name}.html"
