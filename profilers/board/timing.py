"""The latency protocol, timed on the board: time-based warm-up, then repeated blocks of runs."""
from __future__ import annotations

import time
from typing import Callable, List

SETTINGS = ("warmup_s", "min_runs", "min_time_s", "repeats", "cooldown_s")


def check_settings(settings: dict) -> dict:
    """The five protocol settings as numbers, or ValueError naming the bad one."""
    out = {}
    for key in SETTINGS:
        if key not in settings:
            raise ValueError("measurement setting %s is missing" % key)
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
            raise ValueError("measurement setting %s must be a number >= 0, got %r" % (key, value))
        out[key] = value
    for key in ("min_runs", "repeats"):
        if int(out[key]) != out[key] or out[key] < 1:
            raise ValueError("measurement setting %s must be a whole number >= 1, got %r" % (key, out[key]))
        out[key] = int(out[key])
    return out


def warm_up(run_once: Callable[[], None], warmup_s: float, clock: Callable[[], float] = time.perf_counter) -> int:
    """Run until warmup_s seconds have passed (at least once); the number of runs."""
    start = clock()
    runs = 0
    while True:
        run_once()
        runs += 1
        if clock() - start >= warmup_s:
            return runs


def time_block(
    run_once: Callable[[], None], min_runs: int, min_time_s: float, clock: Callable[[], float] = time.perf_counter
) -> List[float]:
    """One block: at least min_runs runs AND at least min_time_s seconds; each run's time in ms."""
    samples = []
    start = clock()
    while True:
        t0 = clock()
        run_once()
        t1 = clock()
        samples.append((t1 - t0) * 1000.0)
        if len(samples) >= min_runs and t1 - start >= min_time_s:
            return samples


def measure(
    run_once: Callable[[], None],
    settings: dict,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> List[List[float]]:
    """Warm up, then `repeats` blocks with `cooldown_s` between them; raw samples (ms) per block."""
    s = check_settings(settings)
    warm_up(run_once, s["warmup_s"], clock)
    blocks = []
    for index in range(s["repeats"]):
        if index and s["cooldown_s"] > 0:
            sleep(s["cooldown_s"])
        blocks.append(time_block(run_once, s["min_runs"], s["min_time_s"], clock))
    return blocks
