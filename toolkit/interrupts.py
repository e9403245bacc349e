"""Stopping on Ctrl-C and SIGTERM: both become exceptions in the main thread, and campaigns in other threads
are stopped through a ``Stop`` that aborts what their boards are running."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

EXIT_SIGINT = 130
EXIT_SIGTERM = 143
MESSAGE = "interrupted; everything measured so far is stored"


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; handled like Ctrl-C (finished measurements stay stored), exit status 143."""


def exit_code(exc: BaseException) -> int:
    return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT


@contextmanager
def signals_raise() -> Iterator[None]:
    """For the duration, in the main thread: SIGINT raises KeyboardInterrupt (even when the process started with
    it ignored) and SIGTERM raises Terminated. Only the first signal raises: the clean-up it starts (stopping the
    board's processes) is not cut short by a second one. The previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if raised:
            return
        raised.append(signum)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in old:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)


class Stop:
    """Stops campaigns in other threads: once set, registered boards have their running command aborted and
    campaigns end before their next architecture."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._boards: set[Any] = set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def register(self, board: Any) -> None:
        with self._lock:
            self._boards.add(board)
        if self._event.is_set():
            board.abort()

    def unregister(self, board: Any) -> None:
        with self._lock:
            self._boards.discard(board)

    def set(self) -> None:
        self._event.set()
        with self._lock:
            boards = list(self._boards)
        for board in boards:
            board.abort()
