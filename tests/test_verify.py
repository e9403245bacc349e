"""`select --verify` on a real local board (tiny measurement settings): picks measured to meet the
budget, none when nothing can, stored measurements counted, the measurement bound, an unreachable board."""
from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from modnas.toolkit.cli import main
from modnas.toolkit.workflow.report import repeatability
from modnas.toolkit.store import Store

QUICK = {"warmup_s": 0.02, "min_runs": 3, "min_time_s": 0.02, "repeats": 2, "cooldown_s": 0.0, "timeout_s": 60.0}


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def write_device(path: Path, **fields: Any) -> Path:
    path.write_text(yaml.safe_dump(fields, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A local board with its reference architectures measured once for the module (its own MODNAS_HOME)."""
    root = tmp_path_factory.mktemp("verify")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODNAS_HOME", str(root / "home"))
        dev = write_device(root / "vboard.yaml", name="vboard", host="local", python=sys.executable,
                           workdir=str(root / "work"), runtime="onnxruntime", threads=1, measurement=QUICK)
        assert main(["profile", str(dev), "--archs", "refs", "--quiet"]) == 0  # the device model's references
        yield {"dev": dev, "root": root, "db": root / "home" / "modnas.db"}


def _stored(db: Path, device: str, runtime: str = "onnxruntime") -> dict[str, float]:
    with Store(db) as store:
        return {r["arch"]: r["value"] for r in store.measurement_rows(device, "nb201", "latency")
                if r["runtime"] == runtime}


def _check_pick(doc: dict[str, Any], budget: float, db: Path) -> None:
    """The invariants of every verified pick: measured (as stored) within the budget with its margin."""
    assert doc["verified"] is True and doc["budget_ms"] == pytest.approx(budget)
    stored = _stored(db, "vboard")
    for c in doc["candidates"]:
        if c["measured"] is not None:
            assert c["measured"]["latency_ms"] == pytest.approx(stored[c["arch"]])
            assert c["meets"] == (c["measured"]["latency_ms"] * (1 + c["verify_margin"]) <= budget)
    if doc["arch"] is not None:
        assert doc["measured"]["latency_ms"] == pytest.approx(stored[doc["arch"]])
        assert doc["measured"]["latency_ms"] * (1 + doc["verify_margin"]) <= budget
        assert doc["candidates"][-1]["arch"] == doc["arch"] and doc["candidates"][-1]["meets"]
        assert not any(c["meets"] for c in doc["candidates"][:-1])  # the first that meets, most accurate first
        errors = [c["predicted"]["error"] for c in doc["candidates"]]
        assert errors == sorted(errors)


def test_verified_pick_meets_budget_and_never_one_measured_over(board, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MODNAS_HOME", str(board["root"] / "home"))
    refs = sorted(_stored(board["db"], "vboard").values())
    budget = refs[len(refs) // 2]
    code, doc, err = run(capsys, "select", "--device", str(board["dev"]), "--budget-ms", f"{budget:.6f}",
                         "--verify", "--json", "--quiet")
    assert code == 0, err
    assert doc["arch"] is not None, doc.get("reason")
    _check_pick(doc, budget, board["db"])
    assert doc["measurements"] == sum(c["source"] == "board" for c in doc["candidates"]) <= 8
    assert set(doc["predicted"]) >= {"error", "latency_ms"} and "margin" in doc

    # no board measurements allowed: only stored ones are judged, and the pick just verified is stored and meets
    code, again, err = run(capsys, "select", "--device", "vboard", "--budget-ms", f"{budget:.6f}", "--verify",
                           "--verify-max", "0", "--json", "--quiet")
    assert code == 0, err
    assert again["measurements"] == 0 and all(c["source"] == "stored" for c in again["candidates"])
    _check_pick(again, budget, board["db"])

    # a budget just under the measured latency of the slowest judged candidate: never that one
    judged = [c for c in doc["candidates"] + again["candidates"] if c["measured"]]
    target = max(judged, key=lambda c: c["measured"]["latency_ms"])
    tight = target["measured"]["latency_ms"] * 0.99
    code, third, err = run(capsys, "select", "--device", "vboard", "--budget-ms", f"{tight:.6f}", "--verify",
                           "--verify-max", "1", "--json", "--quiet")
    assert code == 0, err
    _check_pick(third, tight, board["db"])
    assert third["arch"] != target["arch"]
    assert third["measurements"] <= 1 and sum(c["source"] == "board" for c in third["candidates"]) <= 1
    seen = {c["arch"]: c for c in third["candidates"]}
    if target["arch"] in seen:  # judged on its stored measurement, not measured again
        assert seen[target["arch"]]["source"] == "stored" and not seen[target["arch"]]["meets"]
    code, _, err = run(capsys, "select", "--device", "vboard", "--budget-ms", "1", "--verify", "--verify-max", "-1")
    assert code == 2 and "--verify-max" in err


def test_no_candidate_meets_a_budget_below_the_fastest(board, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MODNAS_HOME", str(board["root"] / "home"))
    code, doc, err = run(capsys, "select", "--device", "vboard", "--budget-ms", "0.0001", "--verify", "--json",
                         "--quiet")
    assert code == 0, err
    assert doc["arch"] is None and doc["measured"] is None and "fastest" in doc["reason"]
    assert doc["verified"] is True and doc["measurements"] == 0 and doc["unverified"] is None
    assert main(["select", "--device", "vboard", "--budget-ms", "0.0001", "--verify"]) == 0
    assert capsys.readouterr().out.startswith("no verified pick for 0.0001 ms")


def test_unreachable_board_exits_3(board, capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MODNAS_HOME", str(board["root"] / "home"))
    stored = _stored(board["db"], "vboard")
    with Store(board["db"]) as store:  # the same board's numbers, imported: a device model, nothing measured
        store.import_values("closed-board", "nb201", "latency", stored)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the socket is: nothing listens there
    known = tmp_path / "known_hosts"
    known.write_text("")
    dev = write_device(tmp_path / "closed.yaml", name="closed-board", host="127.0.0.1", port=port, user="nobody",
                       known_hosts=str(known), connect_timeout=5, measurement=QUICK)
    budget = sorted(stored.values())[len(stored) // 2]
    code, doc, err = run(capsys, "select", "--device", str(dev), "--budget-ms", f"{budget:.6f}", "--verify",
                         "--json", "--quiet")
    assert code == 3 and doc is None
    assert len(err.strip().splitlines()) == 1 and "--verify" in err


def test_repeatability_definition() -> None:
    rep = repeatability({"a": [1.0, 1.1, 0.9], "b": [2.0, 2.0], "c": [5.0]})
    # a: pairs 0.1, 0.1, 0.2 over median 1.0 -> 13.3 %; b: 0 %; c has one round and does not count
    assert rep["mape"] == pytest.approx(100 * (0.4 / 3) / 2)
    assert rep["to_median_mape"] == pytest.approx(100 * (0.2 / 3) / 2)
    assert rep["worst_arch_mape"] == pytest.approx(100 * 0.4 / 3) and rep["archs"] == 2
    assert repeatability({"a": [1.0]})["mape"] is None


def test_replay_board_picks_between_measured_values(data_dir, tmp_path, capsys, monkeypatch) -> None:
    """A replay board without noise: measured values are the table's, so budgets can sit between them."""
    from modnas.toolkit.data.replay_tables import table_values, write_device

    if not (data_dir / "help").exists():
        pytest.skip(f"no shared tables under {data_dir}")
    monkeypatch.setenv("MODNAS_HOME", str(tmp_path / "home"))
    table = table_values(data_dir, "help:pixel3")
    dev = write_device(tmp_path, "pixel3-replay", table, noise=0.0, measurement={"min_runs": 5, "repeats": 2})
    assert main(["profile", str(dev), "--archs", "refs", "--quiet"]) == 0
    capsys.readouterr()
    db = tmp_path / "home" / "modnas.db"
    refs = sorted(table[a] for a in _stored(db, "pixel3-replay", "replay"))
    budget = refs[len(refs) // 2]
    code, first, err = run(capsys, "select", "--device", str(dev), "--budget-ms", f"{budget:.6f}", "--verify",
                           "--json", "--quiet")
    assert code == 0, err
    assert first["arch"] is not None and first["measured"]["latency_ms"] == pytest.approx(table[first["arch"]])
    assert first["measured"]["latency_ms"] * (1 + first["verify_margin"]) <= budget
    # just under what the pick needs: it no longer qualifies, and whatever is returned was measured to fit
    tight = first["measured"]["latency_ms"] * (1 + first["verify_margin"]) * 0.999
    code, second, err = run(capsys, "select", "--device", str(dev), "--budget-ms", f"{tight:.8f}", "--verify",
                            "--json", "--quiet")
    assert code == 0, err
    assert second["arch"] != first["arch"]
    for c in second["candidates"]:
        if c["measured"]:
            assert c["measured"]["latency_ms"] == pytest.approx(table[c["arch"]])
    if second["arch"] is not None:
        assert table[second["arch"]] * (1 + second["verify_margin"]) <= tight
    else:
        assert second["reason"]
