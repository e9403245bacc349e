"""Energy per inference from a sensor: idle baseline, measurement window, integration.

Sensors only read (``profilers/board/sensors``); this module decides the windows, keeps the
idle baseline and integrates, in the manner of Zeus's meter:

1. sample the sensor on a fixed-rate thread (monotonic timestamps) for the whole run;
2. idle: ``idle_s`` seconds with nothing running, just before, same settings -> ``idle_w``;
3. window: inferences back to back until the window holds at least ``min_samples`` real sensor
   updates (changed values, counter steps, new lines) and lasts ``min_time_s`` (capped at
   ``max_time_s``);
4. energy: for counters the wrap-aware difference between the first and last counter step in
   each span, as a slope (a coarse counter such as NVML's is then not biased by where the span
   edges fall between steps); for power sensors the trapezoid over the samples (or the mean of
   the sensor's updates, ``method="updates"``); per inference ``gross_mj`` and
   ``net_mj = gross - idle_w * window / n``.

Accuracy against known power profiles: ``benchmarks/energy_accuracy.py``.

Board-side code: Python 3.8 compatible, standard library only.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from .sensors import make_sensor
from .sensors.base import COUNTER, Reading, Sensor, SensorError
from .sensors.sampling import RealClock, Sampler

DEFAULT_PROBE_S = 1.5


def _interp(ts: Sequence[float], vs: Sequence[float], t: float) -> float:
    """Linear interpolation of (ts, vs) at t, held constant outside the samples."""
    if t <= ts[0]:
        return vs[0]
    if t >= ts[-1]:
        return vs[-1]
    lo, hi = 0, len(ts) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ts[mid] <= t:
            lo = mid
        else:
            hi = mid
    span = ts[hi] - ts[lo]
    if span <= 0:
        return vs[hi]
    return vs[lo] + (vs[hi] - vs[lo]) * (t - ts[lo]) / span


def unwrap(joules: Sequence[float], wrap_j: Optional[float]) -> List[float]:
    """A cumulative counter made monotonic: each drop is one wrap at ``wrap_j``."""
    out = [joules[0]]
    for prev, cur in zip(joules, joules[1:]):
        step = cur - prev
        if step < 0:
            if not wrap_j:
                raise SensorError("energy counter went backwards (%.6f J -> %.6f J) and has no wrap range" % (prev, cur))
            step += wrap_j
        out.append(out[-1] + step)
    return out


def _knots(sensor: Sensor, readings: Sequence[Reading], updates: Optional[Sequence[bool]]) -> Tuple[List[float], List[float]]:
    """A counter's (times, unwrapped joules) at its real steps.

    Between steps a counter only repeats a stale value; interpolating between the steps instead
    gives the energy up to any moment, so a coarse counter (NVML: 20-100 ms) is not biased by
    where the window edges fall. Wraps are undone on every reading first.
    """
    ts = [r.t_mono for r in readings]
    counter = unwrap([float(r.joules) for r in readings], sensor.wrap_j)  # type: ignore[arg-type]
    if updates is None or sum(1 for u in updates if u) < 2:
        return ts, counter
    keep = [i for i, u in enumerate(updates) if u and i > 0]
    step = _period([ts[i] for i in keep]) or 0.0
    look = _period(ts) or 0.0
    if step <= 1.5 * look:
        # Steps faster than we look (RAPL): each reading is current as of its own time.
        return [ts[i] for i in keep], [counter[i] for i in keep]
    # Slow steps (NVML): the step happened some time since the previous look; take the middle.
    return [(ts[i - 1] + ts[i]) / 2.0 for i in keep], [counter[i] for i in keep]


def integrate(sensor: Sensor, readings: Sequence[Reading], a: float, b: float,
              updates: Optional[Sequence[bool]] = None) -> float:
    """Joules between monotonic times ``a`` and ``b`` from time-ordered ``readings``;
    ``updates`` flags the readings that are real sensor updates (used for counters)."""
    if b <= a or not readings:
        return 0.0
    ts = [r.t_mono for r in readings]
    if sensor.kind == COUNTER:
        kts, counter = _knots(sensor, readings, updates)
        return _interp(kts, counter, b) - _interp(kts, counter, a)
    watts = [float(r.watts) for r in readings]  # type: ignore[arg-type]
    points = [(a, _interp(ts, watts, a))]
    points.extend((t, w) for t, w in zip(ts, watts) if a < t < b)
    points.append((b, _interp(ts, watts, b)))
    return sum((t1 - t0) * (w0 + w1) / 2.0 for (t0, w0), (t1, w1) in zip(points, points[1:]))


def _period(times: List[float]) -> Optional[float]:
    """Mean spacing of ``times`` (robust to the sampler's quantisation, unlike the median)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (times[-1] - times[0]) / (len(times) - 1)


def _count(items: Sequence[Tuple[Reading, bool]], a: float, b: float) -> int:
    return sum(1 for r, fresh in items if fresh and a < r.t_mono <= b)


def _lag(sensor: Sensor, sampler: Optional[Sampler], lag_s: Union[float, str], t_idle: float, t0: float) -> float:
    if sensor.kind == COUNTER:
        return 0.0
    if lag_s == "auto" and sampler is not None:
        period = _period([r.t_mono for r, fresh in sampler.readings() if fresh and t_idle < r.t_mono <= t0])
        return period / 2.0 if period else 0.0
    try:
        lag = float(lag_s)
    except (TypeError, ValueError):
        raise SensorError("energy: lag_s must be a number of seconds or 'auto', got %r" % (lag_s,)) from None
    if lag < 0:
        raise SensorError("energy: lag_s must be >= 0, got %r" % (lag_s,))
    return lag


def _wait_for_step(sampler: Sampler, clock: object, t_idle: float, t1: float) -> None:
    """After the window, wait (idle) for the counter's next step so the window's end lies
    between two steps; bounded by three update periods (1 s when none was seen)."""
    seen = sampler.updates
    period = _period([r.t_mono for r, fresh in sampler.readings() if fresh and r.t_mono > t_idle])
    deadline = t1 + (3 * period if period else 1.0)
    while sampler.updates == seen and clock.now() < deadline:  # type: ignore[attr-defined]
        clock.sleep(sampler.poll_s)  # type: ignore[attr-defined]
        sampler.mark()


METHODS = ("trapezoid", "updates")


def mean_power(sensor: Sensor, items: Sequence[Tuple[Reading, bool]], a: float, b: float,
               method: str = "trapezoid", skip_s: float = 0.0) -> Optional[float]:
    """Mean power (W) in [a, b] while the board does one steady thing (idle, or inferences back
    to back).

    Counters: the slope between the first and the last counter step inside the span, so no edge
    of the span falls between two steps (a coarse counter would otherwise lose or gain up to one
    step). Power sensors: ``trapezoid`` integrates the samples over the span; ``updates``
    averages the sensor's own updates inside it, leaving out those within ``skip_s`` of its start
    (a monitor that averages over its period still reports the previous load there).
    Falls back to the trapezoid/counter difference when there are too few updates.
    """
    if b <= a:
        return None
    readings = [r for r, _ in items]
    fresh = [f for _, f in items]
    if sensor.kind == COUNTER:
        kts, counter = _knots(sensor, readings, fresh)
        inside = [i for i, t in enumerate(kts) if a <= t <= b]
        if len(inside) >= 2 and kts[inside[-1]] > kts[inside[0]]:
            first, last = inside[0], inside[-1]
            return (counter[last] - counter[first]) / (kts[last] - kts[first])
    elif method == "updates":
        values = [float(r.watts) for r, f in items if f and a + skip_s < r.t_mono <= b]  # type: ignore[arg-type]
        if values:
            return sum(values) / len(values)
    return integrate(sensor, readings, a, b, fresh) / (b - a)


def measure_energy(
    sensor: Sensor,
    run_once: Callable[[], None],
    *,
    idle_s: float = 2.0,
    min_samples: int = 10,
    min_time_s: float = 1.0,
    max_time_s: float = 60.0,
    min_runs: int = 1,
    poll_s: Optional[float] = None,
    lag_s: Union[float, str] = 0.0,
    method: str = "trapezoid",
    clock: Optional[object] = None,
) -> Dict[str, object]:
    """Energy per inference of ``run_once`` as seen by ``sensor``.

    Returns ``gross_mj``, ``net_mj`` (None when ``idle_s`` is 0), ``idle_w``, ``mean_w``,
    ``samples`` (sensor updates inside the window), ``idle_samples``, ``period_s`` (observed update
    period), ``n_runs``, ``window_s``, ``idle_s``, ``lag_s``, ``method``, ``enough_samples``,
    ``sensor`` (its name), ``detail`` (which hardware), ``kind`` (counter or power).

    ``clock`` is a RealClock (default) or a SimClock for deterministic runs; ``poll_s``
    overrides the sensor's sampling period. Counters always use the slope between their steps.
    For power sensors, ``method="trapezoid"`` (default) integrates the samples and
    ``method="updates"`` averages the sensor's own updates, skipping those within one update
    period of each span's start: unbiased for monitors that average over their period (see
    ``benchmarks/energy_accuracy.py``). ``lag_s`` shifts both trapezoid spans later for a sensor
    that reports late, sampling on that long after the last inference; ``"auto"`` takes half
    the update period seen while idle (the mean delay of a held reading).
    """
    if method not in METHODS:
        raise SensorError("energy: method must be one of %s, got %r" % (", ".join(METHODS), method))
    if min_samples < 0 or min_time_s < 0 or idle_s < 0 or max_time_s <= 0:
        raise SensorError("energy: idle_s, min_samples, min_time_s must be >= 0 and max_time_s > 0")
    if lag_s != "auto":
        _lag(sensor, None, lag_s, 0.0, 0.0)  # reject a bad value before measuring
    clock = clock or RealClock()
    sampler = Sampler(sensor, poll_s, clock)
    t_idle = sampler.start().t_mono
    try:
        if idle_s > 0:
            clock.sleep(idle_s)  # type: ignore[attr-defined]
        t0 = sampler.mark().t_mono
        first_update = sampler.updates
        n = 0
        while True:
            run_once()
            n += 1
            sampler.raise_error()
            elapsed = clock.now() - t0  # type: ignore[attr-defined]
            if n >= min_runs and elapsed >= max_time_s:
                break
            if n >= min_runs and elapsed >= min_time_s and sampler.updates - first_update >= min_samples:
                break
        t1 = sampler.mark().t_mono
        lag = _lag(sensor, sampler, lag_s, t_idle, t0)
        if lag > 0:
            clock.sleep(lag)  # type: ignore[attr-defined]
            sampler.mark()
        if sensor.kind == COUNTER and sampler.updates - first_update < 2:
            _wait_for_step(sampler, clock, t_idle, t1)
    finally:
        sampler.stop()
    items = sampler.readings()
    window = t1 - t0
    idle_window = t0 - t_idle
    period = _period([r.t_mono for r, fresh in items if fresh and r.t_mono <= t0]) or 0.0
    window_w = mean_power(sensor, items, t0 + lag, t1 + lag, method, period)
    gross_j = (window_w or 0.0) * window
    idle_w = mean_power(sensor, items, t_idle + lag, t0 + lag, method, period)
    samples = _count(items, t0 + lag, t1 + lag)
    net_mj = None if idle_w is None else (gross_j - idle_w * window) / n * 1e3
    return {
        "gross_mj": gross_j / n * 1e3,
        "net_mj": net_mj,
        "idle_w": idle_w,
        "mean_w": gross_j / window if window > 0 else None,
        "samples": samples,
        "idle_samples": _count(items, t_idle, t0),
        "period_s": _period([r.t_mono for r, fresh in items if fresh]),
        "n_runs": n,
        "window_s": window,
        "idle_s": idle_window,
        "lag_s": lag,
        "method": method if sensor.kind != COUNTER else "counter",
        "enough_samples": samples >= min_samples,
        "sensor": sensor.name,
        "detail": sensor.describe(),
        "kind": sensor.kind,
    }


SETTINGS = ("idle_s", "min_samples", "min_time_s", "max_time_s", "lag_s", "method")


def settings_from(cfg: Dict[str, object]) -> Dict[str, object]:
    """The meter settings in a device file's ``energy`` mapping (``poll_ms`` -> ``poll_s``)."""
    out = {}  # type: Dict[str, object]
    try:
        for key in SETTINGS:
            if cfg.get(key) is not None:
                value = cfg[key]
                if (key == "lag_s" and value == "auto") or key == "method":
                    out[key] = value
                else:
                    out[key] = int(value) if key == "min_samples" else float(value)  # type: ignore[arg-type]
        if cfg.get("poll_ms") is not None:
            out["poll_s"] = float(cfg["poll_ms"]) / 1000.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SensorError("energy: %s must be a number" % key) from None
    return out


def measure_with_config(cfg: Dict[str, object], run_once: Callable[[], None], **overrides: object) -> Dict[str, object]:
    """Open the sensor an ``energy`` mapping names, measure ``run_once``, close the sensor."""
    settings = settings_from(cfg)
    settings.update(overrides)
    sensor = make_sensor(cfg)
    try:
        return measure_energy(sensor, run_once, **settings)  # type: ignore[arg-type]
    finally:
        sensor.close()


def probe_sensor(cfg: Dict[str, object], duration_s: Optional[float] = None, clock: Optional[object] = None,
                 **kwargs: object) -> Dict[str, object]:
    """``{sensor, readable, detail, period_s, watts}``: read the sensor for ``duration_s``
    (``probe_s`` in cfg, default 1.5 s) and report the observed update period and mean power.
    ``clock`` (a RealClock or SimClock) and ``kwargs`` (for ``make_sensor``) serve tests."""
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
    if len(items) < 2:
        return None
    return mean_power(sensor, items, items[0][0].t_mono, items[-1][0].t_mono)
