"""The one error the models package raises for bad input."""

from hardmine.errors import HardmineError


class ModelError(HardmineError, ValueError):
    """Bad input to a network, loss, training run or checkpoint: the message says how to fix it."""
