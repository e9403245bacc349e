"""The board agent, run as the packed zipapp in real subprocesses: fingerprint, probe, jobs, timeouts."""
from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sshd_fixture import leftover_processes, tiny_onnx

from modnas.profilers.board import timing
from modnas.profilers.pack import BOARD_DIR, build_agent, pack_dir

QUICK = {"warmup_s": 0.02, "min_runs": 4, "min_time_s": 0.02, "repeats": 3, "cooldown_s": 0.0}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int], str]:
    path, shape = tiny_onnx(tmp_path_factory.mktemp("models") / "tiny.onnx", channels=4)
    return path, shape, hashlib.sha256(path.read_bytes()).hexdigest()


def agent(agent_file: Path, *args: str, stdin: bytes | None = None, timeout: float = 60) -> tuple[dict, str]:
    """Run the zipapp; its stdout must be exactly one JSON line."""
    done = subprocess.run([sys.executable, str(agent_file), *args], input=stdin, capture_output=True, timeout=timeout)
    lines = done.stdout.decode().splitlines()
    assert done.returncode == 0, done.stderr.decode()[-500:]
    assert len(lines) == 1, done.stdout
    return json.loads(lines[0]), done.stderr.decode()


def job(model: tuple[Path, list[int], str], workdir: Path, **overrides: Any) -> dict:
    path, shape, sha = model
    doc = {"artifact": str(path), "sha256": sha, "runtime": "onnxruntime", "threads": 1, "input_shape": shape,
           "measurement": dict(QUICK), "energy": {"sensor": "none"}, "timeout_s": 60, "meta": {},
           "workdir": str(workdir)}
    doc.update(overrides)
    return doc


def test_pack_is_deterministic_and_python38_clean() -> None:
    a, b = pack_dir(BOARD_DIR), pack_dir(BOARD_DIR)
    assert a.data == b.data and a.sha256 == hashlib.sha256(a.data).hexdigest()
    assert build_agent() is build_agent()  # built once per process
    assert a.filename == f"agent-{a.sha256[:12]}.pyz"
    with zipfile.ZipFile(io.BytesIO(a.data)) as zf:
        infos = zf.infolist()
        sources = {i.filename: zf.read(i.filename).decode() for i in infos}
    names = [i.filename for i in infos]
    assert names[0] == "__main__.py" and names[1:] == sorted(names[1:])
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert "modnas_board/agent.py" in names and "modnas_board/runtimes/onnxruntime.py" in names
    assert not any("__pycache__" in n for n in names)
    for name, src in sources.items():  # board code must parse as Python 3.8 and defer its annotations
        ast.parse(src, name, feature_version=(3, 8))
        if name.startswith("modnas_board/") and src.strip():
            assert "from __future__ import annotations" in src, name


def test_timing_protocol_with_an_injected_clock() -> None:
    now = [0.0]
    calls = {"runs": 0, "sleeps": []}

    def clock() -> float:
        return now[0]

    def run_once() -> None:
        calls["runs"] += 1
        now[0] += 0.002  # each run takes 2 ms of the fake clock

    blocks = timing.measure(run_once, {"warmup_s": 0.01, "min_runs": 3, "min_time_s": 0.02, "repeats": 4,
                                       "cooldown_s": 0.5}, clock=clock, sleep=calls["sleeps"].append)
    assert len(blocks) == 4
    for block in blocks:  # at least min_runs AND at least min_time_s: 0.02 s / 2 ms = 10 runs
        assert len(block) == 10 and all(v == pytest.approx(2.0) for v in block)
    assert calls["sleeps"] == [0.5, 0.5, 0.5]
    assert calls["runs"] == 5 + 40  # warm-up by time (0.01 s) then the blocks
    blocks = timing.measure(run_once, {"warmup_s": 0, "min_runs": 25, "min_time_s": 0.0, "repeats": 1,
                                       "cooldown_s": 0}, clock=clock, sleep=calls["sleeps"].append)
    assert [len(b) for b in blocks] == [25]
    with pytest.raises(ValueError, match="min_runs"):
        timing.check_settings({"warmup_s": 0, "min_runs": 0, "min_time_s": 0, "repeats": 1, "cooldown_s": 0})


