"""tegrastats: every recorded line parses; the sensor runs a fake ``tegrastats`` that prints
recorded lines at the requested interval."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from modnas.profilers.board.meter import measure_energy
from modnas.profilers.board.sensors import make_sensor
from modnas.profilers.board.sensors.base import SensorError
from modnas.profilers.board.sensors.rails import INPUT_RAILS
from modnas.profilers.board.sensors.tegrastats import parse_line


def fixture_lines(shared_dir: Path) -> List[Tuple[str, str]]:
    """(board comment, line) pairs from the recorded fixture."""
    path = shared_dir / "fixtures" / "tegrastats_lines.txt"
    pairs, comment = [], ""
    for raw in path.read_text().splitlines():
        if raw.startswith("#"):
            comment = raw.lstrip("# ").strip()
        elif raw.strip():
            pairs.append((comment, raw))
    return pairs


SHARED = Path(os.environ.get("MODNAS_SHARED") or Path(__file__).resolve().parents[2] / "shared")
LINES = fixture_lines(SHARED)
IDS = [c.split(",")[0].replace(" ", "_") for c, _ in LINES]


def rail_tokens(line: str) -> List[Tuple[str, float, float]]:
    """Rails read the simple way: a name token followed by `<digits>[mW]/<digits>[mW]`."""
    tokens = line.split()
    found = []
    for name, value in zip(tokens, tokens[1:]):
        parts = value.split("/")
        if len(parts) != 2 or not name.replace("_", "").isalnum() or not name[0].isalpha():
            continue
        nums = [p[:-2] if p.endswith("mW") else p for p in parts]
        if all(n.isdigit() for n in nums):
            found.append((name, int(nums[0]) / 1000.0, int(nums[1]) / 1000.0))
    return found


def test_fixture_covers_every_format() -> None:
    text = "\n".join(line for _, line in LINES)
    assert len(LINES) >= 5
    for feature in ("off,", "@-256C", " NC ", "mW/", "POM_5V_IN", "VDD_IN 3140/"):
        assert feature in text, feature
    assert any(parse_line(line)["time"] for _, line in LINES)
    assert any(not parse_line(line)["rails"] for _, line in LINES)


@pytest.mark.parametrize("comment,line", LINES, ids=IDS)
def test_every_fixture_line_parses(comment: str, line: str) -> None:
    parsed = parse_line(line)
    expected = rail_tokens(line)
    connected = [(n, c, a) for n, c, a in expected if n != "NC"]
    rails: Dict[str, Dict[str, float]] = parsed["rails"]  # type: ignore[assignment]
    assert sorted(rails) == sorted(n for n, _, _ in connected)
    for name, current, average in connected:
        assert rails[name]["current_w"] == pytest.approx(current)
        assert rails[name]["average_w"] == pytest.approx(average)
    assert parsed["nc_rails"] == len(expected) - len(connected)
    inputs = [n for n, _, _ in connected if n in INPUT_RAILS]
    if not connected:
        assert parsed["total_w"] is None and parsed["input_rail"] is None
    elif inputs:
        assert parsed["input_rail"] == inputs[0]
        assert parsed["total_w"] == pytest.approx(rails[inputs[0]]["current_w"])  # never plus the others
    else:
        assert parsed["input_rail"] is None
        assert parsed["total_w"] == pytest.approx(sum(c for _, c, _ in connected))
    temps: Dict[str, object] = parsed["temps_c"]  # type: ignore[assignment]
    assert sum(1 for v in temps.values() if v is None) == line.count("@-256C")
    assert len(temps) == len(set(n.split("@")[0] for n in line.split() if n.endswith("C") and "@" in n))
    cpus: List[object] = parsed["cpus"]  # type: ignore[assignment]
    assert cpus and sum(1 for c in cpus if c is None) == line.count("off")
    ram = line.split("RAM ")[1].split("MB")[0].split("/")
    assert parsed["ram_mb"] == [int(ram[0]), int(ram[1])]
    first = line.split()[0]
    assert (parsed["time"] is not None) == first[:2].isdigit()


def test_mw_and_w_units_and_averages_without_unit() -> None:
    parsed = parse_line("VDD_IN 3913mW/3922 VDD_GPU 1.5W/1.25W RAM 10/20MB SWAP 0/100MB")
    assert parsed["rails"] == {"VDD_IN": {"current_w": 3.913, "average_w": 3.922},
                               "VDD_GPU": {"current_w": 1.5, "average_w": 1.25}}
    assert parsed["total_w"] == pytest.approx(3.913)


# ---------------------------------------------------------------- the sensor and a fake tegrastats

FAKE = """#!{python}
import sys, time
args = sys.argv[1:]
lines_file = args[0]
interval = int(args[args.index("--interval") + 1]) / 1000.0
with open(lines_file + ".argv", "w") as fh:
    fh.write(" ".join(args))
