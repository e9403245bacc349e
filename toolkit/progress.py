"""Progress on stderr: a bar on a terminal, a line now and then otherwise; never on stdout."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Shows itself only once the work has lasted a second."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.total, self.label, self.done = max(total, 0), label, 0
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.start = time.monotonic()
        self._last = 0.0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def step(self, note: str = "") -> None:
        self.done += 1
        self._show(note)

    def _show(self, note: str) -> None:
        now = time.monotonic()
        if self.quiet or now - self.start < 1.0 or (not self._tty and now - self._last < 5.0 and self.done < self.total):
            return
        self._last = now
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        text = f"{self.label} [{bar}] {self.done}/{self.total} {now - self.start:5.1f}s {note[:60]}"
        self.stream.write(("\r" + text + "\x1b[K") if self._tty else text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._tty and not self.quiet and time.monotonic() - self.start >= 1.0:
            self.stream.write("\n")
            self.stream.flush()
