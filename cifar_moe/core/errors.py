"""The one exception type for mistakes a user can fix.

Anything raised as :class:`UserError` is printed by the CLI as a single line
``error: <message>`` with a non-zero exit code, instead of a traceback. The message
names the setting at fault and says what to do.
"""


class UserError(ValueError):
    """A bad setting or bad input file; the message is the whole story."""