def _fake_root(root: Path) -> Path:
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/cpuinfo").write_text("processor\t: 0\nBogoMIPS\t: 108.00\nModel\t: Raspberry Pi 4 Model B Rev 1.4\n")
    (root / "proc/meminfo").write_text("MemTotal:        3884096 kB\nMemAvailable:    3000000 kB\n")
    (root / "proc/loadavg").write_text("0.52 0.34 0.20 1/200 999\n")
    (root / "proc/sys/kernel/hostname").write_text("pi4-lab\n")
    (root / "proc/sys/kernel/osrelease").write_text("6.1.0-rpi7-rpi-v8\n")
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text('NAME="Debian"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    for cpu, cur in ((0, 1500000), (1, 600000)):
        freq = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        freq.mkdir(parents=True)
        for name, value in (("scaling_governor", "ondemand" if cpu else "performance"), ("scaling_cur_freq", cur),
                            ("scaling_min_freq", 600000), ("scaling_max_freq", 1500000),
                            ("cpuinfo_max_freq", 1800000)):
            (freq / name).write_text(f"{value}\n")
    for zone, (kind, milli) in enumerate((("cpu-thermal", 48312), ("gpu-thermal", 45000))):
        z = root / f"sys/class/thermal/thermal_zone{zone}"
        z.mkdir(parents=True)
        (z / "type").write_text(kind + "\n")
        (z / "temp").write_text(f"{milli}\n")
    return root


def test_fingerprint_reads_an_injected_sysfs_root(agent_file: Path, tmp_path: Path) -> None:
    root = _fake_root(tmp_path / "root")
    fp, _ = agent(agent_file, "fingerprint", "--root", str(root), "--runtimes", "onnxruntime,no-such")
    assert fp["cpu_model"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert fp["hostname"] == "pi4-lab" and fp["kernel"] == "6.1.0-rpi7-rpi-v8"
    assert fp["os"] == "Debian GNU/Linux 12 (bookworm)"
    assert fp["memory"] == {"total_mb": 3884096 // 1024, "available_mb": 3000000 // 1024}
    assert fp["loadavg"] == [0.52, 0.34, 0.20]
    assert fp["governor"] == "ondemand,performance"
    assert [(r["cpu"], r["cur_khz"], r["max_khz"], r["hw_max_khz"]) for r in fp["cpufreq"]] == [
        (0, 1500000, 1500000, 1800000), (1, 600000, 1500000, 1800000)]
    assert fp["thermal_c"] == {"cpu-thermal": 48.312, "gpu-thermal": 45.0}
    assert fp["cores"] == 2
    import onnxruntime

    assert fp["runtimes"]["onnxruntime"] == {"available": True, "detail": onnxruntime.__version__}
    assert fp["runtimes"]["no-such"]["available"] is False and set(fp["runtimes"]) == {"onnxruntime", "no-such"}


def test_probe_without_and_with_an_unreadable_sensor(agent_file: Path, tmp_path: Path) -> None:
    doc, _ = agent(agent_file, "probe", "--runtimes", "onnxruntime")
    assert doc["energy"] == {"sensor": "none", "readable": False, "detail": "no energy sensor configured"}
    assert doc["runtimes"]["onnxruntime"]["available"] is True
    doc, _ = agent(agent_file, "probe", "--runtimes", "onnxruntime",
                   "--energy", json.dumps({"sensor": "rapl", "root": str(tmp_path)}))
    assert doc["energy"]["sensor"] == "rapl" and doc["energy"]["readable"] is False
    assert doc["energy"]["detail"]


def test_run_measures_a_real_model_and_cleans_up(agent_file: Path, model: Any, tmp_path: Path) -> None:
    import onnxruntime

    reply, _ = agent(agent_file, "run", "-", stdin=json.dumps(job(model, tmp_path)).encode())
    assert reply["ok"] is True and reply["error_code"] is None, reply
    assert reply["runtime"] == "onnxruntime" and reply["runtime_version"] == onnxruntime.__version__
    assert len(reply["blocks"]) == QUICK["repeats"]
    assert all(len(b) >= QUICK["min_runs"] and all(v > 0 for v in b) for b in reply["blocks"])
    assert reply["energy"] is None and reply["agent_seconds"] > 0
    assert list(tmp_path.iterdir()) == []  # the job's temporary directory is gone


def test_hash_mismatch_is_refused_before_loading(agent_file: Path, model: Any, tmp_path: Path) -> None:
    wrong = hashlib.sha256(b"another model").hexdigest()
    reply, _ = agent(agent_file, "run", "-", stdin=json.dumps(job(model, tmp_path, sha256=wrong)).encode())
    assert reply["ok"] is False and reply["error_code"] == "hash_mismatch"
    assert reply["blocks"] == [] and list(tmp_path.iterdir()) == []


def test_hung_worker_is_killed_with_its_process_group(agent_file: Path, model: Any, tmp_path: Path) -> None:
    slow = dict(QUICK, min_time_s=120.0, repeats=1)
    reply, _ = agent(agent_file, "run", "-", stdin=json.dumps(job(model, tmp_path, measurement=slow,
                                                                  timeout_s=2.0)).encode())
    assert reply["ok"] is False and reply["error_code"] == "timeout", reply
    assert list(tmp_path.iterdir()) == []
    assert leftover_processes(str(tmp_path)) == []


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"runtime": "no-such-runtime"}, "runtime_unavailable"),
        ({"threads": 0}, "bad_job"),
        ({"input_shape": [1, 3, 16]}, "load_failed"),
        ({"measurement": {"warmup_s": 0}}, "bad_job"),
        ({"artifact": "relative/model.onnx"}, "bad_job"),
        ({"artifact": "/nonexistent/model.onnx"}, "missing_artifact"),
    ],
)
def test_bad_jobs_are_typed_errors(agent_file: Path, model: Any, tmp_path: Path, change: dict, code: str) -> None:
    reply, _ = agent(agent_file, "run", "-", stdin=json.dumps(job(model, tmp_path, **change)).encode())
    assert (reply["ok"], reply["error_code"]) == (False, code), reply
    assert reply["error"] and "\n" not in reply["error"]


