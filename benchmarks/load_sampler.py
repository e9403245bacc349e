"""The machine's 1-minute load average, sampled every few seconds while a benchmark runs (its
timings are only as good as the machine was quiet)."""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def sampled_load(every_s: float = 5.0) -> Iterator[dict[str, float | int | None]]:
    """Yield a dict that holds ``mean``, ``max`` and ``cpus`` once the block ends."""
    loads: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            loads.append(os.getloadavg()[0])
            stop.wait(every_s)

    summary: dict[str, float | int | None] = {}
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield summary
    finally:
        stop.set()
        sampler.join()
        summary.update({"mean": round(sum(loads) / len(loads), 2) if loads else None,
                        "max": round(max(loads), 2) if loads else None, "cpus": os.cpu_count()})
