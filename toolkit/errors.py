"""Typed errors and the exit status the command line gives each: the kinds are defined by the lower layer
(``modnas.profilers.errors``) so profilers and exporters raise them without importing the toolkit."""
from __future__ import annotations

from modnas.profilers.errors import BadInput, BoardError, ModnasError, NotAvailable

EXIT_CODES: tuple[tuple[type[ModnasError], int], ...] = ((BadInput, 2), (BoardError, 3), (NotAvailable, 1))


def exit_status(err: ModnasError) -> int:
    """The command's exit status for an error: 2 bad input, 3 board failure, 1 anything else."""
    for kind, code in EXIT_CODES:
        if isinstance(err, kind):
            return code
    return 1


__all__ = ["BadInput", "BoardError", "ModnasError", "NotAvailable", "EXIT_CODES", "exit_status"]
