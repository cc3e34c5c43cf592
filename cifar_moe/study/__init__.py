"""``python -m cifar_moe.study``: a door to ``cifar_moe.cli.study`` (the code lives there)."""
