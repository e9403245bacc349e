"""NVIDIA GPUs through NVML (``nvidia-ml-py``, imported only when this sensor is used).

The total-energy counter ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded,
Volta and newer) where the GPU supports it, else power polling with ``nvmlDeviceGetPowerUsage``
(mW). The counter moves every 20-100 ms, so short windows read 0: the meter extends the window
until it has seen enough steps. NVML is not on Jetson before JetPack 7.
"""
from __future__ import annotations

import importlib
import os
from typing import Dict, List, Optional

from .base import COUNTER, POWER, Reading, Sensor, SensorError, check_keys, join, poll_from

NAME = "nvml"
KEYS = frozenset({"index", "mode"})
MODES = ("auto", "energy", "power")
MISSING = ("nvml: the Python package pynvml is not installed for this interpreter: "
           "pip install nvidia-ml-py (or the toolkit's 'energy' extra)")


def load_nvml() -> object:
    """Import pynvml lazily; a missing package is one line saying how to install it."""
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        raise SensorError(MISSING) from None


class NvmlSensor(Sensor):
    name = NAME
    poll_s = 0.02

    def __init__(self, index: int = 0, mode: str = "auto", nvml: Optional[object] = None,
                 now: Optional[object] = None) -> None:
        super().__init__(now)  # type: ignore[arg-type]
        if mode not in MODES:
            raise SensorError("nvml: mode must be one of %s, got %r" % (", ".join(MODES), mode))
        self.nv = nvml if nvml is not None else load_nvml()
        error = getattr(self.nv, "NVMLError", Exception)
        try:
            self.nv.nvmlInit()  # type: ignore[attr-defined]
        except error as exc:  # type: ignore[misc]
            raise SensorError("nvml: NVML did not start (%s): no NVIDIA driver on this board?" % exc) from None
        try:
            count = self.nv.nvmlDeviceGetCount()  # type: ignore[attr-defined]
            if not 0 <= index < count:
                raise SensorError("nvml: no GPU with index %d (this board has %d)" % (index, count))
            self.handle = self.nv.nvmlDeviceGetHandleByIndex(index)  # type: ignore[attr-defined]
            self.index = index
            self.kind = self._pick_kind(mode, error)
            self.read()
        except BaseException:
            self.close()
            raise

    def _pick_kind(self, mode: str, error: type) -> str:
        if mode == "power":
            return POWER
        try:
            self.nv.nvmlDeviceGetTotalEnergyConsumption(self.handle)  # type: ignore[attr-defined]
            return COUNTER
        except error as exc:  # type: ignore[misc]
            if mode == "energy":
                raise SensorError("nvml: GPU %d has no total-energy counter (%s): use mode: power" % (self.index, exc)) from None
            return POWER

    def read(self) -> Reading:
        error = getattr(self.nv, "NVMLError", Exception)
        try:
            if self.kind == COUNTER:
                mj = self.nv.nvmlDeviceGetTotalEnergyConsumption(self.handle)  # type: ignore[attr-defined]
                return Reading(self.now(), joules=float(mj) / 1000.0)
            mw = self.nv.nvmlDeviceGetPowerUsage(self.handle)  # type: ignore[attr-defined]
            return Reading(self.now(), watts=float(mw) / 1000.0)
        except error as exc:  # type: ignore[misc]
            raise SensorError("nvml: reading GPU %d failed: %s" % (self.index, exc)) from None

    def describe(self) -> str:
        how = "total-energy counter" if self.kind == COUNTER else "power polling"
        return "NVML GPU %d, %s" % (self.index, how)

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()  # type: ignore[attr-defined]
        except Exception:  # shutting down twice, or after a failed init, is harmless
            pass


def make(cfg: Dict[str, object], nvml: Optional[object] = None, now: Optional[object] = None) -> NvmlSensor:
    check_keys(NAME, cfg, KEYS)
    try:
        index = int(cfg.get("index", 0))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SensorError("energy: index must be an integer, got %r" % (cfg.get("index"),)) from None
    sensor = NvmlSensor(index, str(cfg.get("mode", "auto")), nvml, now)
    sensor.poll_s = poll_from(cfg, NvmlSensor.poll_s)
    return sensor


def detect(root: str = "/") -> List[Dict[str, object]]:
    """A candidate when the NVIDIA driver's control node is under ``root``/dev."""
    node = join(root, "dev", "nvidiactl")
    if not os.path.exists(node):
        return []
    return [{"sensor": NAME, "config": {"sensor": NAME, "index": 0}, "detail": "NVIDIA driver node %s" % node}]
