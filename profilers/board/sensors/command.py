"""A user command that prints watts (a USB power meter's tool, a smart plug's client ...).

``command`` is split with ``shlex.split`` and run without a shell. By default it is run every
``interval_ms`` and the last number it prints is the power in watts; with ``stream: true`` it is
started once and every line it prints is a reading.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import threading
from typing import Dict, List, Optional, Tuple

from .base import POWER, Reading, Sensor, SensorError, check_keys, poll_from
from .stream import LineStream

NAME = "command"
KEYS = frozenset({"command", "interval_ms", "stream", "timeout_s"})
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_ANY = re.compile(_NUMBER)
_WITH_UNIT = re.compile(r"(%s)\s*(mW|W)\b" % _NUMBER)


def parse_watts(text: str) -> Optional[float]:
    """The power in ``text``: the last number with a ``W``/``mW`` unit (``5.02V 0.91A 4.57W``),
    else the last number, taken as watts; None for text without a number."""
    with_unit = _WITH_UNIT.findall(text)
    if with_unit:
        value, unit = with_unit[-1]
        watts = float(value) / (1000.0 if unit == "mW" else 1.0)
    else:
        numbers = _ANY.findall(text)
        if not numbers:
            return None
        watts = float(numbers[-1])
    if watts < 0:
        raise ValueError("the command printed a negative power (%g W)" % watts)
    return watts


class PeriodicCommand:
    """Runs ``argv`` every ``interval_s`` on a thread; ``latest()`` gives (watts, run number)."""

    def __init__(self, argv: List[str], interval_s: float, timeout_s: float, first_timeout_s: float) -> None:
        self.argv = argv
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.first_timeout_s = first_timeout_s
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._watts = None  # type: Optional[float]
        self._seq = 0
        self._error = None  # type: Optional[str]
        self._once()  # the first run in the caller's thread: a bad command fails right here
        self._thread = threading.Thread(target=self._loop, name="modnas-command", daemon=True)
        self._thread.start()

    def _run(self) -> float:
        try:
            done = subprocess.run(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, universal_newlines=True, timeout=self.timeout_s)
        except FileNotFoundError:
            raise SensorError("command: %r not found on this board (give its full path)" % self.argv[0]) from None
        except PermissionError:
            raise SensorError("command: %r is not executable (chmod +x it)" % self.argv[0]) from None
        except subprocess.TimeoutExpired:
            raise SensorError("command: %r took longer than %.1f s" % (self.argv[0], self.timeout_s)) from None
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or [""]
            raise SensorError("command: %r exited with status %d %s" % (self.argv[0], done.returncode, tail[0]))
        try:
            watts = parse_watts(done.stdout)
        except ValueError as exc:
            raise SensorError("command: %s" % exc) from None
        if watts is None:
            raise SensorError("command: %r printed no number (expected watts)" % self.argv[0])
        return watts

    def _once(self) -> None:
        try:
            watts = self._run()
        except SensorError as exc:
            with self._cond:
                self._error = str(exc)
                self._cond.notify_all()
            return
        with self._cond:
            self._watts = watts
            self._seq += 1
            self._cond.notify_all()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s) and self._error is None:
            self._once()

    def latest(self) -> Tuple[float, int]:
        with self._cond:
            if self._error is not None:
                raise SensorError(self._error)
            if self._watts is None:
                raise SensorError("command: no reading yet")
            return self._watts, self._seq

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 1)


class CommandSensor(Sensor):
    name = NAME
    kind = POWER

    def __init__(self, command: str, interval_ms: float = 100, stream: bool = False,
                 timeout_s: float = 10.0, now: Optional[object] = None) -> None:
        super().__init__(now)  # type: ignore[arg-type]
        argv = shlex.split(command)
        if not argv:
            raise SensorError("command: energy.command is empty")
        if interval_ms <= 0:
            raise SensorError("command: interval_ms must be > 0, got %r" % interval_ms)
        self.command = command
        self.interval_ms = interval_ms
        self.poll_s = min(0.02, interval_ms / 4000.0)
        first = timeout_s + 3 * interval_ms / 1000.0
        if stream:
            self.source = LineStream(argv, parse_watts, NAME, first)  # type: object
        else:
            self.source = PeriodicCommand(argv, interval_ms / 1000.0, timeout_s, first)
        try:
            self.read()
        except SensorError:
            self.close()
            raise

    def read(self) -> Reading:
        watts, seq = self.source.latest()  # type: ignore[attr-defined]
        return Reading(self.now(), watts=watts, seq=seq)

    def describe(self) -> str:
        return "command %r every %g ms" % (self.command, self.interval_ms)

    def close(self) -> None:
        self.source.close()  # type: ignore[attr-defined]


def _number(cfg: Dict[str, object], key: str, default: float) -> float:
    value = cfg.get(key, default)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SensorError("energy: %s must be a number, got %r" % (key, value)) from None


def make(cfg: Dict[str, object], now: Optional[object] = None) -> CommandSensor:
    check_keys(NAME, cfg, KEYS)
    command = cfg.get("command")
    if not command:
        raise SensorError("energy: sensor command needs a 'command' key (a command line printing watts)")
    sensor = CommandSensor(str(command), _number(cfg, "interval_ms", 100), bool(cfg.get("stream", False)),
                           _number(cfg, "timeout_s", 10.0), now)
    sensor.poll_s = poll_from(cfg, sensor.poll_s)
    return sensor


def detect(root: str = "/") -> List[Dict[str, object]]:
    """A user command cannot be discovered: it is only ever configured."""
    return []
