"""Energy next to latency, end to end: `modnas profile` on the sshd board with a fake RAPL tree."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from modnas.toolkit.cli import main
from modnas.toolkit.store import Store

POWER_W = 6.0
MAX_UJ = 50_000_000  # small range, so the counter wraps during the test


def _put(path: Path, text: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{text}\n")
    os.replace(tmp, path)


@pytest.fixture()
def fake_rapl(tmp_path: Path):
    """A powercap tree whose package counter advances at a constant POWER_W, wrapping at MAX_UJ."""
    root = tmp_path / "sys"
    zone = root / "class" / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    _put(zone / "name", "package-0")
    _put(zone / "max_energy_range_uj", MAX_UJ)
    _put(zone / "energy_uj", 0)
    stop = threading.Event()

    def advance() -> None:
        start = time.monotonic()
        while not stop.wait(0.002):
            _put(zone / "energy_uj", int((time.monotonic() - start) * POWER_W * 1e6) % MAX_UJ)

    thread = threading.Thread(target=advance, daemon=True)
    thread.start()
    yield root
    stop.set()
    thread.join()


def test_profile_reports_energy_per_inference(sshd_board, modnas_home, tmp_path, fake_rapl, capsys) -> None:
    dev = sshd_board.device_yaml(
        tmp_path, name="loop-energy",
        energy={"sensor": "rapl", "domain": "package", "root": str(fake_rapl), "idle_s": 0.5, "min_samples": 20})
    archs = tmp_path / "a.txt"
    archs.write_text("|nor_conv_1x1~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|skip_connect~2|\n")
    code = main(["profile", str(dev), "--archs", str(archs), "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    (row,) = json.loads(out)["measured"]
    energy = row["energy_mj"]
    assert energy is not None and energy["samples"] >= 20
    stored = Store(modnas_home / "modnas.db").measurement_rows("loop-energy", "nb201", "energy")
    assert len(stored) == 1 and stored[0]["value"] == energy["gross"]
    summary = stored[0]["summary"]
    # constant power: gross energy per inference is POWER_W x the window per inference, idle is POWER_W
    per_run_s = summary["window_s"] / summary["n_runs"]
    assert energy["gross"] == pytest.approx(POWER_W * per_run_s * 1e3, rel=0.1)
    assert energy["idle_w"] == pytest.approx(POWER_W, rel=0.1)
    assert abs(energy["net"]) < 0.2 * energy["gross"]
    code = main(["devices", "--json"])
    (dev_row,) = json.loads(capsys.readouterr().out)
    assert dev_row["measurements"] == {"latency": 1, "energy": 1}


def test_doctor_says_which_sensor_and_period(sshd_board, modnas_home, tmp_path, fake_rapl, capsys) -> None:
    dev = sshd_board.device_yaml(tmp_path, name="loop-doc", energy={"sensor": "rapl", "root": str(fake_rapl)})
    code = main(["doctor", str(dev), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["reachable"] and doc["energy"]["sensor"] == "rapl" and doc["energy"]["readable"]
    assert doc["runtimes"]["onnxruntime"]["available"]
    missing = sshd_board.device_yaml(tmp_path, name="loop-nosensor",
                                     energy={"sensor": "rapl", "root": str(tmp_path / "nothing")})
    code = main(["doctor", str(missing), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and not doc["energy"]["readable"] and "\n" not in doc["energy"]["detail"]
