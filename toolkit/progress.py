"""Progress on stderr, never on stdout: rich's bar (rate, ETA) on a terminal, a plain line now and then in logs."""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO

SHOW_AFTER_S = 1.0  # short work shows nothing
LOG_EVERY_S = 5.0  # not a terminal: one line at most this often, and at the end


class ProgressBar:
    """Counts steps of ``total``; shows itself only once the work has lasted a second."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.total, self.label, self.done = max(total, 0), label, 0
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.start = time.monotonic()
        self._last = 0.0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar: Any = None
        self._task: Any = None

    def step(self, note: str = "") -> None:
        self.done += 1
        now = time.monotonic()
        if self.quiet or now - self.start < SHOW_AFTER_S:
            return
        if self._tty:
            self._show_bar(note[:60])
        elif now - self._last >= LOG_EVERY_S or self.done >= self.total:
            self._last = now
            self.stream.write(f"{self.label}: {self.done}/{self.total} in {now - self.start:.1f}s {note[:60]}".rstrip()
                              + "\n")
            self.stream.flush()

    def _show_bar(self, note: str) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, ProgressColumn, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            from rich.text import Text

            class Rate(ProgressColumn):
                """Steps per second, or seconds per step when slower than one a second."""

                def render(self, task: Any) -> Text:
                    speed = task.speed
                    if not speed:
                        return Text("")
                    return Text(f"{speed:.1f}/s" if speed >= 1 else f"{1 / speed:.1f} s each")

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(),
                            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
                            console=Console(file=self.stream), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total or None, note="")
        self._bar.update(self._task, completed=self.done, note=note)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
