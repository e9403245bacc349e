"""Typed errors that the command line turns into one line and an exit status."""
from __future__ import annotations


class ModnasError(Exception):
    """Base class; ``exit_code`` is what the command returns."""

    exit_code = 1


class BadInput(ModnasError, ValueError):
    """An argument, config file or data file is wrong (exit 2)."""

    exit_code = 2


class BoardError(ModnasError, RuntimeError):
    """A board could not be reached or failed (exit 3)."""

    exit_code = 3


class NotAvailable(ModnasError):
    """A feature or dependency is missing here (exit 1)."""

    exit_code = 1
