"""Jetson INA3221 power monitors through sysfs, both drivers.

* mainline ``ina3221`` hwmon (JetPack 5/6):
  ``bus/i2c/drivers/ina3221/<bus>-00<addr>/hwmon/hwmon<N>/`` with ``in<k>_label`` (rail),
  ``power<k>_input`` (µW) when present, else ``in<k>_input`` (mV) x ``curr<k>_input`` (mA).
  The "sum of shunt voltages" channel and disabled channels (``in<k>_enable`` = 0) are skipped;
  ``hwmon<N>`` changes between boots, so the directory is globbed and rails chosen by label.
* older ``ina3221x`` IIO (JetPack 4): ``bus/i2c/drivers/ina3221x/*/iio:device<M>/`` with
  ``rail_name_<c>`` and ``in_power<c>_input`` (mW), else ``in_voltage<c>_input`` (mV) x
  ``in_current<c>_input`` (mA).

``rail`` picks the value: ``auto`` (default: the input rail VDD_IN / POM_5V_IN, else the sum of
connected rails), ``sum`` (module rails), or a rail name.
"""
from __future__ import annotations

import glob
import os
import re
from typing import Callable, Dict, List, Optional, Tuple

from . import rails
from .base import POWER, Reader, Reading, Sensor, SensorError, check_keys, join, poll_from, read_number, read_text

NAME = "ina3221"
KEYS = frozenset({"rail", "root"})
HWMON_GLOB = "bus/i2c/drivers/ina3221/*/hwmon/hwmon*"
IIO_GLOB = "bus/i2c/drivers/ina3221x/*/iio:device*"
_LABEL = re.compile(r"in(\d+)_label$")
_RAIL_NAME = re.compile(r"rail_name_(\d+)$")

Channel = Callable[[], float]  # returns watts


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _hwmon_channels(directory: str, reader: Reader) -> List[Tuple[str, Channel]]:
    found = []  # type: List[Tuple[str, Channel]]
    for label_path in sorted(glob.glob(os.path.join(directory, "in*_label"))):
        match = _LABEL.search(label_path)
        if match is None:
            continue
        k = match.group(1)
        try:
            label = reader(label_path)
        except OSError:
            continue
        if "sum of shunt" in label.lower():
            continue
        enable = os.path.join(directory, "in%s_enable" % k)
        if _exists(enable) and read_number(reader, enable, NAME) == 0:
            continue
        power = os.path.join(directory, "power%s_input" % k)
        volt = os.path.join(directory, "in%s_input" % k)
        curr = os.path.join(directory, "curr%s_input" % k)
        if _exists(power):
            found.append((label, _scaled(reader, power, 1e-6)))
        elif _exists(curr):
            found.append((label, _product(reader, volt, curr)))
    return found


def _iio_channels(directory: str, reader: Reader) -> List[Tuple[str, Channel]]:
    found = []  # type: List[Tuple[str, Channel]]
    for name_path in sorted(glob.glob(os.path.join(directory, "rail_name_*"))):
        match = _RAIL_NAME.search(name_path)
        if match is None:
            continue
        c = match.group(1)
        try:
            label = reader(name_path)
        except OSError:
            continue
        power = os.path.join(directory, "in_power%s_input" % c)
        if _exists(power):
            found.append((label, _scaled(reader, power, 1e-3)))
        else:
            volt = os.path.join(directory, "in_voltage%s_input" % c)
            curr = os.path.join(directory, "in_current%s_input" % c)
            found.append((label, _product(reader, volt, curr)))
    return found


def _scaled(reader: Reader, path: str, scale: float) -> Channel:
    return lambda: read_number(reader, path, NAME) * scale


def _product(reader: Reader, volt_mv: str, curr_ma: str) -> Channel:
    return lambda: read_number(reader, volt_mv, NAME) * read_number(reader, curr_ma, NAME) * 1e-6


def channels(sysfs: str, reader: Reader = read_text) -> Tuple[str, List[Tuple[str, Channel]]]:
    """(driver, [(rail, read_watts)]) for every INA3221 channel under ``sysfs``."""
    found = []  # type: List[Tuple[str, Channel]]
    for directory in sorted(glob.glob(join(sysfs, HWMON_GLOB))):
        found.extend(_hwmon_channels(directory, reader))
    if found:
        return "ina3221 hwmon", found
    for directory in sorted(glob.glob(join(sysfs, IIO_GLOB))):
        found.extend(_iio_channels(directory, reader))
    return ("ina3221x iio" if found else ""), found


class Ina3221Sensor(Sensor):
    name = NAME
    kind = POWER
    poll_s = 0.02

    def __init__(self, rail: str = "auto", root: str = "/sys", reader: Reader = read_text,
                 now: Optional[object] = None) -> None:
        super().__init__(now)  # type: ignore[arg-type]
        driver, found = channels(root, reader)
        if not found:
            raise SensorError(
                "ina3221: no INA3221 power monitor under %s or %s (not a Jetson, or the driver is not loaded)"
                % (join(root, HWMON_GLOB), join(root, IIO_GLOB))
            )
        by_name = {}  # type: Dict[str, Channel]
        for label, channel in found:
            by_name.setdefault(label, channel)
        try:
            self.rail, names = rails.choose(list(by_name), rail)
        except ValueError as exc:
            raise SensorError("ina3221: %s" % exc) from None
        self.driver = driver
        self._channels = [by_name[n] for n in names]
        self.read()

    def read(self) -> Reading:
        watts = sum(channel() for channel in self._channels)
        return Reading(self.now(), watts=watts)

    def describe(self) -> str:
        return "%s rail %s" % (self.driver, self.rail)


def make(cfg: Dict[str, object], reader: Reader = read_text, now: Optional[object] = None) -> Ina3221Sensor:
    check_keys(NAME, cfg, KEYS)
    sensor = Ina3221Sensor(str(cfg.get("rail", "auto")), str(cfg.get("root", "/sys")), reader, now)
    sensor.poll_s = poll_from(cfg, Ina3221Sensor.poll_s)
    return sensor


def detect(root: str = "/", reader: Reader = read_text) -> List[Dict[str, object]]:
    sysfs = join(root, "sys")
    driver, found = channels(sysfs, reader)
    if not found:
        return []
    names = [label for label, _ in found]
    try:
        rail, _ = rails.choose(names, "auto")
    except ValueError:
        return []
    cfg_rail = rail if rail.upper() in rails.INPUT_RAILS else "auto"
    return [{
        "sensor": NAME,
        "config": {"sensor": NAME, "rail": cfg_rail, "root": sysfs},
        "detail": "%s rails: %s" % (driver, ", ".join(names)),
    }]
