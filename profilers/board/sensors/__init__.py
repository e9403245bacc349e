"""Energy sensors on the board, by name; each module is imported only when it is used.

``make_sensor(cfg)`` builds the sensor a device file's ``energy`` mapping names;
``probe_sensor(cfg)`` says whether it can be read and how often it updates;
``detect_sensors(root)`` lists the sensors this board appears to have (``modnas doctor``).
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Dict, List, Optional, Tuple

from .base import COUNTER, POWER, Reading, Sensor, SensorError

NAMES = ("rapl", "ina3221", "tegrastats", "nvml", "command")
SENSORS = {name: "%s.%s" % (__name__, name) for name in NAMES}  # type: Dict[str, str]
DEFAULT_PROBE_S = 1.5

__all__ = [
    "COUNTER", "POWER", "NAMES", "SENSORS", "Reading", "Sensor", "SensorError",
    "detect_sensors", "get_sensor_module", "make_sensor", "probe_sensor",
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


def _period(times: List[float]) -> Optional[float]:
    """Mean spacing of ``times`` (robust to the sampler's quantisation, unlike the median)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (times[-1] - times[0]) / (len(times) - 1)


def probe_sensor(cfg: Dict[str, object], duration_s: Optional[float] = None, clock: Optional[object] = None,
                 **kwargs: object) -> Dict[str, object]:
    """``{sensor, readable, detail, period_s, watts}``: read the sensor for ``duration_s``
    (``probe_s`` in cfg, default 1.5 s) and report the observed update period and mean power.
    ``clock`` (a RealClock or SimClock) and ``kwargs`` (for ``make_sensor``) serve tests."""
    from .sampling import RealClock, Sampler

    name = str(cfg.get("sensor", "")) if isinstance(cfg, dict) else ""
    result = {"sensor": name, "readable": False, "detail": "", "period_s": None, "watts": None}  # type: Dict[str, object]
    try:
        sensor = make_sensor(cfg, **kwargs)
    except SensorError as exc:
        result["detail"] = str(exc)
        return result
    clock = clock or RealClock()
    try:
        seconds = _seconds(duration_s if duration_s is not None else cfg.get("probe_s", DEFAULT_PROBE_S))
        sampler = Sampler(sensor, clock=clock)
        sampler.start()
        try:
            clock.sleep(seconds)  # type: ignore[attr-defined]
            sampler.mark()
        finally:
            sampler.stop()
        items = sampler.readings()
        updates = [r.t_mono for r, fresh in items if fresh]
        result["period_s"] = _period(updates)
        result["watts"] = _mean_watts(sensor, items)
        result["readable"] = True
        period = result["period_s"]
        every = ("updates every %.3f s" % period) if period else "no update seen in %.1f s" % seconds
        result["detail"] = "%s: %.2f W, %s" % (sensor.describe(), result["watts"] or 0.0, every)
    except SensorError as exc:
        result["detail"] = str(exc)
    finally:
        sensor.close()
    return result


def _seconds(value: object) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SensorError("energy: probe_s must be a number of seconds, got %r" % (value,)) from None
    if seconds <= 0:
        raise SensorError("energy: probe_s must be > 0, got %r" % (value,))
    return seconds


def _mean_watts(sensor: Sensor, items: List[Tuple[Reading, bool]]) -> Optional[float]:
    from .. import meter

    if len(items) < 2:
        return None
    return meter.mean_power(sensor, items, items[0][0].t_mono, items[-1][0].t_mono)


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
