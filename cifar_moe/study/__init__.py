"""Study runner: rows x seeds of CLI runs, each in its own process, into one table.

    python -m cifar_moe.study <study.yaml> [--jobs N] [--out DIR] [--render]

See ``cifar_moe/study/__main__.py`` for the YAML format and the outputs.
"""
