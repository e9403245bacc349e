"""How accurate is energy per inference from ``modnas.profilers.board.meter``?

Simulated boards with a known power profile, read by simulated sensors of several kinds and
update rates, measured by the real meter code (``measure_energy`` with a simulated clock, so the
run is fast and deterministic). For each case and window setting, the relative error of gross and
net energy per inference against the exact energy, over several seeds (random sensor phase,
inference latency and noise).

    python benchmarks/energy_accuracy.py [--seeds 12] [--markdown FILE]

Prints one JSON document on stdout and a Markdown table on stderr (and to FILE if given).
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modnas.profilers.board.meter import measure_energy  # noqa: E402
from modnas.profilers.board.sensors.base import COUNTER, POWER, Reading, Sensor  # noqa: E402
from modnas.profilers.board.sensors.sampling import SimClock  # noqa: E402

IDLE_W = 3.0
CONSTANT = ((1.0, 9.0),)  # (fraction of the inference, watts)
STEPS = ((0.4, 12.0), (0.3, 5.0), (0.3, 8.0))  # mean 8.7 W


class SimBoard:
    """Power is ``idle_w`` between inferences and follows ``phases`` during one; keeps the exact
    cumulative energy so sensors and the ground truth read the same signal."""

    def __init__(self, clock: SimClock, phases: Sequence[Tuple[float, float]], latency_s: float) -> None:
        self.clock, self.phases, self.latency_s = clock, phases, latency_s
        self.watts = IDLE_W
        self._e0, self._t0 = 0.0, clock.now()

    def energy(self) -> float:
        return self._e0 + self.watts * (self.clock.now() - self._t0)

    def _set(self, watts: float) -> None:
        self._e0, self._t0 = self.energy(), self.clock.now()
        self.watts = watts

    def run_once(self) -> None:
        for fraction, watts in self.phases:
            self._set(watts)
            self.clock.advance(fraction * self.latency_s)
        self._set(IDLE_W)

    def truth_mj(self) -> Tuple[float, float]:
        gross = sum(f * w for f, w in self.phases) * self.latency_s * 1e3
        return gross, gross - IDLE_W * self.latency_s * 1e3


class SimPower(Sensor):
    """A power monitor updating every ``period_s``: the instantaneous power (``instant``, like an
    INA3221 read or tegrastats' current value) or the mean of the last period (``average``),
    plus Gaussian noise of ``noise_w``."""

    kind = POWER

    def __init__(self, clock: SimClock, board: SimBoard, period_s: float, average: bool, noise_w: float,
                 rng: random.Random) -> None:
        super().__init__(clock.now)
        self.board, self.period_s, self.average, self.noise_w, self.rng = board, period_s, average, noise_w, rng
        self.name = "%s %g Hz" % ("average" if average else "instant", 1 / period_s)
        self.poll_s = min(0.02, period_s / 5)
        self.seq = 0
        self._last_e = board.energy()
        self.value = board.watts  # the board has been idle for a while
        clock.every(period_s, self._update)

    def _measure(self) -> float:
        if self.average:
            e = self.board.energy()
            watts, self._last_e = (e - self._last_e) / self.period_s, e
        else:
            watts = self.board.watts
        return watts + (self.rng.gauss(0.0, self.noise_w) if self.noise_w else 0.0)

    def _update(self) -> None:
        self.value = self._measure()
        self.seq += 1

    def read(self) -> Reading:
        return Reading(self.now(), watts=self.value, seq=self.seq)


class SimCounter(Sensor):
    """A cumulative energy counter stepping every ``step_s`` and wrapping at ``wrap_j``
    (RAPL: ~1 ms steps; NVML: 20-100 ms steps)."""

    kind = COUNTER

    def __init__(self, clock: SimClock, board: SimBoard, step_s: float, wrap_j: Optional[float]) -> None:
        super().__init__(clock.now)
        self.board, self.wrap_j = board, wrap_j
        self.name = "counter %g Hz" % (1 / step_s)
        self.poll_s = 0.02
        self.shown = board.energy()
        clock.every(step_s, self._step)

    def _step(self) -> None:
        self.shown = self.board.energy()

    def read(self) -> Reading:
        return Reading(self.now(), joules=self.shown % self.wrap_j if self.wrap_j else self.shown)


SensorFactory = Callable[[SimClock, SimBoard, random.Random], Sensor]


@dataclass(frozen=True)
class Case:
    name: str
    profile: str
    make: SensorFactory
    period_s: float


CASES = [
    Case("RAPL-like counter, wraps", "steps", lambda c, b, r: SimCounter(c, b, 0.001, 5.0), 0.001),
    Case("NVML-like counter", "steps", lambda c, b, r: SimCounter(c, b, 0.1, None), 0.1),
    Case("power, instant", "constant", lambda c, b, r: SimPower(c, b, 0.01, False, 0.0, r), 0.01),
    Case("power, instant", "steps", lambda c, b, r: SimPower(c, b, 0.01, False, 0.0, r), 0.01),
    Case("power, instant + noise 0.5 W", "steps", lambda c, b, r: SimPower(c, b, 0.1, False, 0.5, r), 0.1),
    Case("power, averaged", "steps", lambda c, b, r: SimPower(c, b, 0.1, True, 0.0, r), 0.1),
    Case("power, averaged (coarse)", "steps", lambda c, b, r: SimPower(c, b, 1.0, True, 0.0, r), 1.0),
    Case("power, averaged + noise 0.5 W (coarse)", "steps", lambda c, b, r: SimPower(c, b, 1.0, True, 0.5, r), 1.0),
]
WINDOWS = [  # (min_time_s, min_samples, lag_s, method, idle_s)
    (0.2, 1, 0.0, "trapezoid", 2.0),
    (1.0, 10, 0.0, "trapezoid", 2.0),
    (4.0, 10, 0.0, "trapezoid", 2.0),
    (1.0, 40, 0.0, "trapezoid", 2.0),
    (1.0, 10, "auto", "trapezoid", 2.0),
    (1.0, 10, 0.0, "updates", 2.0),
    (1.0, 40, 0.0, "updates", 2.0),
    (1.0, 10, 0.0, "updates", 10.0),
]
Window = Tuple[float, int, object, str, float]


def applies(case: Case, window: Window) -> bool:
    """Counters ignore lag_s and method: measure them once per window length."""
    counter = case.name.startswith(("RAPL", "NVML"))
    return not counter or (window[2] == 0.0 and window[3] == "trapezoid" and window[4] == 2.0)


def one_run(case: Case, window: Window, seed: int) -> Dict[str, float]:
    rng = random.Random(seed)
    clock = SimClock()
    board = SimBoard(clock, STEPS if case.profile == "steps" else CONSTANT, rng.uniform(0.003, 0.008))
    sensor = case.make(clock, board, rng)
    # Random phase of the sensor's updates against the sampler and the window.
    clock.advance(rng.uniform(0.0, case.period_s) + rng.uniform(0.0, 0.02))
    min_time_s, min_samples, lag_s, method, idle_s = window
    out = measure_energy(sensor, board.run_once, idle_s=idle_s, min_samples=min_samples, min_time_s=min_time_s,
                         max_time_s=120.0, lag_s=lag_s, method=method, clock=clock)  # type: ignore[arg-type]
    gross, net = board.truth_mj()
    return {
        "gross_err": float(out["gross_mj"]) / gross - 1,  # type: ignore[arg-type]
        "net_err": float(out["net_mj"]) / net - 1,  # type: ignore[arg-type]
        "window_s": float(out["window_s"]),  # type: ignore[arg-type]
        "samples": float(out["samples"]),  # type: ignore[arg-type]
    }


def summarise(case: Case, window: Window, runs: List[Dict[str, float]]) -> Dict[str, object]:
    def stats(key: str) -> Dict[str, float]:
        errs = [r[key] for r in runs]
        return {"mean_abs_pct": 100 * statistics.mean(abs(e) for e in errs),
                "max_abs_pct": 100 * max(abs(e) for e in errs),
                "bias_pct": 100 * statistics.mean(errs)}

    return {
        "sensor": case.name, "profile": case.profile, "update_hz": 1 / case.period_s,
        "min_time_s": window[0], "min_samples": window[1], "lag_s": window[2],
        "method": window[3] if not case.name.startswith(("RAPL", "NVML")) else "counter", "idle_s": window[4],
        "window_s": statistics.mean(r["window_s"] for r in runs),
        "samples": statistics.mean(r["samples"] for r in runs),
        "gross": stats("gross_err"), "net": stats("net_err"), "seeds": len(runs),
    }


def markdown(rows: List[Dict[str, object]]) -> str:
    head = ("| sensor | profile | updates | idle_s | min_time_s / min_samples / lag | method | window s | samples "
            "| gross err mean / max % | net err mean / max % | net bias % |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        g, n = r["gross"], r["net"]  # type: ignore[index]
        lines.append("| %s | %s | %g Hz | %g | %g / %d / %s | %s | %.2f | %.1f | %.2f / %.2f | %.2f / %.2f | %+.2f |" % (
            r["sensor"], r["profile"], r["update_hz"], r["idle_s"], r["min_time_s"], r["min_samples"], r["lag_s"], r["method"],
            r["window_s"], r["samples"], g["mean_abs_pct"], g["max_abs_pct"],  # type: ignore[index]
            n["mean_abs_pct"], n["max_abs_pct"], n["bias_pct"]))  # type: ignore[index]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = []
    for case in CASES:
        for window in [w for w in WINDOWS if applies(case, w)]:
            runs = [one_run(case, window, seed) for seed in range(args.seeds)]
            rows.append(summarise(case, window, runs))
    table = markdown(rows)
    doc = {"benchmark": "energy_accuracy", "idle_w": IDLE_W, "profiles": {"constant": CONSTANT, "steps": STEPS},
           "seeds": args.seeds,
           "seconds": round(time.perf_counter() - start, 1), "rows": rows}
    print(json.dumps(doc, indent=1))
    print(table, file=sys.stderr)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
