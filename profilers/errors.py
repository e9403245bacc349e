"""Typed errors of the lower layers (profilers, exporters); the toolkit's command line maps each kind to an exit status."""
from __future__ import annotations


class ModnasError(Exception):
    """Base class of every error the toolkit reports as one line."""


class BadInput(ModnasError, ValueError):
    """An argument, config file or data file is wrong."""


class BoardError(ModnasError, RuntimeError):
    """A board could not be reached or failed."""


class NotAvailable(ModnasError):
    """A feature or dependency is missing here."""
