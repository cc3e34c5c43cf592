"""``python -m cifar_moe.export``: a door to ``cifar_moe.deploy.export`` (the code lives there).

``export_classifier`` and ``deployable`` are re-exported for code written against 0.1.
"""

from cifar_moe.deploy.export import deployable, export_classifier

__all__ = ["deployable", "export_classifier"]
