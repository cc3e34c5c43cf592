"""Study runner: rows x seeds of CLI runs, each in its own process, into one table.

    python -m cifar_moe.study <study.yaml> [--jobs N] [--out DIR] [--render]

The command itself is ``cifar_moe/cli/study.py``; this package holds what it drives.
"""
