"""The one error type a person sees: a message they can act on, never a traceback."""


class UserError(Exception):
    """Bad input or an impossible request; ``str()`` is the whole message for the user."""

    exit_code = 1
