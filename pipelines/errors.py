"""Errors a user can fix (bad path, bad config value, missing checkpoint).

The CLI prints these as one line and exits with code 2; anything else is a bug and keeps its
traceback. Lives in ``pipelines`` so every layer below the CLI can raise it.
"""


class UserError(Exception):
    """A problem in the user's input, with the fix in the message."""
