"""Hyperparameter sweeps on Optuna: each trial a normal CLI ``fit`` in ``<out>/trial-<n>/``.

    python -m cifar_moe.sweep <sweep.yaml> [--trials N] [--jobs N] [--storage URL] [--arg K=V]

The command itself is ``cifar_moe/cli/sweep.py``; this package holds what it drives: the
sweep YAML (``spec``, ``space``), the Optuna study (``storage``), the trial loop and its
budget (``engine``, ``budget``), where a trial runs (``launch``: a local process or a
submitit job; ``jobs``), the callback inside each trial (``reporter``) and the files
written at the end (``outputs``, ``plots``). Nothing here imports the CLI: the command
passes its checks in.
"""
