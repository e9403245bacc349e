"""Energy sensors on the board, by name; each module is imported only when it is used.

``make_sensor(cfg)`` builds the sensor a device file's ``energy`` mapping names;
``modnas.profilers.board.meter.probe_sensor(cfg)`` says whether it can be read and how often it updates;
``detect_sensors(root)`` lists the sensors this board appears to have (``modnas doctor``).
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Dict, List

from .base import COUNTER, POWER, Reading, Sensor, SensorError

NAMES = ("rapl", "ina3221", "tegrastats", "nvml", "command")
SENSORS = {name: "%s.%s" % (__name__, name) for name in NAMES}  # type: Dict[str, str]

__all__ = [
    "COUNTER", "POWER", "NAMES", "SENSORS", "Reading", "Sensor", "SensorError",
    "detect_sensors", "get_sensor_module", "make_sensor",
]


def get_sensor_module(name: str) -> ModuleType:
    """The module implementing sensor ``name``."""
    if name not in SENSORS:
        raise SensorError("energy: unknown sensor %r (known: %s)" % (name, ", ".join(NAMES)))
    return importlib.import_module(SENSORS[name])


def make_sensor(cfg: Dict[str, object], **kwargs: object) -> Sensor:
    """Build the sensor for an ``energy`` mapping, e.g. ``{"sensor": "rapl", "domain": "package"}``.

    Keys set to None count as not given. Keyword arguments go to the module's ``make`` (``now=`` a clock, ``reader=`` a file reader for
    sysfs sensors, ``nvml=`` a pynvml-like module). Raises SensorError with one line.
    """
    if not isinstance(cfg, dict) or cfg.get("sensor") is None:
        raise SensorError("energy: the mapping needs a 'sensor' key (one of %s)" % ", ".join(NAMES))
    given = {key: value for key, value in cfg.items() if value is not None}  # null = not set
    return get_sensor_module(str(given["sensor"])).make(given, **kwargs)  # type: ignore[no-any-return]


def detect_sensors(root: str = "/") -> List[Dict[str, object]]:
    """The sensors this board appears to have: ``[{sensor, config, readable, detail}]``.

    ``root`` is the file-system root to look under (tests point it at a fake tree). Every
    candidate is opened once, so an unreadable one says why (e.g. RAPL as a normal user).
    """
    found = []  # type: List[Dict[str, object]]
    for name in NAMES:
        for candidate in get_sensor_module(name).detect(root):
            entry = dict(candidate)
            try:
                make_sensor(dict(candidate["config"])).close()  # type: ignore[arg-type]
                entry["readable"] = True
            except SensorError as exc:
                entry["readable"] = False
                entry["detail"] = str(exc)
            found.append(entry)
    return found
