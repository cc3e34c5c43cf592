"""Children that a test interrupts with SIGINT receive it as a terminal's foreground job."""

import signal


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn`` for such a child: SIGINT back to its default, so Python raises
    KeyboardInterrupt. A test run started in the background by a non-interactive shell (a
    CI wrapper using ``&``) has SIGINT ignored, and children would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
