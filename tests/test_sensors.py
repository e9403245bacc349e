"""Energy sensors against fake sysfs trees advanced by a background writer at a known power."""
from __future__ import annotations

import ast
import glob
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

from modnas.profilers.board.meter import measure_energy
from modnas.profilers.board.meter import probe_sensor
from modnas.profilers.board.sensors import NAMES, SENSORS, detect_sensors, get_sensor_module, make_sensor
from modnas.profilers.board.sensors.base import COUNTER, POWER, SensorError, read_text
from modnas.profilers.board.sensors.sampling import SimClock

ROOT = Path(__file__).resolve().parents[1]
BOARD = ROOT / "profilers" / "board"


# ---------------------------------------------------------------- fake trees and the writer

def put(path: Path, text: object) -> None:
    """Atomic write, as sysfs never shows a half-written value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("%s\n" % text)
    os.replace(tmp, path)


def rapl_tree(sysfs: Path, max_uj: int = 262143328850) -> Dict[str, Path]:
    zones = {"intel-rapl:0": "package-0", "intel-rapl:0:0": "core", "intel-rapl:0:1": "uncore",
             "intel-rapl:1": "psys", "intel-rapl-mmio:0": "package-0"}
    out = {}
    for zone, name in zones.items():
        d = sysfs / "class" / "powercap" / zone
        put(d / "name", name)
        put(d / "max_energy_range_uj", max_uj)
        put(d / "energy_uj", 0)
        out[name if not zone.startswith("intel-rapl-mmio") else "mmio"] = d
    return out


def hwmon_tree(sysfs: Path, rails: List[str], power_files: bool = False, hwmon: str = "hwmon3",
               dev: str = "1-0040") -> Path:
    d = sysfs / "bus" / "i2c" / "drivers" / "ina3221" / dev / "hwmon" / hwmon
    for k, rail in enumerate(rails, start=1):
        put(d / ("in%d_label" % k), rail)
        put(d / ("in%d_input" % k), 5000)
        put(d / ("curr%d_input" % k), 100)
        put(d / ("in%d_enable" % k), 1)
        if power_files:
            put(d / ("power%d_input" % k), 500000)
    put(d / "in7_label", "sum of shunt voltages")
    put(d / "in7_input", 999)
    return d


def iio_tree(sysfs: Path, rails: List[str]) -> Path:
    d = sysfs / "bus" / "i2c" / "drivers" / "ina3221x" / "0-0041" / "iio:device1"
    for c, rail in enumerate(rails):
        put(d / ("rail_name_%d" % c), rail)
        put(d / ("in_power%d_input" % c), 100)
        put(d / ("in_voltage%d_input" % c), 5000)
        put(d / ("in_current%d_input" % c), 20)
    return d


class FakeBoard:
    """A board drawing ``idle_w``, or ``busy_w`` during an inference; a writer thread advances
    the fake files every ``tick_s`` (with a small dither so every update is a new value)."""

    def __init__(self, idle_w: float, busy_w: float, tick_s: float = 0.002) -> None:
        self.idle_w, self.busy_w, self.tick_s = idle_w, busy_w, tick_s
        self.busy = False
        self.energy_j = 0.0
        self.k = 0
        self.busy_time = 0.0
        self.runs = 0
        self.max_gap = 0.0  # the writer's longest pause: its files are that stale at worst
        self.writers: List[Callable[["FakeBoard"], None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def power(self) -> float:
        return self.busy_w if self.busy else self.idle_w

    def _step(self, dt: float) -> None:
        self.energy_j += self.power() * dt
        self.k += 1
        for write in self.writers:
            write(self)

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.tick_s):
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            self._step(now - last)
            last = now

    def __enter__(self) -> "FakeBoard":
        self._step(0.0)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def inference(self, busy_s: float) -> Callable[[], None]:
        def run_once() -> None:
            start = time.monotonic()
            self.busy = True
            time.sleep(busy_s)
            self.busy = False
            self.busy_time += time.monotonic() - start
            self.runs += 1
        return run_once

    def dither(self) -> int:
        return self.k % 5 - 2

    def slack(self, out: Dict[str, object]) -> float:
        """Extra relative tolerance for a writer starved of CPU on a loaded machine: its files
        can be that stale at both window edges. Near 0 on an idle machine."""
        return 2 * self.max_gap / float(out["window_s"])  # type: ignore[arg-type]

    def truth(self, out: Dict[str, object]) -> Dict[str, float]:
        n, window = float(out["n_runs"]), float(out["window_s"])  # type: ignore[arg-type]
        busy = self.busy_time
        return {"gross": (self.busy_w * busy + self.idle_w * (window - busy)) / n * 1e3,
                "net": (self.busy_w - self.idle_w) * busy / n * 1e3}


def rapl_writer(zone: Path, max_uj: int, start_uj: int = 0) -> Callable[[FakeBoard], None]:
    return lambda b: put(zone / "energy_uj", int(start_uj + b.energy_j * 1e6) % max_uj)


def hwmon_writer(d: Path, k: int, power_files: bool) -> Callable[[FakeBoard], None]:
    def write(b: FakeBoard) -> None:
        if power_files:
            put(d / ("power%d_input" % k), int(b.power() * 1e6) + 100 * b.dither())
        else:
            put(d / ("curr%d_input" % k), int(round(b.power() / 5.0 * 1000)) + b.dither())
    return write


def iio_writer(d: Path, c: int) -> Callable[[FakeBoard], None]:
    return lambda b: put(d / ("in_power%d_input" % c), int(round(b.power() * 1000)) + b.dither())


def denying(suffix: str) -> Callable[[str], str]:
    """A reader that behaves like an unprivileged user on a root-only file."""
    def reader(path: str) -> str:
        if path.endswith(suffix):
            raise PermissionError(13, "Permission denied", path)
        return read_text(path)
    return reader


def mode_checking(path: str) -> str:
    """A reader that honours the file mode bits as a non-root user would (tests run as root)."""
    if not os.stat(path).st_mode & stat.S_IROTH:
        raise PermissionError(13, "Permission denied", path)
    return read_text(path)


FAST = dict(idle_s=0.4, min_samples=10, min_time_s=0.8, max_time_s=20.0)


# ---------------------------------------------------------------- registry

@pytest.mark.parametrize("name", NAMES)
def test_registry_modules_follow_the_interface(name: str) -> None:
    module = get_sensor_module(name)
    assert SENSORS[name] == module.__name__
    assert module.NAME == name
    assert callable(module.make) and callable(module.detect)
    assert isinstance(module.KEYS, frozenset)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_key_is_one_line_naming_it(name: str) -> None:
    with pytest.raises(SensorError) as info:
        make_sensor({"sensor": name, "colour": "blue"})
    assert "'colour'" in str(info.value) and "\n" not in str(info.value)


def _missing_cfg(name: str, tmp_path: Path) -> Dict[str, object]:
    return {
        "rapl": {"sensor": "rapl", "root": str(tmp_path)},
        "ina3221": {"sensor": "ina3221", "root": str(tmp_path)},
        "tegrastats": {"sensor": "tegrastats", "command": str(tmp_path / "no-tegrastats")},
        "nvml": {"sensor": "nvml"},
        "command": {"sensor": "command", "command": str(tmp_path / "no-meter") + " --watts"},
    }[name]


@pytest.mark.parametrize("name", NAMES)
def test_missing_sensor_is_one_clear_line(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # as on a board without nvidia-ml-py
    with pytest.raises(SensorError) as info:
        make_sensor(_missing_cfg(name, tmp_path))
    message = str(info.value)
    assert message.startswith(name) and "\n" not in message
    probe = probe_sensor(_missing_cfg(name, tmp_path))
    assert probe["readable"] is False and probe["detail"] == message and probe["sensor"] == name


@pytest.mark.parametrize("name", NAMES)
def test_device_file_defaults_are_accepted(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The device-file schema sends every field, unset ones as None and interval_ms for all."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    cfg = {"sensor": name, "domain": None, "rail": None, "root": None, "command": None, "index": None,
           "interval_ms": 100, "idle_s": 2.0, "min_samples": 10}
    cfg.update({k: v for k, v in _missing_cfg(name, tmp_path).items() if k != "sensor"})
    with pytest.raises(SensorError) as info:
        make_sensor(cfg)
    assert str(info.value) == _missing_message(name, tmp_path)


def _missing_message(name: str, tmp_path: Path) -> str:
    with pytest.raises(SensorError) as info:
        make_sensor(_missing_cfg(name, tmp_path))
    return str(info.value)


def test_agent_style_measure_with_config(tmp_path: Path) -> None:
    from modnas.profilers.board.meter import measure_with_config

    zones = rapl_tree(tmp_path)
    cfg = {"sensor": "rapl", "domain": "package", "rail": None, "root": str(tmp_path), "command": None,
           "index": None, "interval_ms": 100, "idle_s": 0.3, "min_samples": 5}
    with FakeBoard(idle_w=5.0, busy_w=5.0) as board:
        board.writers.append(rapl_writer(zones["package-0"], 262143328850))
        time.sleep(0.05)
        out = measure_with_config(cfg, lambda: time.sleep(0.005), min_time_s=0.3)
    assert out["sensor"] == "rapl" and "package-0" in str(out["detail"])
    assert out["idle_s"] == pytest.approx(0.3, rel=0.2) and out["window_s"] >= 0.3
    assert out["mean_w"] == pytest.approx(5.0, rel=0.05 + board.slack(out)) and out["samples"] >= 5


@pytest.mark.parametrize("name", NAMES)
def test_detect_finds_nothing_on_an_empty_root(name: str, tmp_path: Path) -> None:
    assert get_sensor_module(name).detect(str(tmp_path)) == []


def test_unknown_sensor_and_missing_key() -> None:
    with pytest.raises(SensorError, match="unknown sensor 'joulescope'.*rapl"):
        make_sensor({"sensor": "joulescope"})
    with pytest.raises(SensorError, match="'sensor' key"):
        make_sensor({"domain": "package"})


# ---------------------------------------------------------------- RAPL

def test_rapl_picks_package_and_never_sums_nested_domains(tmp_path: Path) -> None:
    zones = rapl_tree(tmp_path)
    put(zones["package-0"] / "energy_uj", 5_000_000)
    put(zones["core"] / "energy_uj", 3_000_000)
    put(zones["psys"] / "energy_uj", 9_000_000)
    put(zones["mmio"] / "energy_uj", 7_000_000)
    with make_sensor({"sensor": "rapl", "root": str(tmp_path)}) as sensor:
        assert sensor.kind == COUNTER and sensor.read().joules == pytest.approx(5.0)
        assert sensor.wrap_j == pytest.approx(262143.32885)
    with make_sensor({"sensor": "rapl", "domain": "psys", "root": str(tmp_path)}) as sensor:
        assert sensor.read().joules == pytest.approx(9.0)
    with pytest.raises(SensorError, match="no RAPL domain named 'dram'.*core, package-0, psys"):
        make_sensor({"sensor": "rapl", "domain": "dram", "root": str(tmp_path)})


@pytest.mark.parametrize("reader", [denying("energy_uj"), mode_checking], ids=["denied", "chmod000"])
def test_rapl_root_only_counter_says_how_to_fix(tmp_path: Path, reader: Callable[[str], str]) -> None:
    zones = rapl_tree(tmp_path)
    for zone in zones.values():
        for f in zone.iterdir():
            f.chmod(0o444)
        (zone / "energy_uj").chmod(0o400)  # what Linux >= 5.10 does
    with pytest.raises(SensorError) as info:
        make_sensor({"sensor": "rapl", "root": str(tmp_path)}, reader=reader)
    message = str(info.value)
    assert "\n" not in message and "energy_uj" in message
    assert "root" in message and "chmod a+r" in message and "udev" in message
    probe = probe_sensor({"sensor": "rapl", "root": str(tmp_path)}, reader=reader)
    assert probe["readable"] is False and probe["detail"] == message


def test_rapl_energy_with_wraps_matches_the_known_profile(tmp_path: Path) -> None:
    max_uj = 1_500_000  # 1.5 J: wraps several times a second at 6-14 W
    zones = rapl_tree(tmp_path, max_uj)
    with FakeBoard(idle_w=6.0, busy_w=14.0) as board:
        board.writers.append(rapl_writer(zones["package-0"], max_uj, start_uj=1_400_000))
        time.sleep(0.05)
        with make_sensor({"sensor": "rapl", "root": str(tmp_path), "poll_ms": 10}) as sensor:
            out = measure_energy(sensor, board.inference(0.02), **FAST)
    wraps = board.energy_j / 1.5
    assert wraps > 3
    truth = board.truth(out)
    slack = board.slack(out)
    assert out["gross_mj"] == pytest.approx(truth["gross"], rel=0.05 + slack)
    assert out["net_mj"] == pytest.approx(truth["net"], rel=0.12 + slack * board.busy_w / (board.busy_w - board.idle_w))
    assert out["idle_w"] == pytest.approx(6.0, rel=0.05)
    assert out["samples"] >= 10


def test_rapl_probe_reports_power_and_period(tmp_path: Path) -> None:
    zones = rapl_tree(tmp_path)
    with FakeBoard(idle_w=9.0, busy_w=9.0) as board:
        board.writers.append(rapl_writer(zones["package-0"], 262143328850))
        out = probe_sensor({"sensor": "rapl", "root": str(tmp_path)}, duration_s=0.5)
    assert out["readable"] is True and out["sensor"] == "rapl"
    assert out["watts"] == pytest.approx(9.0, rel=0.05 + 2 * board.max_gap / 0.5)
    assert out["period_s"] is not None and out["period_s"] > 0
    assert "package-0" in str(out["detail"])


# ---------------------------------------------------------------- INA3221

ORIN_NANO = ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
AGX_ORIN = ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]


@pytest.mark.parametrize("power_files", [False, True], ids=["in_x_curr", "power_input"])
def test_ina3221_hwmon_energy_matches_the_known_profile(tmp_path: Path, power_files: bool) -> None:
    d = hwmon_tree(tmp_path, ORIN_NANO, power_files, hwmon="hwmon%d" % (5 + power_files))
    with FakeBoard(idle_w=4.0, busy_w=9.0) as board:
        board.writers.append(hwmon_writer(d, 1, power_files))
        time.sleep(0.05)
        with make_sensor({"sensor": "ina3221", "rail": "VDD_IN", "root": str(tmp_path), "poll_ms": 5}) as sensor:
            assert sensor.kind == POWER
            out = measure_energy(sensor, board.inference(0.05), **FAST)
    truth = board.truth(out)
    slack = board.slack(out)
    assert out["gross_mj"] == pytest.approx(truth["gross"], rel=0.05 + slack)
    assert out["net_mj"] == pytest.approx(truth["net"], rel=0.12 + slack * board.busy_w / (board.busy_w - board.idle_w))
    assert out["idle_w"] == pytest.approx(4.0, rel=0.03)


def test_ina3221_iio_energy_matches_the_known_profile(tmp_path: Path) -> None:
    d = iio_tree(tmp_path, ["VDD_IN", "VDD_SYS_GPU", "VDD_SYS_CPU"])
    with FakeBoard(idle_w=3.0, busy_w=7.0) as board:
        board.writers.append(iio_writer(d, 0))
        time.sleep(0.05)
        with make_sensor({"sensor": "ina3221", "root": str(tmp_path), "poll_ms": 5}) as sensor:
            assert "iio" in sensor.describe() and "VDD_IN" in sensor.describe()
            out = measure_energy(sensor, board.inference(0.05), **FAST)
    truth = board.truth(out)
    slack = board.slack(out)
    assert out["gross_mj"] == pytest.approx(truth["gross"], rel=0.05 + slack)
    assert out["net_mj"] == pytest.approx(truth["net"], rel=0.12 + slack * board.busy_w / (board.busy_w - board.idle_w))


def test_ina3221_rail_choice(tmp_path: Path) -> None:
    nano = tmp_path / "nano"
    d = hwmon_tree(nano, ORIN_NANO)
    for k, ma in ((1, 800), (2, 100), (3, 250)):
        put(d / ("curr%d_input" % k), ma)
    read = lambda cfg: make_sensor(dict(cfg, sensor="ina3221", root=str(nano))).read().watts  # noqa: E731
    assert read({}) == pytest.approx(4.0)  # the input rail alone, never plus the others
    assert read({"rail": "vdd_soc"}) == pytest.approx(1.25)
    assert read({"rail": "sum"}) == pytest.approx(1.75)
    with pytest.raises(SensorError, match="no rail 'VDD_GPU'.*VDD_CPU_GPU_CV"):
        read({"rail": "VDD_GPU"})
    # AGX: no input rail, two monitors, NC and disabled channels: total = sum of the module rails.
    agx = tmp_path / "agx"
    a = hwmon_tree(agx, AGX_ORIN, dev="1-0040", hwmon="hwmon2")
    b = hwmon_tree(agx, ["NC", "VDDQ_VDD2_1V8AO", "NC"], dev="1-0041", hwmon="hwmon4")
    put(a / "in3_enable", 0)
    with make_sensor({"sensor": "ina3221", "root": str(agx)}) as sensor:
        assert sensor.read().watts == pytest.approx(3 * 0.5)  # VDD_GPU_SOC + VDD_CPU_CV + VDDQ
        assert "VIN_SYS_5V0" not in sensor.describe() and "NC" not in sensor.describe().split("+")
    assert b.exists()


def test_ina3221_unreadable_is_one_line(tmp_path: Path) -> None:
    hwmon_tree(tmp_path, ORIN_NANO)
    with pytest.raises(SensorError) as info:
        make_sensor({"sensor": "ina3221", "root": str(tmp_path)}, reader=denying("curr1_input"))
    assert "permission denied" in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------- NVML (a pynvml look-alike)

class FakeNvml:
    """What the toolkit uses of pynvml; the counter steps every ``step_s`` like real GPUs."""

    class NVMLError(Exception):
        pass

    def __init__(self, clock: SimClock, power: Callable[[], float], energy: bool, step_s: float = 0.05) -> None:
        self.clock, self.power, self.energy = clock, power, energy
        self.true_mj = 123456.0
        self.shown_mj = self.true_mj
        self.inits = 0
        self.dt = step_s / 10
        self.k = 0
        clock.every(self.dt, self._tick)

    def _tick(self) -> None:
        self.true_mj += self.power() * self.dt * 1e3
        self.k += 1
        if self.k % 10 == 0:
            self.shown_mj = self.true_mj

    def nvmlInit(self) -> None:
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.inits -= 1

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return "gpu%d" % index

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if not self.energy:
            raise self.NVMLError("Not Supported")
        return int(self.shown_mj)

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        return int(self.power() * 1000)


@pytest.mark.parametrize("energy", [True, False], ids=["counter", "power"])
def test_nvml_counter_or_power_through_the_lazy_import(energy: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimClock()
    state = {"busy": False}
    nv = FakeNvml(clock, lambda: 250.0 if state["busy"] else 60.0, energy)
    monkeypatch.setitem(sys.modules, "pynvml", nv)

    def run_once() -> None:
        state["busy"] = True
        clock.advance(0.004)
        state["busy"] = False

    sensor = make_sensor({"sensor": "nvml", "index": 0}, now=clock.now)
    assert sensor.kind == (COUNTER if energy else POWER)
    out = measure_energy(sensor, run_once, idle_s=1.0, min_samples=20, min_time_s=1.0, clock=clock)
    sensor.close()
    assert nv.inits == 0
    assert out["gross_mj"] == pytest.approx(250.0 * 4.0, rel=0.05)
    assert out["idle_w"] == pytest.approx(60.0, rel=0.02)
    if energy:
        assert out["period_s"] == pytest.approx(0.05, rel=0.1)  # the counter's own step


def test_nvml_bad_index_and_forced_energy_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    nv = FakeNvml(SimClock(), lambda: 10.0, energy=False)
    with pytest.raises(SensorError, match="no GPU with index 3"):
        make_sensor({"sensor": "nvml", "index": 3}, nvml=nv)
    with pytest.raises(SensorError, match="no total-energy counter.*mode: power"):
        make_sensor({"sensor": "nvml", "mode": "energy"}, nvml=nv)
    assert nv.inits == 0


# ---------------------------------------------------------------- command

def test_command_sensor_runs_without_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    cfg = {"sensor": "command", "command": "echo 4.5 W; touch %s" % marker, "interval_ms": 20}
    with make_sensor(cfg) as sensor:
        assert sensor.read().watts == pytest.approx(4.5)  # the `;` part is echoed, never run
    assert not marker.exists()


def test_command_sensor_energy(tmp_path: Path) -> None:
    with make_sensor({"sensor": "command", "command": "echo 'meter: 4.5 W'", "interval_ms": 20}) as sensor:
        out = measure_energy(sensor, lambda: time.sleep(0.01), idle_s=0.2, min_samples=5, min_time_s=0.3)
    assert out["samples"] >= 5  # the same value each run still counts as an update
    assert out["mean_w"] == pytest.approx(4.5) and out["idle_w"] == pytest.approx(4.5)
    assert out["gross_mj"] == pytest.approx(4.5 * out["window_s"] / out["n_runs"] * 1e3, rel=1e-6)


def test_command_stream_mode(tmp_path: Path) -> None:
    script = tmp_path / "meter.py"
    script.write_text(
        "import sys, time\n"
        "print('USB meter v1', flush=True)\n"
        "k = 0\n"
        "while True:\n"
        "    print('%.2f W' % (3.8 if k % 2 else 4.2), flush=True)\n"
        "    k += 1\n"
        "    time.sleep(0.01)\n"
    )
    cfg = {"sensor": "command", "command": "%s -u %s" % (sys.executable, script), "stream": True, "poll_ms": 3}
    with make_sensor(cfg) as sensor:
        out = measure_energy(sensor, lambda: time.sleep(0.01), idle_s=0.2, min_samples=10, min_time_s=0.5)
    assert out["mean_w"] == pytest.approx(4.0, rel=0.1)
    assert out["samples"] >= 10


@pytest.mark.parametrize("command,match", [
    ("false", "exited with status 1"),
    ("echo no reading", "printed no number"),
    ("echo -3", "negative"),
])
def test_command_sensor_errors(command: str, match: str) -> None:
    with pytest.raises(SensorError, match=match) as info:
        make_sensor({"sensor": "command", "command": command})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text,watts", [
    ("4.5", 4.5), ("5.02V 0.91A 4.57W", 4.57), ("P=4570mW", 4.57), ("1.5e1\n", 15.0), ("idle", None),
])
def test_command_output_parsing(text: str, watts: Optional[float]) -> None:
    from modnas.profilers.board.sensors.command import parse_watts

    got = parse_watts(text)
    assert got == (None if watts is None else pytest.approx(watts))


def test_command_sensor_needs_a_command() -> None:
    with pytest.raises(SensorError, match="needs a 'command' key"):
        make_sensor({"sensor": "command"})


# ---------------------------------------------------------------- detection and probing

def _fake_tegrastats(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!%s\nimport sys, time\nwhile True:\n    print(%r, flush=True)\n    time.sleep(0.02)\n" % (sys.executable, line)
    )
    path.chmod(0o755)


def test_detect_sensors_on_a_fake_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    rapl_tree(tmp_path / "sys")
    hwmon_tree(tmp_path / "sys", ORIN_NANO)
    _fake_tegrastats(tmp_path / "usr" / "bin" / "tegrastats", "RAM 1/2MB VDD_IN 3913mW/3922mW VDD_SOC 1238mW/1237mW")
    put(tmp_path / "dev" / "nvidiactl", "")
    found = {entry["sensor"]: entry for entry in detect_sensors(str(tmp_path))}
    assert set(found) == {"rapl", "ina3221", "tegrastats", "nvml"}
    assert found["rapl"]["readable"] and found["rapl"]["config"]["domain"] == "package"
    assert found["ina3221"]["readable"] and found["ina3221"]["config"]["rail"] == "VDD_IN"
    assert found["tegrastats"]["readable"]
    assert found["nvml"]["readable"] is False and "pip install nvidia-ml-py" in found["nvml"]["detail"]
    # each suggested config builds the same sensor through make_sensor
    with make_sensor(found["ina3221"]["config"]) as sensor:
        assert sensor.read().watts == pytest.approx(0.5)


def test_probe_observes_a_coarse_update_period(tmp_path: Path) -> None:
    """A monitor updating 4 times a second, read through the real ina3221 code on a simulated
    clock: the files exist in a fake tree, the injected reader supplies their changing values."""
    clock = SimClock()
    values = {"uw": 2_000_000}

    def tick() -> None:
        values["uw"] += 1000

    clock.every(0.25, tick)

    def reader(path: str) -> str:
        if path.endswith("_label"):
            return "VDD_IN" if os.path.basename(path) == "in1_label" else "sum of shunt voltages"
        return str(values["uw"])

    hwmon_tree(tmp_path, ["VDD_IN"], power_files=True)
    out = probe_sensor({"sensor": "ina3221", "root": str(tmp_path), "poll_ms": 10}, duration_s=3.0,
                       clock=clock, reader=reader, now=clock.now)
    assert out["readable"] is True
    assert out["period_s"] == pytest.approx(0.25, rel=0.01)
    assert out["watts"] == pytest.approx(2.0, rel=0.01)


# ---------------------------------------------------------------- board-side constraints

BOARD_FILES = sorted(str(p) for p in [BOARD / "meter.py", *(BOARD / "sensors").glob("*.py")])


@pytest.mark.parametrize("path", BOARD_FILES, ids=lambda p: Path(p).name)
def test_board_code_is_python38_and_stdlib_only(path: str) -> None:
    source = Path(path).read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    assert "from __future__ import annotations" in source
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] in sys.stdlib_module_names or name == "__future__", name


def _python38() -> Optional[str]:
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    return found[0] if found else None


@pytest.mark.skipif(_python38() is None, reason="no Python 3.8 interpreter on this machine")
def test_board_code_imports_and_measures_on_python38(tmp_path: Path) -> None:
    """The board code as a board gets it: the packed agent, imported by an old interpreter."""
    from modnas.profilers.pack import PACKAGE, build_agent

    pyz = tmp_path / "agent.pyz"
    pyz.write_bytes(build_agent().data)
    code = (
        f"import sys; sys.path.insert(0, {str(pyz)!r})\n"
        f"from {PACKAGE}.sensors import make_sensor, NAMES\n"
        f"from {PACKAGE}.sensors.tegrastats import parse_line\n"
        f"from {PACKAGE}.meter import measure_energy, probe_sensor\n"
        "import importlib, time\n"
        f"[importlib.import_module('{PACKAGE}.sensors.' + n) for n in NAMES]\n"
        "s = make_sensor({'sensor': 'command', 'command': 'echo 2.5', 'interval_ms': 20})\n"
        "out = measure_energy(s, lambda: time.sleep(0.01), idle_s=0.1, min_samples=3, min_time_s=0.2)\n"
        "s.close()\n"
        "print(round(out['mean_w'], 3), parse_line('VDD_IN 3913mW/3922mW')['total_w'])\n"
    )
    done = subprocess.run([_python38(), "-c", code], cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2.5", "3.913"]
