"""Errors that reach a user: each says what was expected, what came, and how to fix it."""


class HardmineError(Exception):
    """A problem with the user's input or environment; the CLI prints it without a traceback."""


class IngestError(HardmineError):
    """A dataset could not be ingested; nothing was written for it."""


class StoreError(HardmineError):
    """The store could not be opened or does not hold what was asked for."""
