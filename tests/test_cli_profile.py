"""`modnas profile` end to end through the loopback sshd board: store, resume, faults, many boards."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modnas.toolkit.cli import main
from modnas.toolkit.spaces import get_space
from modnas.toolkit.store import Store

ARCHS = [
    "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|skip_connect~2|",
    "|skip_connect~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|skip_connect~2|",
    "|none~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|skip_connect~1|none~2|",
]


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, dict | list | None, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


@pytest.fixture()
def arch_file(tmp_path: Path) -> Path:
    path = tmp_path / "archs.txt"
    path.write_text("# three small cells\n" + "\n".join(ARCHS) + "\n\n")
    return path


def test_profile_store_and_resume(sshd_board, modnas_home, tmp_path, arch_file, capsys) -> None:
    dev = sshd_board.device_yaml(tmp_path, name="loop-a")
    code, doc, err = run(capsys, "profile", str(dev), "--archs", str(arch_file), "--json", "--quiet")
    assert code == 0, err
    assert doc["device"] == "loop-a" and doc["skipped"] == [] and doc["failed"] == []
    assert [r["arch"] for r in doc["measured"]] == ARCHS
    for row in doc["measured"]:
        lat = row["latency_ms"]
        assert 0 < lat["median"] <= lat["p90"] and lat["n"] >= 10 and row["energy_mj"] is None
    store = Store(modnas_home / "modnas.db")
    rows = store.measurement_rows("loop-a", "nb201")
    assert len(rows) == 3 and all(r["samples"] and len(r["samples"]) == 2 for r in rows)
    assert store.latest_fingerprint("loop-a")["cores"] >= 1
    # the same command again measures nothing; --force measures again without duplicating
    code, doc, _ = run(capsys, "profile", str(dev), "--archs", str(arch_file), "--json", "--quiet")
    assert code == 0 and doc["measured"] == [] and doc["skipped"] == ARCHS
    code, doc, _ = run(capsys, "profile", str(dev), "--archs", str(arch_file), "--json", "--quiet", "--force")
    assert code == 0 and len(doc["measured"]) == 3
    assert len(store.measurement_rows("loop-a", "nb201")) == 3
    # by name from the store, once known
    code, doc, _ = run(capsys, "devices", "--json")
    assert {d["name"] for d in doc} == {"loop-a"}


def test_tvm_runtime_on_the_board(sshd_board, modnas_home, tmp_path, capsys) -> None:
    dev = sshd_board.device_yaml(tmp_path, name="loop-tvm", runtime="tvm")
    f = tmp_path / "one.txt"
    f.write_text(ARCHS[2] + "\n")
    code, doc, err = run(capsys, "profile", str(dev), "--archs", str(f), "--json", "--quiet")
    assert code == 0, err
    assert len(doc["measured"]) == 1 and doc["measured"][0]["latency_ms"]["median"] > 0
    (row,) = Store(modnas_home / "modnas.db").measurement_rows("loop-tvm", "nb201")
    assert row["runtime"] == "tvm" and row["summary"]["runtime_version"].startswith("0.27")


def test_many_boards_in_parallel(sshd_board, modnas_home, tmp_path, arch_file, capsys) -> None:
    devs = [str(sshd_board.device_yaml(tmp_path, name=f"par-{k}", workdir=str(tmp_path / f"w{k}")))
            for k in range(3)]
    code, doc, err = run(capsys, "profile", *devs, "--archs", str(arch_file), "--json", "--quiet")
    assert code == 0, err
    assert [d["device"] for d in doc] == ["par-0", "par-1", "par-2"]
    store = Store(modnas_home / "modnas.db")
    for k in range(3):
        rows = store.measurement_rows(f"par-{k}", "nb201")
        assert sorted(r["arch"] for r in rows) == sorted(ARCHS)
        by_arch = {r["arch"]: r for r in rows}
        for measured in doc[k]["measured"]:  # each board's stored numbers are its own
            assert by_arch[measured["arch"]]["value"] == measured["latency_ms"]["median"]


def test_unknown_host_key_refused(sshd_board, modnas_home, tmp_path, arch_file, capsys) -> None:
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    dev = sshd_board.device_yaml(tmp_path, name="loop-strict", known_hosts=str(empty))
    code, doc, err = run(capsys, "profile", str(dev), "--archs", str(arch_file), "--json")
    assert code == 3 and doc is None and "loop-strict" in err and len(err.strip().splitlines()) == 1
    assert empty.read_text() == ""


def test_lost_board_exit_3_keeps_results_and_resumes(sshd_board, modnas_home, tmp_path, capsys) -> None:
    space = get_space("nb201")
    archs = space.sample(6, seed=11)
    f = tmp_path / "six.txt"
    f.write_text("\n".join(archs) + "\n")
    dev = sshd_board.device_yaml(tmp_path, name="loop-lost",
                                 measurement={"warmup_s": 0.05, "min_runs": 5, "min_time_s": 0.6, "repeats": 2,
                                              "cooldown_s": 0.0, "timeout_s": 60})
    env = dict(os.environ, MODNAS_HOME=str(modnas_home))
    proc = subprocess.Popen([sys.executable, "-m", "modnas.toolkit.cli", "profile", str(dev), "--archs", str(f), "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = modnas_home / "modnas.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if db.exists() and len(Store(db).values("loop-lost", "nb201")) >= 2:
            break
        time.sleep(0.2)
    # the board "reboots": every session of the sshd dies, the daemon itself stays up
    for pid in sshd_board.session_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err.decode()
    assert b"loop-lost" in err and len(err.decode().strip().splitlines()) == 1
    kept = Store(db).values("loop-lost", "nb201")
    assert 2 <= len(kept) < 6
    code, doc, err2 = run(capsys, "profile", str(dev), "--archs", str(f), "--json", "--quiet")
    assert code == 0, err2
    assert sorted(doc["skipped"]) == sorted(kept) and len(doc["measured"]) == 6 - len(kept)
    assert len(Store(db).measurement_rows("loop-lost", "nb201")) == 6
