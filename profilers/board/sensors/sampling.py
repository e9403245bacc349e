"""Sampling a sensor at a fixed rate, on a real clock (a thread) or a simulated one.

The sampler keeps every reading with its monotonic timestamp and marks which ones are real
sensor updates (a counter step, a changed value or a new sequence number). The meter turns the
readings into energy; the sampler only collects them.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Callable, List, Optional, Tuple

from .base import Reading, Sensor, SensorError


class Ticker:
    """Handle of a periodic call; ``cancel`` stops it."""

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._cancel = cancel

    def cancel(self) -> None:
        self._cancel()


class RealClock:
    """``time.monotonic``, ``time.sleep`` and a fixed-rate thread."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def every(self, period_s: float, fn: Callable[[], None]) -> Ticker:
        stop = threading.Event()

        def loop() -> None:
            start = time.monotonic()
            k = 1
            while not stop.wait(max(0.0, start + k * period_s - time.monotonic())):
                fn()
                # Fixed rate: skip ticks we are late for instead of bunching them up.
                k = max(k + 1, int((time.monotonic() - start) / period_s) + 1)

        thread = threading.Thread(target=loop, name="modnas-sampler", daemon=True)
        thread.start()

        def cancel() -> None:
            stop.set()
            thread.join()

        return Ticker(cancel)


class SimClock:
    """A simulated clock: time moves only through ``sleep``/``advance``; periodic calls fire on
    their exact tick times, in order. Makes meter runs deterministic and instant."""

    def __init__(self, t0: float = 0.0) -> None:
        self.t = t0
        self._events = []  # type: List[Tuple[float, int, float, Callable[[], None]]]
        self._ids = itertools.count()
        self._cancelled = set()  # type: set

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        target = self.t + max(0.0, seconds)
        while self._events and self._events[0][0] <= target:
            when, ident, period, fn = heapq.heappop(self._events)
            if ident in self._cancelled:
                continue
            self.t = when
            heapq.heappush(self._events, (when + period, ident, period, fn))
            fn()
        self.t = target

    def every(self, period_s: float, fn: Callable[[], None]) -> Ticker:
        ident = next(self._ids)
        heapq.heappush(self._events, (self.t + period_s, ident, period_s, fn))
        return Ticker(lambda: self._cancelled.add(ident))


class Sampler:
    """Reads ``sensor`` every ``poll_s`` seconds and keeps the readings.

    ``mark()`` takes one extra reading right now (window edges). ``updates`` counts readings
    that are real sensor updates; ``readings()`` returns ``(reading, is_update)`` pairs in time
    order.
    """

    def __init__(self, sensor: Sensor, poll_s: Optional[float] = None, clock: Optional[object] = None) -> None:
        self.sensor = sensor
        self.poll_s = float(poll_s if poll_s is not None else sensor.poll_s)
        if self.poll_s <= 0:
            raise SensorError("energy: the sampling period must be > 0 s")
        self.clock = clock or RealClock()
        self.updates = 0
        self._lock = threading.Lock()
        self._items = []  # type: List[Tuple[Reading, bool]]
        self._last = None  # type: Optional[Reading]
        self._ticker = None  # type: Optional[Ticker]
        self._error = None  # type: Optional[SensorError]

    def _is_update(self, reading: Reading) -> bool:
        last = self._last
        if last is None:
            return False
        if reading.seq is not None and last.seq is not None:
            return reading.seq != last.seq
        if reading.joules is not None:
            return reading.joules != last.joules
        return reading.watts != last.watts

    def _read(self) -> Reading:
        try:
            return self.sensor.read()
        except SensorError:
            raise
        except Exception as exc:  # a sensor bug must not end sampling silently or with a traceback
            raise SensorError("%s: reading failed: %s: %s" % (self.sensor.name, type(exc).__name__, exc)) from None

    def _take(self) -> Reading:
        with self._lock:
            reading = self._read()
            update = self._is_update(reading)
            if update:
                self.updates += 1
            self._items.append((reading, update))
            self._last = reading
            return reading

    def _tick(self) -> None:
        if self._error is not None:
            return
        try:
            self._take()
        except SensorError as exc:
            self._error = exc

    def start(self) -> Reading:
        """Take a first reading and start the periodic sampling."""
        first = self._take()
        self._ticker = self.clock.every(self.poll_s, self._tick)  # type: ignore[attr-defined]
        return first

    def mark(self) -> Reading:
        """One reading now, in line with the sampled ones; raises a failure seen by the thread."""
        self.raise_error()
        return self._take()

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def readings(self) -> List[Tuple[Reading, bool]]:
        with self._lock:
            items = list(self._items)
        items.sort(key=lambda item: item[0].t_mono)
        return items