print("NVIDIA tegrastats starting", flush=True)
lines = [l.rstrip("\\n") for l in open(lines_file) if l.strip()]
k = 0
while True:
    line = lines[k % len(lines)]
    if line.startswith("EXIT"):
        sys.stderr.write("tegrastats: lost the power monitor\\n")
        sys.exit(3)
    print(line, flush=True)
    k += 1
    time.sleep(interval)
"""


@pytest.fixture()
def fake_tegrastats(tmp_path: Path) -> Path:
    script = tmp_path / "tegrastats"
    script.write_text(FAKE.format(python=sys.executable))
    script.chmod(0o755)
    return script


def sensor_cfg(script: Path, lines: List[str], tmp_path: Path, **extra: object) -> Dict[str, object]:
    lines_file = tmp_path / "lines.txt"
    lines_file.write_text("\n".join(lines) + "\n")
    cfg: Dict[str, object] = {"sensor": "tegrastats", "command": "%s %s" % (script, lines_file), "interval_ms": 20}
    cfg.update(extra)
    return cfg


WITH_RAILS = [(c, line) for c, line in LINES if parse_line(line)["rails"]]


@pytest.mark.parametrize("comment,line", WITH_RAILS, ids=[c.split(",")[0].replace(" ", "_") for c, _ in WITH_RAILS])
def test_sensor_reads_the_board_total_of_every_board(comment: str, line: str, fake_tegrastats: Path, tmp_path: Path) -> None:
    with make_sensor(sensor_cfg(fake_tegrastats, [line], tmp_path)) as sensor:
        assert sensor.read().watts == pytest.approx(parse_line(line)["total_w"])
    argv = (tmp_path / "lines.txt.argv").read_text().split()
    assert argv[-2:] == ["--interval", "20"]


def test_sensor_energy_at_a_known_power(fake_tegrastats: Path, tmp_path: Path) -> None:
    template = "04-11-2025 10:36:27 RAM 4321/62801MB VDD_IN {p}mW/{p}mW VDD_SOC 1238mW/1237mW NC 0mW/0mW"
    lines = [template.format(p=p) for p in (4100, 4300, 4200, 4200)]  # mean 4.2 W
    with make_sensor(sensor_cfg(fake_tegrastats, lines, tmp_path, poll_ms=4)) as sensor:
        out = measure_energy(sensor, lambda: time.sleep(0.01), idle_s=0.4, min_samples=12, min_time_s=0.5)
    assert out["samples"] >= 12  # each line is an update, even a repeated value
    assert out["mean_w"] == pytest.approx(4.2, rel=0.05)
    assert out["idle_w"] == pytest.approx(4.2, rel=0.05)
    assert out["gross_mj"] == pytest.approx(out["mean_w"] * out["window_s"] / out["n_runs"] * 1e3)


def test_sensor_rail_choice(fake_tegrastats: Path, tmp_path: Path) -> None:
    line = dict((c.split(",")[0], l) for c, l in LINES)["Jetson Orin Nano"]
    with make_sensor(sensor_cfg(fake_tegrastats, [line], tmp_path, rail="VDD_SOC")) as sensor:
        assert sensor.read().watts == pytest.approx(parse_line(line)["rails"]["VDD_SOC"]["current_w"])  # type: ignore[index]
    with make_sensor(sensor_cfg(fake_tegrastats, [line], tmp_path, rail="sum")) as sensor:
        rails = parse_line(line)["rails"]
        assert sensor.read().watts == pytest.approx(rails["VDD_CPU_GPU_CV"]["current_w"] + rails["VDD_SOC"]["current_w"])  # type: ignore[index]
    with pytest.raises(SensorError, match="no rail 'VDD_GPU'.*VDD_SOC") as info:
        make_sensor(sensor_cfg(fake_tegrastats, [line], tmp_path, rail="VDD_GPU"))
    assert "\n" not in str(info.value)


def test_board_without_rails_is_one_clear_line(fake_tegrastats: Path, tmp_path: Path) -> None:
    tx1 = [l for _, l in LINES if not parse_line(l)["rails"]]
    with pytest.raises(SensorError, match="no power rails.*ina3221") as info:
        make_sensor(sensor_cfg(fake_tegrastats, tx1, tmp_path))
    assert "\n" not in str(info.value)


def test_tegrastats_that_dies_says_why(fake_tegrastats: Path, tmp_path: Path) -> None:
    line = WITH_RAILS[0][1]
    with make_sensor(sensor_cfg(fake_tegrastats, [line] * 3 + ["EXIT"], tmp_path)) as sensor:
        with pytest.raises(SensorError, match="exited \\(status 3\\).*lost the power monitor"):
            measure_energy(sensor, lambda: time.sleep(0.01), idle_s=0.3, min_time_s=5)


def test_missing_tegrastats_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(SensorError, match="not found on this board") as info:
        make_sensor({"sensor": "tegrastats", "command": str(tmp_path / "tegrastats")})
    assert "\n" not in str(info.value)
