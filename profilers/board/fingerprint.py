"""What the board is and in what state: CPU, frequencies, memory, OS, runtimes, temperatures, load."""
from __future__ import annotations

import glob
import os
import platform
import re
import socket
import sys
from typing import Dict, List, Optional


def _read(path: str) -> Optional[str]:
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _int(text: Optional[str]) -> Optional[int]:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def cpu_model(root: str) -> Optional[str]:
    """The CPU's marketing name from /proc/cpuinfo (x86 'model name', Arm 'Model'/'Hardware')."""
    text = _read(os.path.join(root, "proc/cpuinfo")) or ""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            found.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "model", "hardware", "cpu model", "processor"):
        if key in found and not found[key].isdigit():
            return found[key]
    return platform.processor() or None if root == "/" else None


def cpufreq(root: str) -> List[dict]:
    """Per CPU: governor and current/min/max frequency in kHz from the cpufreq sysfs (empty when absent)."""
    base = os.path.join(root, "sys/devices/system/cpu")
    rows = []
    cpus = glob.glob(os.path.join(base, "cpu[0-9]*"))
    for path in sorted(cpus, key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)))):
        freq = os.path.join(path, "cpufreq")
        if not os.path.isdir(freq):
            continue
        rows.append(
            {
                "cpu": int(os.path.basename(path)[3:]),
                "governor": _read(os.path.join(freq, "scaling_governor")),
                "cur_khz": _int(_read(os.path.join(freq, "scaling_cur_freq"))),
                "min_khz": _int(_read(os.path.join(freq, "scaling_min_freq"))),
                "max_khz": _int(_read(os.path.join(freq, "scaling_max_freq"))),
                "hw_max_khz": _int(_read(os.path.join(freq, "cpuinfo_max_freq"))),
            }
        )
    return rows


def memory(root: str) -> Dict[str, Optional[int]]:
    """Total and available memory in MiB from /proc/meminfo."""
    values = {}
    for line in (_read(os.path.join(root, "proc/meminfo")) or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0]) // 1024
    return {"total_mb": values.get("MemTotal"), "available_mb": values.get("MemAvailable")}


def os_release(root: str) -> Optional[str]:
    """PRETTY_NAME from /etc/os-release."""
    for line in (_read(os.path.join(root, "etc/os-release")) or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def thermal(root: str) -> Dict[str, float]:
    """Thermal-zone temperatures in degrees Celsius, keyed by zone type (or zone name)."""
    temps = {}
    zones = glob.glob(os.path.join(root, "sys/class/thermal/thermal_zone*"))
    for zone in sorted(zones, key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0)):
        milli = _int(_read(os.path.join(zone, "temp")))
        if milli is None:
            continue
        name = _read(os.path.join(zone, "type")) or os.path.basename(zone)
        if name in temps:
            name = "%s.%s" % (name, os.path.basename(zone))
        temps[name] = milli / 1000.0
    return temps


def loadavg(root: str) -> Optional[List[float]]:
    """The 1, 5 and 15 minute load averages."""
    parts = (_read(os.path.join(root, "proc/loadavg")) or "").split()
    try:
        return [float(p) for p in parts[:3]] if len(parts) >= 3 else None
    except ValueError:
        return None


def power_mode(root: str) -> Optional[str]:
    """Jetson nvpmodel power mode, when the board keeps one."""
    text = _read(os.path.join(root, "var/lib/nvpmodel/status"))
    return text.split(":", 1)[-1].strip() if text else None


def collect(root: str = "/", runtimes: Optional[dict] = None) -> dict:
    """The whole fingerprint; `root` points the sysfs/procfs/etc reads elsewhere (tests, containers)."""
    local = root == "/"
    try:
        affinity = len(os.sched_getaffinity(0)) if local else None
    except AttributeError:
        affinity = None
    freqs = cpufreq(root)
    governors = sorted({row["governor"] for row in freqs if row["governor"]})
    return {
        "hostname": _read(os.path.join(root, "proc/sys/kernel/hostname")) or (socket.gethostname() if local else None),
        "cpu_model": cpu_model(root),
        "machine": platform.machine(),
        "cores": os.cpu_count() if local else len(glob.glob(os.path.join(root, "sys/devices/system/cpu/cpu[0-9]*"))),
        "affinity_cores": affinity,
        "governor": ",".join(governors) if governors else None,
        "cpufreq": freqs,
        "memory": memory(root),
        "os": os_release(root),
        "kernel": _read(os.path.join(root, "proc/sys/kernel/osrelease")) or (platform.release() if local else None),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "runtimes": runtimes if runtimes is not None else {},
        "thermal_c": thermal(root),
        "loadavg": loadavg(root),
        "power_mode": power_mode(root),
    }
