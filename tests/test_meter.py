"""The meter: idle baseline, window extension, integration, on a simulated and a real clock."""
from __future__ import annotations

import time
from typing import Dict, List, Optional

import pytest

from modnas.profilers.board.meter import integrate, measure_energy, measure_with_config, settings_from, unwrap
from modnas.profilers.board.sensors.base import COUNTER, POWER, Reading, Sensor, SensorError
from modnas.profilers.board.sensors.sampling import RealClock, Sampler, SimClock


class Load:
    """A simulated inference: ``latency_s`` at ``busy_w``; the board draws ``idle_w`` otherwise."""

    def __init__(self, clock: SimClock, idle_w: float, busy_w: float, latency_s: float) -> None:
        self.clock, self.idle_w, self.busy_w, self.latency_s = clock, idle_w, busy_w, latency_s
        self.busy = False
        self.energy_j = 0.0  # ground truth, integrated exactly
        self.runs = 0

    def power(self) -> float:
        return self.busy_w if self.busy else self.idle_w

    def run_once(self) -> None:
        self.busy = True
        self.clock.advance(self.latency_s)
        self.busy = False
        self.runs += 1


class HeldPower(Sensor):
    """A power sensor that updates every ``period_s`` with the mean power of the last period."""

    name = "held"
    kind = POWER

    def __init__(self, clock: SimClock, load: Load, period_s: float, seq: bool = False) -> None:
        super().__init__(clock.now)
        self.load, self.period_s, self.use_seq = load, period_s, seq
        self.value = load.power()
        self.acc = 0.0
        self.n = 0
        self.updates = 0
        clock.every(period_s / 20, self._accumulate)

    def _accumulate(self) -> None:
        self.acc += self.load.power()
        self.n += 1
        if self.n == 20:
            self.value, self.acc, self.n = self.acc / 20, 0.0, 0
            self.updates += 1

    def read(self) -> Reading:
        return Reading(self.now(), watts=self.value, seq=self.updates if self.use_seq else None)


class Counter(Sensor):
    """A cumulative counter (J) that steps every ``step_s`` and wraps at ``wrap_j``."""

    name = "counter"
    kind = COUNTER

    def __init__(self, clock: SimClock, load: Load, step_s: float, wrap_j: Optional[float], start_j: float = 0.0) -> None:
        super().__init__(clock.now)
        self.load, self.wrap_j = load, wrap_j
        self.true_j = start_j
        self.shown_j = start_j
        self.dt = step_s / 10
        self.k = 0
        clock.every(self.dt, self._tick)

    def _tick(self) -> None:
        self.true_j += self.load.power() * self.dt
        self.k += 1
        if self.k % 10 == 0:
            self.shown_j = self.true_j

    def read(self) -> Reading:
        shown = self.shown_j % self.wrap_j if self.wrap_j else self.shown_j
        return Reading(self.now(), joules=shown)


def _truth(load: Load) -> Dict[str, float]:
    return {"gross": load.busy_w * load.latency_s * 1e3,
            "net": (load.busy_w - load.idle_w) * load.latency_s * 1e3}


@pytest.mark.parametrize("idle_w,busy_w,latency_s,period_s", [
    (2.0, 5.0, 0.004, 0.05),
    (3.0, 12.0, 0.020, 0.1),
    (1.0, 1.5, 0.001, 0.01),
])
def test_power_sensor_energy_matches_truth(idle_w: float, busy_w: float, latency_s: float, period_s: float) -> None:
    clock = SimClock()
    load = Load(clock, idle_w, busy_w, latency_s)
    sensor = HeldPower(clock, load, period_s, seq=True)
    out = measure_energy(sensor, load.run_once, idle_s=1.0, min_samples=40, min_time_s=1.0, clock=clock, poll_s=period_s / 5)
    truth = _truth(load)
    # The sensor reports one period late: the error is bounded by (busy - idle) x period / window.
    bound = (busy_w - idle_w) * period_s / out["window_s"] / busy_w
    assert out["gross_mj"] == pytest.approx(truth["gross"], rel=bound + 0.01)
    assert out["net_mj"] == pytest.approx(truth["net"], rel=bound * busy_w / (busy_w - idle_w) + 0.01)
    assert out["idle_w"] == pytest.approx(idle_w, rel=0.01)
    assert out["n_runs"] == load.runs
    assert out["samples"] >= 40
    assert out["period_s"] == pytest.approx(period_s, rel=0.05)


