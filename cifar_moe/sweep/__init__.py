"""``python -m cifar_moe.sweep``: a door to ``cifar_moe.cli.sweep`` (the code lives there)."""
