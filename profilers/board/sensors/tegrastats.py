"""Jetson ``tegrastats --interval <ms>``: a line every interval with ``<rail> current/average``.

The format changed between releases; ``parse_line`` takes all of them: an optional date prefix,
``off`` cores, rails in mW with or without the unit (``3913mW/3922mW``, ``598mW/598``,
``3140/3208``), ``-256C`` for sensors that are off, repeated ``NC`` (not connected) rails, and the
old L4T 28 lines with no rails at all. The board total is the input rail (VDD_IN / POM_5V_IN)
where there is one, else the sum of the module rails (AGX Xavier/Orin).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
from typing import Dict, List, Optional

from . import rails
from .base import POWER, Reading, Sensor, SensorError, check_keys, poll_from
from .stream import LineStream

NAME = "tegrastats"
KEYS = frozenset({"rail", "interval_ms", "command"})
DEFAULT_COMMAND = "tegrastats"

_DATE = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_CPU = re.compile(r"\bcpu \[([^\]]*)\](?:@(\d+))?", re.IGNORECASE)
_TEMP = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
_RAIL = re.compile(
    r"(?:^|\s)([A-Za-z][A-Za-z0-9_]*) (\d+(?:\.\d+)?)(mW|W)?/(\d+(?:\.\d+)?)(mW|W)?(?=\s|$)"
)
_SENSOR_OFF_C = -256.0


def _watts(value: str, unit: Optional[str]) -> float:
    """tegrastats prints milliwatts, with or without the unit."""
    return float(value) if unit == "W" else float(value) / 1000.0


def _cpus(text: str, freq: Optional[str]) -> List[Optional[Dict[str, Optional[float]]]]:
    cores = []  # type: List[Optional[Dict[str, Optional[float]]]]
    for item in text.split(","):
        item = item.strip()
        if not item or item == "off":
            cores.append(None)
            continue
        load, _, mhz = item.partition("@")
        mhz = mhz or (freq or "")
        cores.append({"load_pct": _number(load.rstrip("%")), "mhz": _number(mhz)})
    return cores


def _number(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None


def parse_line(line: str) -> Dict[str, object]:
    """One tegrastats line -> ``{time, ram_mb, cpus, temps_c, rails, nc_rails, input_rail,
    total_w}``. Rails are ``{name: {"current_w", "average_w"}}`` without the NC ones; a
    temperature of -256C (sensor off) is None; ``total_w`` is None on lines without rails."""
    date = _DATE.match(line)
    ram = _RAM.search(line)
    cpu = _CPU.search(line)
    temps = {}  # type: Dict[str, Optional[float]]
    for name, value in _TEMP.findall(line):
        celsius = float(value)
        temps[name] = None if celsius == _SENSOR_OFF_C else celsius
    found = {}  # type: Dict[str, Dict[str, float]]
    nc = 0
    for name, cur, cur_unit, avg, avg_unit in _RAIL.findall(line):
        if rails.is_nc(name):
            nc += 1
            continue
        found[name] = {"current_w": _watts(cur, cur_unit or avg_unit), "average_w": _watts(avg, avg_unit or cur_unit)}
    current = {name: v["current_w"] for name, v in found.items()}
    return {
        "time": date.group(1) if date else None,
        "ram_mb": [int(ram.group(1)), int(ram.group(2))] if ram else None,
        "cpus": _cpus(cpu.group(1), cpu.group(2)) if cpu else [],
        "temps_c": temps,
        "rails": found,
        "nc_rails": nc,
        "input_rail": rails.input_rail(found),
        "total_w": rails.total(current),
    }


class RailPicker:
    """Turns parsed lines into the watts of the configured rail(s); the choice is fixed by the
    first line with rails, so the value never switches meaning mid-run."""

    def __init__(self, rail: str) -> None:
        self.rail = rail
        self.names = None  # type: Optional[tuple]
        self.label = rail

    def __call__(self, line: str) -> Optional[float]:
        if not line.strip():
            return None
        parsed = parse_line(line)
        found = parsed["rails"]  # type: Dict[str, Dict[str, float]]  # type: ignore[assignment]
        if not found:
            if parsed["ram_mb"] is None and parsed["time"] is None:
                return None  # not a stats line (a banner or warning)
            raise ValueError("tegrastats prints no power rails on this board (old L4T): use the ina3221 sensor")
        if self.names is None:
            self.label, self.names = rails.choose(list(found), self.rail)
        try:
            return sum(found[name]["current_w"] for name in self.names)
        except KeyError as exc:
            raise ValueError("rail %s vanished from the tegrastats line" % exc) from None


class TegrastatsSensor(Sensor):
    name = NAME
    kind = POWER

    def __init__(self, rail: str = "auto", interval_ms: int = 100, command: str = DEFAULT_COMMAND,
                 now: Optional[object] = None) -> None:
        super().__init__(now)  # type: ignore[arg-type]
        if interval_ms < 1:
            raise SensorError("tegrastats: interval_ms must be >= 1, got %r" % interval_ms)
        self.interval_ms = interval_ms
        self.poll_s = min(0.02, interval_ms / 4000.0)
        argv = shlex.split(command) + ["--interval", str(int(interval_ms))]
        self.picker = RailPicker(rail)
        self.stream = LineStream(argv, self.picker, NAME, first_timeout_s=3.0 + 3 * interval_ms / 1000.0)
        try:
            self.read()
        except SensorError:
            self.stream.close()
            raise

    def read(self) -> Reading:
        watts, seq = self.stream.latest()
        return Reading(self.now(), watts=watts, seq=seq)

    def describe(self) -> str:
        return "tegrastats every %d ms, %s" % (self.interval_ms, self.picker.label)

    def close(self) -> None:
        self.stream.close()


def _interval(cfg: Dict[str, object]) -> int:
    value = cfg.get("interval_ms", 100)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SensorError("energy: interval_ms must be an integer, got %r" % (value,)) from None


def make(cfg: Dict[str, object], now: Optional[object] = None) -> TegrastatsSensor:
    check_keys(NAME, cfg, KEYS)
    sensor = TegrastatsSensor(str(cfg.get("rail", "auto")), _interval(cfg),
                              str(cfg.get("command", DEFAULT_COMMAND)), now)
    sensor.poll_s = poll_from(cfg, sensor.poll_s)
    return sensor


def detect(root: str = "/", which: Optional[object] = None) -> List[Dict[str, object]]:
    """tegrastats is found on the board's PATH (``root`` other than / looks in its usr/bin)."""
    if root in ("/", ""):
        path = (which or shutil.which)(DEFAULT_COMMAND)  # type: ignore[operator]
    else:
        candidate = os.path.join(root, "usr", "bin", DEFAULT_COMMAND)
        path = candidate if os.access(candidate, os.X_OK) else None
    if not path:
        return []
    return [{
        "sensor": NAME,
        "config": {"sensor": NAME, "rail": "auto", "interval_ms": 100, "command": path},
        "detail": "tegrastats at %s" % path,
    }]