# "auto" shifts by half a period (the delay of a held reading); this sensor also averages over
# the period, so its delay is a whole period: auto removes half the error, lag_s=0.1 nearly all.
@pytest.mark.parametrize("lag,factor", [("auto", 0.6), (0.1, 0.2)])
def test_lag_compensation_removes_a_late_sensors_error(lag: object, factor: float) -> None:
    def run(lag_s: object) -> float:
        clock = SimClock()
        load = Load(clock, 2.0, 10.0, 0.01)
        sensor = HeldPower(clock, load, 0.1, seq=True)  # box average of the last 0.1 s, held
        out = measure_energy(sensor, load.run_once, idle_s=1.0, min_samples=10, min_time_s=1.0,
                             clock=clock, poll_s=0.01, lag_s=lag_s)
        return abs(out["net_mj"] / _truth(load)["net"] - 1)

    plain, shifted = run(0.0), run(lag)
    assert plain > 0.04  # one late period in a ~1 s window
    assert shifted < plain * factor


def test_bad_lag_is_rejected_before_measuring() -> None:
    clock = SimClock()
    load = Load(clock, 1.0, 2.0, 0.01)
    with pytest.raises(SensorError, match="lag_s"):
        measure_energy(HeldPower(clock, load, 0.1), load.run_once, lag_s="late", clock=clock)
    assert load.runs == 0


def test_counter_energy_is_wrap_aware() -> None:
    clock = SimClock()
    load = Load(clock, 8.0, 20.0, 0.010)
    # Wraps every ~0.1-0.25 s: many wraps in idle and in the window.
    sensor = Counter(clock, load, step_s=0.001, wrap_j=2.0, start_j=1.9)
    out = measure_energy(sensor, load.run_once, idle_s=1.0, min_samples=20, min_time_s=1.0, clock=clock, poll_s=0.02)
    truth = _truth(load)
    assert out["gross_mj"] == pytest.approx(truth["gross"], rel=0.02)
    assert out["net_mj"] == pytest.approx(truth["net"], rel=0.03)
    assert out["idle_w"] == pytest.approx(8.0, rel=0.01)
    assert out["kind"] == COUNTER


def test_counter_without_wrap_range_going_backwards_is_an_error() -> None:
    with pytest.raises(SensorError, match="backwards"):
        unwrap([5.0, 6.0, 1.0], None)
    assert unwrap([5.0, 6.0, 1.0, 2.0], 10.0) == pytest.approx([5.0, 6.0, 11.0, 12.0])


def test_window_extends_until_min_samples_for_a_coarse_sensor() -> None:
    clock = SimClock()
    load = Load(clock, 2.0, 6.0, 0.005)
    sensor = HeldPower(clock, load, period_s=1.0, seq=True)
    out = measure_energy(sensor, load.run_once, idle_s=2.0, min_samples=5, min_time_s=0.5, clock=clock, poll_s=0.05)
    assert out["samples"] >= 5
    assert out["window_s"] >= 4.0  # five 1 s updates cannot fit in less
    assert out["enough_samples"] is True
    # The window stops soon after the fifth update, not at max_time_s.
    assert out["window_s"] < 6.5
    assert out["gross_mj"] == pytest.approx(_truth(load)["gross"], rel=0.25)


def test_max_time_caps_a_sensor_that_never_updates() -> None:
    clock = SimClock()
    load = Load(clock, 2.0, 2.0, 0.01)
    sensor = HeldPower(clock, load, period_s=0.1, seq=False)  # value never changes: no updates seen
    out = measure_energy(sensor, load.run_once, idle_s=0.5, min_samples=3, min_time_s=0.2, max_time_s=1.5, clock=clock)
    assert out["samples"] == 0
    assert out["enough_samples"] is False
    assert out["window_s"] >= 1.5
    assert out["period_s"] is None
    assert out["gross_mj"] == pytest.approx(2.0 * 0.01 * 1e3, rel=0.01)


