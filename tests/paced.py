"""A callback that paces a test run, so a signal sent "during training" lands during it.

A tiny trial finishes its epochs in well under a second on a fast machine, and a test that
waits for the first checkpoint and then sends Ctrl-C could find the run already done (a CI
run did). A fixed pause per epoch makes the window seconds long on any machine."""

import time

from lightning.pytorch.callbacks import Callback

# the class path a child process (PYTHONPATH=tests) gives ``--trainer.callbacks+=``
PACED = "paced.PausePerEpoch"


class PausePerEpoch(Callback):
    """Sleep ``seconds`` after each training epoch."""

    def __init__(self, seconds: float = 0.5) -> None:
        self.seconds = seconds

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        time.sleep(self.seconds)
