"""Typed errors of the lower layers (profilers, exporters); the toolkit's command line maps each kind to an exit status."""
from __future__ import annotations

from typing import Any


class ModnasError(Exception):
    """Base class of every error the toolkit reports as one line."""


class BadInput(ModnasError, ValueError):
    """An argument, config file or data file is wrong.

    ``param`` names the parameter (or parameters) at fault, each written in the message as
    `` `name` ``: the library speaks of its parameters, and a front end that takes them under other
    names (the command line's flags) rewrites those names when it reports the error."""

    def __init__(self, message: str = "", *, param: str | tuple[str, ...] | None = None) -> None:
        super().__init__(message)
        self.params: tuple[str, ...] = (param,) if isinstance(param, str) else tuple(param or ())

    @property
    def param(self) -> str | None:
        """The first parameter named at fault, or None."""
        return self.params[0] if self.params else None

    def __reduce__(self) -> tuple[Any, ...]:  # keep the parameters through pickling (worker processes)
        return (_rebuild, (type(self), str(self), self.params))


def _rebuild(kind: type[BadInput], message: str, params: tuple[str, ...]) -> BadInput:
    return kind(message, param=params)


class BoardError(ModnasError, RuntimeError):
    """A board could not be reached or failed."""


class NotAvailable(ModnasError):
    """A feature or dependency is missing here."""
