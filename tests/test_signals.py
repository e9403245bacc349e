"""Ctrl-C and SIGTERM stop a campaign at once, on a local and an SSH board: exit 130 / 143 with one line,
no agent or worker left on the board, every finished measurement stored, and a resume measures only the rest.

`modnas profile` runs as a real subprocess; the signal is sent while a measurement is running on the board.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sshd_fixture import leftover_processes
from modnas.toolkit.spaces import get_space
from modnas.toolkit.store import Store

# each measurement takes about 1.3 s on the board: the signal lands inside one
SLOW = {"warmup_s": 0.1, "min_runs": 5, "min_time_s": 1.0, "repeats": 1, "cooldown_s": 0.0, "timeout_s": 60.0}
ARCHS = get_space("nb201").sample(3, seed=41)
EXIT_WITHIN_S = 2.5  # "about 2 s", on a shared 2-core machine
PYENV_SHIM_LOCK = Path.home() / ".pyenv" / "shims" / ".pyenv-shim"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MODNAS_HOME for the module, its ONNX artifacts exported here once (so the `modnas` subprocesses
    never start torch); each test has its own store."""
    from modnas.toolkit.workflow.artifacts import build_artifact

    home = tmp_path_factory.mktemp("signals-home")
    for arch in ARCHS:
        build_artifact(get_space("nb201"), arch, "onnxruntime", home / "artifacts" / "nb201")
    return home


def _workers(workdir: Path) -> list[str]:
    """Command lines of live processes that run from the board's work directory (agent or its worker)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if str(workdir) in cmdline and "worker" in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(cmdline)
    return found


def _stored(db: Path, device: str) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM measurements WHERE device=?", (device,)).fetchone()[0])
        except sqlite3.OperationalError:  # the store is being created
            return 0


def _profile(device: Path, archs: Path, db: Path, home: Path) -> subprocess.Popen:
    env = dict(os.environ, MODNAS_HOME=str(home))
    return subprocess.Popen([sys.executable, "-m", "modnas.toolkit.cli", "profile", str(device), "--archs", str(archs),
                             "--db", str(db), "--quiet", "--json"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _signal(proc: subprocess.Popen, sig: int) -> tuple[float, str]:
    """Send ``sig`` and wait for the command to end: seconds it took to exit, and its stderr."""
    sent = time.monotonic()
    try:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        _kill(proc)
    return time.monotonic() - sent, err.decode()


def _interrupt_mid_measurement(sig: int, device: Path, name: str, workdir: Path, tmp_path: Path,
                               home: Path) -> tuple[int, float, str, Path, Path]:
    """Start the campaign, wait until one result is stored and the next is being measured, send ``sig``."""
    archs = tmp_path / "archs.txt"
    archs.write_text("\n".join(ARCHS) + "\n")
    db = tmp_path / "store.db"
    proc = _profile(device, archs, db, home)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if _stored(db, name) >= 1 and _workers(workdir):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1].decode()[-500:]
        assert _workers(workdir), "no measurement was running on the board"
        time.sleep(0.3)
    except BaseException:
        _kill(proc)
        raise
    took, err = _signal(proc, sig)
    return proc.returncode, took, err, archs, db


def _check_stopped(code: int, took: float, err: str, sig: int, name: str, workdir: Path, db: Path) -> list[str]:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines == ["modnas: interrupted; everything measured so far is stored"], err[-800:]
    assert code == (130 if sig == signal.SIGINT else 143)
    assert took < EXIT_WITHIN_S, f"exited {took:.2f} s after the signal"
    assert leftover_processes(str(workdir), within_s=1.0) == []  # neither the agent nor its worker
    store = Store(db)
    kept = sorted(store.values(name, "nb201"))
    assert 1 <= len(kept) < len(ARCHS)
    assert store.campaigns(name)[-1]["status"] == "interrupted"
    assert store.failures(name) == []  # the interrupted measurement is not an architecture's failure
    assert not list(workdir.glob("job-*"))  # the agent cleaned up its job directory
    store.close()
    return kept


def _resume(device: Path, archs: Path, db: Path, home: Path, kept: list[str], name: str) -> None:
    proc = _profile(device, archs, db, home)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-500:]
    import json

    doc = json.loads(out)
    assert sorted(doc["skipped"]) == kept
    assert sorted(r["arch"] for r in doc["measured"]) == sorted(set(ARCHS) - set(kept))
    assert sorted(Store(db).values(name, "nb201")) == sorted(ARCHS)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_a_local_campaign_at_once(sig: int, home: Path, tmp_path: Path) -> None:
    name = f"sig-local-{sig}"
    workdir = tmp_path / "board"
    device = tmp_path / f"{name}.yaml"
    device.write_text(yaml.safe_dump({"name": name, "host": "local", "workdir": str(workdir), "measurement": SLOW}))
    code, took, err, archs, db = _interrupt_mid_measurement(sig, device, name, workdir, tmp_path, home)
    kept = _check_stopped(code, took, err, sig, name, workdir, db)
    if sig == signal.SIGINT:  # one resume is enough to show that only the rest is measured
        _resume(device, archs, db, home, kept, name)


def test_sigterm_stops_an_ssh_campaign_and_the_board_side_worker(sshd_board, home: Path, tmp_path: Path) -> None:
    name = "sig-ssh"
    workdir = tmp_path / "board-workdir"
    device = sshd_board.device_yaml(tmp_path, name=name, measurement=SLOW)
    try:
        code, took, err, archs, db = _interrupt_mid_measurement(signal.SIGTERM, device, name, workdir, tmp_path,
                                                                home)
        kept = _check_stopped(code, took, err, signal.SIGTERM, name, workdir, db)
        _resume(device, archs, db, home, kept, name)
    finally:
        # a login cut short can leave pyenv's rehash lock behind, and every later login then waits for it
        if PYENV_SHIM_LOCK.exists() and time.time() - PYENV_SHIM_LOCK.stat().st_mtime > 5:
            PYENV_SHIM_LOCK.unlink(missing_ok=True)


def test_sigint_stops_several_boards_profiled_in_parallel(home: Path, tmp_path: Path) -> None:
    """Boards profiled in threads: the interruption aborts what each is running and ends every campaign."""
    archs = tmp_path / "archs.txt"
    archs.write_text("\n".join(ARCHS) + "\n")
    devices, workdirs = [], []
    for name in ("par-a", "par-b"):
        workdirs.append(tmp_path / f"{name}-board")
        devices.append(tmp_path / f"{name}.yaml")
        devices[-1].write_text(yaml.safe_dump({"name": name, "host": "local", "workdir": str(workdirs[-1]),
                                               "measurement": SLOW}))
    db = tmp_path / "store.db"
    env = dict(os.environ, MODNAS_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "modnas.toolkit.cli", "profile", *map(str, devices), "--archs",
                             str(archs), "--db", str(db), "--quiet"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not all(map(_workers, workdirs)):
            time.sleep(0.05)
        assert all(map(_workers, workdirs)), "both boards should be measuring"
    except BaseException:
        _kill(proc)
        raise
    took, err = _signal(proc, signal.SIGINT)
    assert proc.returncode == 130 and took < EXIT_WITHIN_S, (proc.returncode, took, err[-500:])
    assert err.strip() == "modnas: interrupted; everything measured so far is stored"
    for workdir in workdirs:
        assert leftover_processes(str(workdir), within_s=1.0) == []
    store = Store(db)
    assert [store.campaigns(n)[-1]["status"] for n in ("par-a", "par-b")] == ["interrupted", "interrupted"]
    assert store.failures("par-a") == store.failures("par-b") == []
