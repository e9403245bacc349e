"""RAPL through powercap: ``/sys/class/powercap/intel-rapl:*/energy_uj`` (cumulative µJ).

One domain, chosen by its ``name`` file (``package-0`` by default; ``psys``, ``core``, ``dram``,
``package-1`` ... on request). Domains nest (psys > package > core), so they are never added up.
The counter wraps at ``max_energy_range_uj``; the meter handles the wrap. AMD CPUs use the same
interface since Linux 5.8. Since Linux 5.10 ``energy_uj`` is readable by root only.
"""
from __future__ import annotations

import glob
import os
from typing import Dict, List, Optional

from .base import COUNTER, Reader, Reading, Sensor, SensorError, check_keys, join, poll_from, read_number, read_text

NAME = "rapl"
KEYS = frozenset({"domain", "root"})
PERMISSION_HINT = (
    "energy_uj is root-only since Linux 5.10: run the modnas agent as root, "
    "or `sudo chmod a+r` that file (a udev rule makes it last across boots)"
)


def _alias(domain: str) -> str:
    """``package`` means socket 0's package domain; other names are taken as written."""
    return "package-0" if domain == "package" else domain


def domains(sysfs: str, reader: Reader = read_text) -> Dict[str, str]:
    """Map domain name -> zone directory, for every RAPL zone under ``sysfs``."""
    found = {}  # type: Dict[str, str]
    for zone in sorted(glob.glob(join(sysfs, "class/powercap/intel-rapl:*"))):
        try:
            name = reader(os.path.join(zone, "name"))
        except OSError:
            continue
        # The same nested name (``core``) appears once per package: keep the first.
        found.setdefault(name, zone)
    return found


class RaplSensor(Sensor):
    name = NAME
    kind = COUNTER
    poll_s = 0.02

    def __init__(self, domain: str = "package", root: str = "/sys", reader: Reader = read_text,
                 now: Optional[object] = None) -> None:
        super().__init__(now)  # type: ignore[arg-type]
        self.reader = reader
        want = _alias(domain)
        zones = domains(root, reader)
        if not zones:
            raise SensorError(
                "rapl: no powercap RAPL zones under %s (kernel without intel_rapl/powercap, "
                "a virtual machine, or not an x86 CPU)" % join(root, "class/powercap")
            )
        if want not in zones:
            raise SensorError(
                "rapl: no RAPL domain named %r under %s (domains: %s)"
                % (want, join(root, "class/powercap"), ", ".join(sorted(zones)))
            )
        self.domain = want
        self.zone = zones[want]
        self.path = os.path.join(self.zone, "energy_uj")
        max_path = os.path.join(self.zone, "max_energy_range_uj")
        self.wrap_j = read_number(reader, max_path, "rapl", PERMISSION_HINT) / 1e6
        self.read()  # fail now, with the permission hint, if the counter is not readable

    def read(self) -> Reading:
        uj = read_number(self.reader, self.path, "rapl", PERMISSION_HINT)
        return Reading(self.now(), joules=uj / 1e6)

    def describe(self) -> str:
        return "RAPL %s at %s" % (self.domain, self.zone)


def make(cfg: Dict[str, object], reader: Reader = read_text, now: Optional[object] = None) -> RaplSensor:
    check_keys(NAME, cfg, KEYS)
    sensor = RaplSensor(str(cfg.get("domain", "package")), str(cfg.get("root", "/sys")), reader, now)
    sensor.poll_s = poll_from(cfg, RaplSensor.poll_s)
    return sensor


def detect(root: str = "/", reader: Reader = read_text) -> List[Dict[str, object]]:
    sysfs = join(root, "sys")
    zones = domains(sysfs, reader)
    if not zones:
        return []
    domain = "package" if "package-0" in zones else sorted(zones)[0]
    return [{
        "sensor": NAME,
        "config": {"sensor": NAME, "domain": domain, "root": sysfs},
        "detail": "RAPL domains: %s" % ", ".join(sorted(zones)),
    }]
