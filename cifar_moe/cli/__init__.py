"""The top layer: the LightningCLI subclass, its help, and the study command. Nothing imports it
but the ``python -m`` doors.

``cli_main(args)`` runs ``fit|validate|test|predict`` in-process (tests, notebooks);
``main`` is the ``cifar-moe`` console script.
"""

from cifar_moe.cli.main import argument_problem, cli_main, main

__all__ = ["argument_problem", "cli_main", "main"]
