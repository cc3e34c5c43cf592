"""How a run's best checkpoint is chosen and named: typed once, read by fit, study and export."""

SELECT_METRIC = "val/acc"
"""Epoch metric the best checkpoint is chosen on; higher is better."""

BEST_PREFIX = "best-"
"""File-name start of a best checkpoint (``best-029.ckpt``); ``last.ckpt`` is the other kind."""