def test_energy_from_a_fake_rapl_tree_reaches_the_reply(agent_file: Path, model: Any, tmp_path: Path) -> None:
    zone = tmp_path / "sys/class/powercap/intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("123456789\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    work = tmp_path / "work"
    work.mkdir()
    energy = {"sensor": "rapl", "root": str(tmp_path / "sys"), "domain": "package", "idle_s": 0.05,
              "min_samples": 0, "min_time_s": 0.05, "max_time_s": 0.5, "interval_ms": None}
    reply, _ = agent(agent_file, "run", "-", stdin=json.dumps(job(model, work, energy=energy)).encode())
    assert reply["ok"] is True, reply
    assert reply["energy"]["kind"] == "counter", reply["energy"]
    assert reply["energy"]["gross_mj"] == 0.0  # the fake counter never moves
    assert reply["energy"]["n_runs"] >= 1
    broken, _ = agent(agent_file, "run", "-", stdin=json.dumps(
        job(model, work, energy={"sensor": "rapl", "root": str(tmp_path / "nothing")})).encode())
    assert broken["ok"] is True and broken["blocks"]
    assert broken["energy"]["sensor"] == "rapl" and "rapl" in broken["energy"]["error"]


def test_the_agent_runs_from_the_source_tree_and_a_job_file(model: Any, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job(model, work, measurement=dict(QUICK, repeats=1))))
    done = subprocess.run([sys.executable, "-m", "modnas.profilers.board", "run", str(path)], capture_output=True,
                          timeout=60, cwd=Path(BOARD_DIR).parents[1])
    reply = json.loads(done.stdout)
    assert reply["ok"] is True and len(reply["blocks"]) == 1
    assert path.exists() and list(work.iterdir()) == []  # the caller's job file stays; the temporaries go


def _python38() -> str | None:
    """A working Python 3.8 interpreter on this machine, if there is one."""
    import glob
    import shutil

    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    candidates += [p for p in (shutil.which("python3.8"),) if p]
    for python in candidates:
        try:
            done = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2] == (3, 8))"],
                                  capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.stdout.strip() == b"True":
            return python
    return None


def test_the_zipapp_runs_on_python38(agent_file: Path, tmp_path: Path) -> None:
    """Boards run old Pythons: the agent must work under 3.8 (without numpy or a runtime installed, here)."""
    python = _python38()
    if python is None:
        pytest.skip("no Python 3.8 interpreter here to run the agent with")
    done = subprocess.run([python, str(agent_file), "fingerprint", "--runtimes", "onnxruntime"], capture_output=True,
                          timeout=60)
    fp = json.loads(done.stdout)
    assert fp["python"].startswith("3.8.") and fp["cores"] >= 1
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(b"\x00model")
    sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
    work = tmp_path / "work"
    work.mkdir()
    doc = job((artifact, [1, 3, 8, 8], sha), work)
    done = subprocess.run([python, str(agent_file), "run", "-"], input=json.dumps(doc).encode(), capture_output=True,
                          timeout=60)
    reply = json.loads(done.stdout)
    probe = subprocess.run([python, "-c", "import onnxruntime"], capture_output=True).returncode == 0
    # the worker started under 3.8 and answered: measured, or told why the runtime is missing
    assert reply["error_code"] in ((None, "load_failed") if probe else ("runtime_unavailable",)), reply
    assert list(work.iterdir()) == []


def test_stopping_the_agent_kills_its_worker_and_cleans_up(agent_file: Path, model: Any, tmp_path: Path) -> None:
    import signal
    import time

    doc = job(model, tmp_path, measurement=dict(QUICK, min_time_s=120.0, repeats=1), timeout_s=120)
    proc = subprocess.Popen([sys.executable, str(agent_file), "run", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(json.dumps(doc).encode())
    proc.stdin.close()
    proc.stdin = None  # already sent and closed: communicate() must not touch it
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob("job-*/worker.log")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
    assert leftover_processes(str(tmp_path)) == []
