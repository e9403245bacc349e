"""A replay board: the hardware is a table of measured values, the runtime draws raw samples around them.

A measurement of an architecture is the table's value times a log-normal factor exp(noise * z), z drawn
from a generator seeded by (seed, metric, architecture): the same board gives the same numbers every
time, and noise 0 gives the table's values. Each raw sample scatters around that value with the same
relative spread, so the samples' statistics look like a board's.
"""
from __future__ import annotations

import hashlib
import json
import platform
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

ARTIFACT_FORMAT = "modnas-replay/1"
NAME = "replay"
VERSION = "1"


class NotInTable(Exception):
    """The architecture has no row in the board's table (reply error code ``not_in_table``)."""


def stream_seed(seed: int, metric: str, arch: str) -> int:
    """The generator seed for one architecture's draws of one metric."""
    digest = hashlib.sha256(("%d\x00%s\x00%s" % (seed, metric, arch)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def read_artifact(path: str) -> Tuple[str, str]:
    """(space, arch) named by a replay artifact; ValueError when the file is not one."""
    with open(path, "r", encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or doc.get("format") != ARTIFACT_FORMAT:
        raise ValueError("not a replay artifact (format %r)" % (doc.get("format") if isinstance(doc, dict) else None))
    space, arch = doc.get("space"), doc.get("arch")
    if not isinstance(space, str) or not isinstance(arch, str) or not arch:
        raise ValueError("the replay artifact names no architecture")
    return space, arch


class ReplayBoard:
    """Tables by metric (arch -> ms or mJ), the noise and seed; also the board's one runtime, ``replay``."""

    NAME = NAME

    def __init__(self, tables: Mapping[str, Mapping[str, float]], noise: float = 0.0, seed: int = 0,
                 describe: Optional[Dict[str, Any]] = None) -> None:
        if "latency" not in tables:
            raise ValueError("a replay board needs a latency table")
        if not (noise >= 0.0):
            raise ValueError("noise must be >= 0")
        self.tables = dict(tables)
        self.noise = float(noise)
        self.seed = int(seed)
        self.describe = dict(describe or {})

    # -- the runtime interface (as modnas.profilers.board.runtimes modules have it) ------------------------------
    def available(self) -> Tuple[bool, str]:
        return True, "replay of %d architectures" % len(self.tables["latency"])

    def version(self) -> str:
        return VERSION

    def load(self, artifact_path: str, threads: int, input_shape: List[int], meta: dict) -> Callable[[], None]:
        """run_once for the artifact's architecture; it carries replay_blocks and replay_energy (no timing)."""
        _, arch = read_artifact(artifact_path)
        if arch not in self.tables["latency"]:
            raise NotInTable("the architecture is not in the replay table %s"
                             % self.describe.get("latency", {}).get("path", ""))
        board = self

        def run_once() -> None:
            return None

        run_once.replay_blocks = lambda measurement: board.blocks(arch, measurement)  # type: ignore[attr-defined]
        run_once.replay_energy = lambda energy, measurement: board.energy(arch, energy, measurement)  # type: ignore[attr-defined]
        if arch in self.tables.get("prefill", {}):  # a language model's prompt time, drawn like its decode time
            def prefill() -> None:
                return None

            prefill.replay_blocks = lambda measurement: board.blocks(arch, measurement, "prefill")  # type: ignore[attr-defined]
            run_once.prefill = prefill  # type: ignore[attr-defined]
        return run_once

    # -- draws --------------------------------------------------------------------------------------------
    def _draw(self, metric: str, arch: str, n: int) -> Tuple[float, List[float]]:
        """(the measurement's centre, n raw values around it)."""
        import numpy as np

        value = float(self.tables[metric][arch])
        if self.noise == 0.0:
            return value, [value] * n
        rng = np.random.default_rng(stream_seed(self.seed, metric, arch))
        centre = value * float(np.exp(self.noise * rng.standard_normal()))
        samples = centre * np.exp(self.noise * rng.standard_normal(n))
        return centre, [float(v) for v in samples]

    def blocks(self, arch: str, measurement: dict, metric: str = "latency") -> List[List[float]]:
        repeats, runs = int(measurement["repeats"]), int(measurement["min_runs"])
        _, samples = self._draw(metric, arch, repeats * runs)
        return [samples[i * runs:(i + 1) * runs] for i in range(repeats)]

    def energy(self, arch: str, energy_cfg: dict, measurement: dict) -> dict:
        """The energy reading as the meter reports it (gross = net: a table has no idle baseline)."""
        table = self.tables.get("energy")
        if table is None:
            return {"sensor": NAME, "error": "this replay board has no energy table"}
        if arch not in table:
            return {"sensor": NAME, "error": "not_in_table: the architecture is not in the energy table"}
        samples = int(energy_cfg.get("min_samples", 10))
        gross, _ = self._draw("energy", arch, 0)
        latency_ms = float(self.tables["latency"][arch])
        return {"sensor": NAME, "gross_mj": gross, "net_mj": gross, "idle_w": 0.0, "mean_w": gross / latency_ms,
                "samples": samples, "idle_samples": 0, "period_s": None, "n_runs": int(measurement["min_runs"]),
                "window_s": None, "idle_s": 0.0, "lag_s": 0.0, "method": "replay", "enough_samples": True,
                "detail": "replay of %s" % self.describe.get("energy", {}).get("path", "the energy table")}

    # -- what the agent's fingerprint and probe say ---------------------------------------------------------
    def fingerprint(self, runtimes: Optional[dict] = None) -> dict:
        latency = self.describe.get("latency", {})
        name = str(latency.get("path", "a table")).rsplit("/", 1)[-1]
        return {
            "hostname": "replay", "cpu_model": "replay of %s" % name, "machine": "replay", "cores": None,
            "affinity_cores": None, "governor": None, "cpufreq": [], "memory": {}, "os": "replay board",
            "kernel": None, "python": platform.python_version(), "python_executable": sys.executable,
            "runtimes": runtimes if runtimes is not None else {}, "thermal_c": {}, "loadavg": None,
            "power_mode": None,
            "replay": {"tables": self.describe, "noise": self.noise, "seed": self.seed},
        }

    def runtimes(self, names: Optional[List[str]] = None) -> Dict[str, dict]:
        report = {}
        for name in names if names is not None else [NAME]:
            if name == NAME:
                ok, detail = self.available()
                report[name] = {"available": ok, "detail": detail}
            else:
                report[name] = {"available": False, "detail": "a replay board has only the replay runtime"}
        return report

    def probe_energy(self, cfg: Optional[dict]) -> dict:
        sensor = (cfg or {}).get("sensor", "none")
        if sensor == "none":
            return {"sensor": "none", "readable": False, "detail": "no energy sensor configured"}
        if sensor != NAME:
            return {"sensor": sensor, "readable": False, "detail": "a replay board has only the replay sensor"}
        if "energy" not in self.tables:
            return {"sensor": NAME, "readable": False, "detail": "this replay board has no energy table"}
        return {"sensor": NAME, "readable": True,
                "detail": "replay of %s" % self.describe.get("energy", {}).get("path", "the energy table")}