def test_sequence_numbers_count_repeated_values_as_updates() -> None:
    clock = SimClock()
    load = Load(clock, 2.0, 2.0, 0.01)
    sensor = HeldPower(clock, load, period_s=0.1, seq=True)
    out = measure_energy(sensor, load.run_once, idle_s=0.5, min_samples=4, min_time_s=0.2, clock=clock)
    assert out["samples"] >= 4
    assert out["window_s"] < 1.0


def test_no_idle_means_no_net() -> None:
    clock = SimClock()
    load = Load(clock, 1.0, 4.0, 0.01)
    sensor = HeldPower(clock, load, period_s=0.05, seq=True)
    out = measure_energy(sensor, load.run_once, idle_s=0.0, min_samples=3, min_time_s=0.3, clock=clock)
    assert out["net_mj"] is None and out["idle_w"] is None
    assert out["gross_mj"] > 0


def test_min_runs_is_honoured() -> None:
    clock = SimClock()
    load = Load(clock, 1.0, 4.0, 0.2)
    sensor = HeldPower(clock, load, period_s=0.05, seq=True)
    out = measure_energy(sensor, load.run_once, idle_s=0.1, min_samples=1, min_time_s=0.1, min_runs=7, clock=clock)
    assert out["n_runs"] == 7 == load.runs


def test_failing_inference_stops_the_sampler() -> None:
    clock = SimClock()
    load = Load(clock, 1.0, 4.0, 0.01)
    sensor = HeldPower(clock, load, period_s=0.05, seq=True)
    calls: List[int] = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("inference failed")

    with pytest.raises(RuntimeError, match="inference failed"):
        measure_energy(sensor, broken, idle_s=0.1, clock=clock)
    before = sensor.updates
    clock.advance(1.0)  # the sensor's own accumulation keeps ticking, the sampler must not
    assert len(calls) == 1 and sensor.updates > before


def test_sensor_failure_during_sampling_surfaces() -> None:
    clock = SimClock()

    class Dying(Sensor):
        kind = POWER

        def read(self) -> Reading:
            if clock.now() > 0.3:
                raise SensorError("fake: sensor vanished")
            return Reading(clock.now(), watts=1.0 + clock.now())

    with pytest.raises(SensorError, match="vanished"):
        measure_energy(Dying(clock.now), lambda: clock.advance(0.01), idle_s=0.1, min_time_s=5, clock=clock)


def test_unexpected_sensor_exception_becomes_one_line() -> None:
    clock = SimClock()

    class Buggy(Sensor):
        name = "buggy"
        kind = POWER

        def read(self) -> Reading:
            if clock.now() > 0.2:
                return Reading(clock.now(), watts=1.0 / 0.0)
            return Reading(clock.now(), watts=1.0)

    with pytest.raises(SensorError, match="^buggy: reading failed: ZeroDivisionError"):
        measure_energy(Buggy(clock.now), lambda: clock.advance(0.01), idle_s=0.5, clock=clock)


@pytest.mark.parametrize("slope", [0.0, 3.0, -1.5])
def test_trapezoid_is_exact_for_linear_power_with_window_edges_between_samples(slope: float) -> None:
    sensor = HeldPower(SimClock(), Load(SimClock(), 1, 1, 0.1), 1.0)
    readings = [Reading(t, watts=10.0 + slope * t) for t in [0.0, 0.1, 0.35, 0.6, 1.0]]
    a, b = 0.05, 0.8
    expected = 10.0 * (b - a) + slope * (b * b - a * a) / 2
    assert integrate(sensor, readings, a, b) == pytest.approx(expected, rel=1e-12)


def test_sim_clock_fires_ticks_in_order() -> None:
    clock = SimClock()
    seen: List[float] = []
    handle = clock.every(0.25, lambda: seen.append(clock.now()))
    clock.advance(1.0)
    handle.cancel()
    clock.advance(1.0)
    assert seen == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert clock.now() == pytest.approx(2.0)


