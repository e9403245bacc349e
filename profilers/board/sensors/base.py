"""What every energy sensor shares: the reading, the error, file reads with clear messages.

Board-side code: Python 3.8 compatible, standard library only.
"""
from __future__ import annotations

import abc
import os
import time
from typing import Callable, Dict, NamedTuple, Optional

COUNTER = "counter"  # cumulative joules (RAPL energy_uj, NVML total energy)
POWER = "power"  # watts, sampled and integrated (INA3221, tegrastats, NVML power, commands)

# Keys every sensor accepts in the device file's ``energy`` mapping (read by the meter/agent).
# ``interval_ms`` is the update interval asked of tegrastats/command; the device-file schema
# gives it a default for every sensor, so the others accept and ignore it (they use poll_ms).
COMMON_KEYS = frozenset(
    {"sensor", "idle_s", "min_samples", "min_time_s", "max_time_s", "lag_s", "method", "poll_ms",
     "probe_s", "interval_ms"}
)

Reader = Callable[[str], str]
Clock = Callable[[], float]


class SensorError(RuntimeError):
    """A sensor is missing, unreadable or printed something unexpected; one-line message."""


class Reading(NamedTuple):
    """One look at a sensor.

    ``joules`` is the cumulative counter (counter sensors), ``watts`` the power (power sensors);
    the other is None. ``seq`` counts the sensor's own updates when it knows them (streams),
    so a repeated value still counts as a fresh update.
    """

    t_mono: float
    joules: Optional[float] = None
    watts: Optional[float] = None
    seq: Optional[int] = None


def read_text(path: str) -> str:
    """Default file reader: the stripped text of one sysfs file."""
    with open(path, "r") as fh:
        return fh.read().strip()


def read_number(reader: Reader, path: str, what: str, permission_hint: str = "") -> float:
    """Read one number from ``path``; every failure becomes a one-line SensorError."""
    try:
        text = reader(path)
    except FileNotFoundError:
        raise SensorError("%s: %s does not exist" % (what, path)) from None
    except PermissionError:
        hint = permission_hint or "run the modnas agent as root or `chmod a+r` the file"
        raise SensorError("%s: %s is not readable (permission denied): %s" % (what, path, hint)) from None
    except OSError as exc:
        raise SensorError("%s: reading %s failed: %s" % (what, path, exc.strerror or exc)) from None
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        raise SensorError("%s: %s holds %r, not a number" % (what, path, text[:40])) from None


def join(root: str, *parts: str) -> str:
    """``root`` joined with sysfs parts (absolute parts are taken relative to root)."""
    return os.path.join(root, *[p.lstrip("/") for p in parts])


class Sensor(abc.ABC):
    """A source of readings. Sub-classes set ``name`` and ``kind`` and implement ``read``."""

    name = "sensor"
    kind = POWER
    # Counter range in joules after which a counter starts again from 0 (None: never wraps).
    wrap_j = None  # type: Optional[float]
    # How often the sampler looks at this sensor, in seconds.
    poll_s = 0.02

    def __init__(self, now: Optional[Clock] = None) -> None:
        self.now = now or time.monotonic

    @abc.abstractmethod
    def read(self) -> Reading:
        """Read the sensor now (blocking only as long as one read takes)."""

    def describe(self) -> str:
        """Which hardware this reads, for messages and ``modnas doctor``."""
        return self.name

    def close(self) -> None:
        """Free processes and handles; sensors with none keep this default."""
        return None

    def __enter__(self) -> "Sensor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_keys(name: str, cfg: Dict[str, object], keys: frozenset) -> None:
    """Reject keys this sensor does not know, naming the first one."""
    allowed = COMMON_KEYS | keys
    for key in cfg:
        if key not in allowed:
            raise SensorError(
                "energy: unknown key %r for sensor %s (known: %s)"
                % (key, name, ", ".join(sorted(allowed)))
            )


def poll_from(cfg: Dict[str, object], default_s: float) -> float:
    """The sampler period: ``poll_ms`` from the device file, else the sensor default."""
    value = cfg.get("poll_ms")
    if value is None:
        return default_s
    try:
        poll = float(value) / 1000.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SensorError("energy: poll_ms must be a number of milliseconds, got %r" % (value,)) from None
    if poll <= 0:
        raise SensorError("energy: poll_ms must be > 0, got %r" % (value,))
    return poll
