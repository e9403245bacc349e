"""A command that keeps printing lines (``tegrastats``, a meter's streaming tool): run it without a
shell, parse each line on a reader thread and keep the latest power with its update number."""
from __future__ import annotations

import collections
import subprocess
import threading
from typing import Callable, List, Optional, Tuple

from .base import SensorError

Parse = Callable[[str], Optional[float]]  # a line -> watts, None to skip, ValueError when wrong


def start_process(argv: List[str], what: str) -> "subprocess.Popen[str]":
    """Start ``argv`` with stdout/stderr piped; a missing command is one clear line."""
    if not argv:
        raise SensorError("%s: empty command" % what)
    try:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            universal_newlines=True, bufsize=1,
        )
    except FileNotFoundError:
        raise SensorError("%s: command %r not found on this board (set energy.command to its full path)"
                          % (what, argv[0])) from None
    except PermissionError:
        raise SensorError("%s: command %r is not executable (chmod +x it)" % (what, argv[0])) from None


class LineStream:
    """Runs ``argv`` and parses its stdout lines; ``latest()`` gives (watts, update number)."""

    def __init__(self, argv: List[str], parse: Parse, what: str, first_timeout_s: float) -> None:
        self.what = what
        self.first_timeout_s = first_timeout_s
        self._parse = parse
        self._cond = threading.Condition()
        self._watts = None  # type: Optional[float]
        self._seq = 0
        self._error = None  # type: Optional[str]
        self._stderr = collections.deque(maxlen=3)  # type: Deque[str]
        self._proc = start_process(argv, what)
        self._threads = [
            threading.Thread(target=self._read_stdout, name="modnas-%s" % what, daemon=True),
            threading.Thread(target=self._read_stderr, name="modnas-%s-err" % what, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                watts = self._parse(line)
            except ValueError as exc:
                self._fail("%s: %s" % (self.what, exc))
                return
            if watts is None:
                continue
            with self._cond:
                self._watts = watts
                self._seq += 1
                self._cond.notify_all()
        code = self._proc.wait()
        tail = " ".join(line.strip() for line in self._stderr if line.strip())
        self._fail("%s: the command exited (status %s)%s" % (self.what, code, (": " + tail) if tail else ""))

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)

    def _fail(self, message: str) -> None:
        with self._cond:
            if self._error is None:
                self._error = message
            self._cond.notify_all()

    def latest(self) -> Tuple[float, int]:
        """The newest power and its update number; waits for the first line up to the timeout."""
        with self._cond:
            if self._watts is None and self._error is None:
                self._cond.wait_for(lambda: self._watts is not None or self._error is not None,
                                    timeout=self.first_timeout_s)
            if self._error is not None:
                raise SensorError(self._error)
            if self._watts is None:
                raise SensorError("%s: no reading within %.1f s" % (self.what, self.first_timeout_s))
            return self._watts, self._seq

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._fail("%s: closed" % self.what)
        for thread in self._threads:
            thread.join(timeout=5)
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()