class WallSensor(Sensor):
    """A real-time power sensor: ``base_w`` while busy is False, ``busy_w`` while True; the value
    carries a sub-milliwatt counter so every read is a fresh update."""

    kind = POWER

    def __init__(self, base_w: float, busy_w: float) -> None:
        super().__init__()
        self.base_w, self.busy_w = base_w, busy_w
        self.busy = False
        self.k = 0

    def read(self) -> Reading:
        self.k += 1
        return Reading(self.now(), watts=(self.busy_w if self.busy else self.base_w) + 1e-6 * (self.k % 3))


def test_real_clock_thread_sampling() -> None:
    sensor = WallSensor(3.0, 3.0)
    out = measure_energy(sensor, lambda: time.sleep(0.005), idle_s=0.3, min_samples=10, min_time_s=0.4, poll_s=0.01)
    assert out["samples"] >= 10
    assert out["idle_w"] == pytest.approx(3.0, rel=1e-3)
    assert out["mean_w"] == pytest.approx(3.0, rel=1e-3)
    assert out["gross_mj"] == pytest.approx(3.0 * out["window_s"] / out["n_runs"] * 1e3, rel=1e-3)
    assert out["net_mj"] == pytest.approx(0.0, abs=0.01)


def test_real_sampler_keeps_time_order_with_marks() -> None:
    sensor = WallSensor(1.0, 1.0)
    sampler = Sampler(sensor, 0.005, RealClock())
    sampler.start()
    marks = []
    for _ in range(20):
        marks.append(sampler.mark().t_mono)
        time.sleep(0.003)
    sampler.stop()
    times = [r.t_mono for r, _ in sampler.readings()]
    assert times == sorted(times)
    assert len(times) > len(marks) + 1
    assert set(marks) <= set(times)


def test_settings_from_config_and_measure_with_config(tmp_path) -> None:
    assert settings_from({"sensor": "rapl", "idle_s": 0.5, "min_samples": "4", "poll_ms": 10}) == {
        "idle_s": 0.5, "min_samples": 4, "poll_s": 0.01}
    with pytest.raises(SensorError, match="min_time_s"):
        settings_from({"min_time_s": "soon"})
    with pytest.raises(SensorError, match="no powercap"):
        measure_with_config({"sensor": "rapl", "root": str(tmp_path)}, lambda: None)


def test_updates_method_is_unbiased_for_a_monitor_that_averages() -> None:
    def run(method: str) -> Dict[str, float]:
        clock = SimClock()
        load = Load(clock, 2.0, 10.0, 0.01)
        clock.advance(0.037)
        sensor = HeldPower(clock, load, 0.2, seq=True)  # averages the last 0.2 s
        clock.advance(0.011)
        out = measure_energy(sensor, load.run_once, idle_s=2.0, min_samples=8, min_time_s=1.0,
                             clock=clock, method=method)
        truth = _truth(load)
        return {"gross": out["gross_mj"] / truth["gross"] - 1, "net": out["net_mj"] / truth["net"] - 1}

    trapezoid, updates = run("trapezoid"), run("updates")
    assert abs(trapezoid["net"]) > 0.05  # one late period in a ~1.6 s window
    assert abs(updates["gross"]) < 0.01 and abs(updates["net"]) < 0.01


def test_coarse_counter_short_window_is_not_biased_by_its_steps() -> None:
    errors = []
    for phase in (0.0, 0.013, 0.029, 0.041, 0.077):
        clock = SimClock()
        load = Load(clock, 60.0, 250.0, 0.004)
        sensor = Counter(clock, load, step_s=0.1, wrap_j=None)  # NVML-like: 100 ms steps
        clock.advance(phase)
        out = measure_energy(sensor, load.run_once, idle_s=1.0, min_samples=3, min_time_s=0.25, clock=clock)
        errors.append(out["net_mj"] / _truth(load)["net"] - 1)
    assert max(abs(e) for e in errors) < 0.02


def test_bad_method_is_rejected() -> None:
    clock = SimClock()
    load = Load(clock, 1.0, 2.0, 0.01)
    with pytest.raises(SensorError, match="method must be one of trapezoid, updates"):
        measure_energy(HeldPower(clock, load, 0.1), load.run_once, method="median", clock=clock)
    assert load.runs == 0
