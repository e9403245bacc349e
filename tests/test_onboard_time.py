"""Onboarding by time (`onboard --minutes`), the kernels of a space measured on a board (`onboard --kernels`), bad
input to both, and `verified_select`'s fallback to the fastest candidates."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modnas.toolkit.cli import main
from modnas.toolkit.spaces import get_space
from modnas.toolkit.store import Store

NB201 = get_space("nb201")
REFS = NB201.reference_archs()
REPLAY_QUICK = {"min_runs": 5, "repeats": 2}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() and out.lstrip()[0] in "[{" else out), err


@pytest.fixture(scope="module")
def additive_table() -> dict[str, float]:
    """Every NB201 network's latency as a sum of made-up kernel costs (a board the structural model fits)."""
    names = NB201.kernel_names()
    per = {"conv3x3": 0.004, "conv1x1": 0.001, "relu": 0.0005, "avgpool": 0.06, "identity": 0.0001, "add": 0.0008,
           "zero": 0.002}
    stage = {"16x32": 1.0, "32x16": 0.7, "64x8": 0.5}
    costs = np.array([per[n.split("@")[0]] * stage[n.split("@")[1]] for n in names])
    archs = NB201.all_archs()
    return dict(zip(archs, 0.8 + NB201.kernel_counts(archs) @ costs))


def replay_board(tmp_path: Path, table: dict[str, float], name: str = "timed", noise: float = 0.02) -> Path:
    from modnas.toolkit.data.replay_tables import write_device

    return write_device(tmp_path / "boards", name, table, noise=noise, seed=1, measurement=REPLAY_QUICK)


def _rows(db: Path) -> dict[str, int]:
    """Rows per table of the store (its schema version aside): what a command wrote."""
    if not db.exists():
        return {}
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables if t != "meta"}


# -- 2a: onboarding by time -----------------------------------------------------------------------------------
def test_onboard_by_minutes_reports_a_learning_curve(additive_table, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MODNAS_HOME", str(tmp_path / "home"))
    dev = replay_board(tmp_path, additive_table)
    code, doc, err = run(capsys, "onboard", str(dev), "--minutes", "0.2", "--json", "--quiet")
    assert code == 0, err
    curve = doc["curve"]
    assert len(curve) >= 2
    counts = [p["measurements"] for p in curve]
    assert counts[0] == len(REFS) and all(b > a for a, b in zip(counts, counts[1:]))
    seconds = [p["board_seconds"] for p in curve]
    assert all(b >= a for a, b in zip(seconds, seconds[1:]))
    assert all(p["model"] for p in curve) and all(p["loo_mape"] is None or p["loo_mape"] >= 0 for p in curve)
    assert isinstance(doc["stopped"], str) and doc["stopped"].strip()
    extras = doc["extra_archs"]
    assert len(extras) == len(set(extras)) == doc["extra"] > 0 and not set(extras) & set(REFS)
    assert counts[-1] == len(REFS) + len(extras)
    with Store(tmp_path / "home" / "modnas.db") as store:
        assert set(store.values("timed", "nb201", "latency")) == set(REFS) | set(extras)
    assert "kernels" not in doc  # not asked for

    # the text report, a few seconds more on the same board: the curve and why it stopped
    code, text, err = run(capsys, "onboard", str(dev), "--minutes", "0.05", "--quiet")
    assert code == 0, err
    assert "learning curve" in text and "stopped: " in text


# -- 2b, 2c: kernels ------------------------------------------------------------------------------------------
def test_kernels_on_a_replay_board_are_not_measured(additive_table, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MODNAS_HOME", str(tmp_path / "home"))
    dev = replay_board(tmp_path, {a: additive_table[a] for a in REFS}, name="kreplay")
    code, doc, err = run(capsys, "onboard", str(dev), "--kernels", "--json", "--quiet")
    assert code == 0, err
    assert doc["kernels"]["measured"] == 0 and doc["kernels"]["failed"] == 0
    assert "replay" in doc["kernels"]["note"]
    with Store(tmp_path / "home" / "modnas.db") as store:
        assert store.values("kreplay", "nb201.kernels", "latency") == {}
        assert store.measurement_rows("kreplay", "nb201.kernels", "latency") == []
        assert set(store.values("kreplay", "nb201", "latency")) == set(REFS)  # the references as usual
    code, text, err = run(capsys, "onboard", str(dev), "--kernels", "--quiet")
    assert code == 0, err
    assert "kernels: 0 measured" in text and "replay" in text


@pytest.mark.slow  # 10 networks and 22 kernels over SSH
def test_kernels_on_the_sshd_board_feed_the_device_model(sshd_board, modnas_home: Path, tmp_path: Path,
                                                         capsys) -> None:
    from modnas.toolkit.spaces.kernels import EMPTY

    dev = sshd_board.device_yaml(tmp_path, name="kboard")
    code, doc, err = run(capsys, "onboard", str(dev), "--kernels", "--json", "--quiet")
    assert code == 0, err
    kernels = [EMPTY] + NB201.kernel_names()
    assert doc["kernels"]["measured"] == len(kernels) and doc["kernels"]["failed"] == 0
    assert doc["kernels"]["board_seconds"] > 0 and doc["kernels"]["overhead_ms"] > 0
    with Store(modnas_home / "modnas.db") as store:
        stored = store.values("kboard", "nb201.kernels", "latency")
        assert set(stored) == set(kernels) and all(v > 0 for v in stored.values())
        assert doc["kernels"]["overhead_ms"] == pytest.approx(stored[EMPTY])
        record = store.get_calibration("kboard", "nb201", "latency")
    assert "kernels" in record["fit"]["structural_forms"]
    assert doc["fit"]["structural_forms"] == record["fit"]["structural_forms"]


# -- 2d: bad input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, named", [(["--minutes", "0"], "--minutes"), (["--minutes", "-1"], "--minutes"),
                                          (["--minutes", "nan"], "--minutes"), (["--minutes", "inf"], "--minutes"),
                                          (["--extra", "5", "--minutes", "1"], "--minutes")])
def test_bad_minutes_exit_2_and_store_nothing(flags, named, additive_table, tmp_path: Path, monkeypatch,
                                              capsys) -> None:
    monkeypatch.setenv("MODNAS_HOME", str(tmp_path / "home"))
    dev = replay_board(tmp_path, {a: additive_table[a] for a in REFS}, name="badin")
    code, out, err = run(capsys, "onboard", str(dev), *flags, "--json", "--quiet")
    assert code == 2 and not out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], err
    if "--extra" in flags:
        assert "--extra" in lines[0]
    assert not any(_rows(tmp_path / "home" / "modnas.db").values())


# -- 2e: verified_select falls back to the fastest candidates -------------------------------------------------
@pytest.fixture(scope="module")
def selection(data_dir: Path) -> dict[str, Any]:
    """The shipped nb201 run, a calibrated device model of a table device and the candidate pool select ranks."""
    from modnas.toolkit.data.replay_tables import table_values
    from modnas.toolkit.prediction.device_cost import device_cost
    from modnas.toolkit.search.api import open_run
    from modnas.toolkit.workflow.verify import candidate_pool

    if not (data_dir / "help").exists():
        pytest.skip(f"no shared tables under {data_dir}")
    table = table_values(data_dir, "help:pixel3")
    run_obj = open_run(None, "nb201")
    cost = device_cost("pixel3", {a: table[a] for a in REFS}, NB201, model=False)
    pool = candidate_pool(run_obj, cost)
    archs = pool[0]
    return {"run": run_obj, "cost": cost, "pool": pool, "archs": archs,
            "lat": dict(zip(archs, np.asarray(cost.predict(archs), float))),
            "err": dict(zip(archs, np.asarray(run_obj.predict_error(archs), float)))}


class FakeBoard:
    """Measures as the device model predicts, times ``slow`` for the architectures in ``slow_archs``;
    ``None`` (a failed measurement) for those in ``broken``."""

    def __init__(self, lat: dict[str, float], slow_archs: set[str], slow: float = 3.0,
                 broken: set[str] | None = None) -> None:
        self.lat, self.slow_archs, self.slow, self.broken = lat, slow_archs, slow, broken or set()
        self.calls: list[str] = []

    def value(self, arch: str) -> float:
        return self.lat[arch] * (self.slow if arch in self.slow_archs else 1.0)

    def __call__(self, arch: str) -> Any:
        from modnas.toolkit.workflow.verify import Measured

        self.calls.append(arch)
        return None if arch in self.broken else Measured(self.value(arch), 0.0, "board")


def _most_accurate_eligible(sel: dict[str, Any], budget: float) -> list[str]:
    from modnas.toolkit.search.readout import resolve_margin
    from modnas.toolkit.workflow.verify import MAX_LOOSE_MARGIN

    loose = min(resolve_margin(sel["cost"], None), MAX_LOOSE_MARGIN)
    eligible = [a for a in sel["archs"] if sel["lat"][a] * (1 - loose) <= budget]
    return sorted(eligible, key=lambda a: (sel["err"][a], sel["lat"][a]))


def test_fallback_measures_the_fastest_when_the_most_accurate_are_over(selection) -> None:
    from modnas.toolkit.workflow.verify import FALLBACK_MEASUREMENTS, verified_select

    sel = selection
    budget = float(np.median(list(sel["lat"].values())))
    accurate = _most_accurate_eligible(sel, budget)
    assert len(accurate) > 6
    slow = set(accurate[:len(accurate) // 2])  # the most accurate half is 3x over its prediction on the board
    board = FakeBoard(sel["lat"], slow)
    doc = verified_select(sel["run"], sel["cost"], budget, board, {}, max_measurements=5, pool=sel["pool"])
    assert doc.arch is not None, doc.reason
    main_pass = [a for a in board.calls if a in slow]  # the most accurate first (those rescaled over skipped)
    assert main_pass and main_pass[0] == accurate[0]
    assert [accurate.index(a) for a in main_pass] == sorted(accurate.index(a) for a in main_pass)
    assert doc.arch not in slow
    # the fallback measured the fastest with what was left: never past --verify-max in all
    assert len(main_pass) < len(board.calls) <= 5 and len(set(board.calls)) == len(board.calls)
    assert len(board.calls) - len(main_pass) <= FALLBACK_MEASUREMENTS
    assert doc.measurements == len(board.calls) and board.calls[-1] == doc.arch
    assert doc.measured.latency_ms == pytest.approx(board.value(doc.arch))
    assert doc.measured.latency_ms * (1 + doc.verify_margin) <= budget
    assert doc.candidates[-1].arch == doc.arch and doc.candidates[-1].meets
    assert not any(c.meets for c in doc.candidates[:-1])
    assert sel["err"][doc.arch] >= max(sel["err"][a] for a in main_pass)  # less accurate, but it fits


def test_fallback_is_bounded_and_reports_what_it_measured(selection) -> None:
    from modnas.toolkit.workflow.verify import verified_select

    sel = selection
    budget = float(np.median(list(sel["lat"].values())))
    fastest = min(sel["lat"].values())
    slow = 1.5 * budget / fastest  # the board is far slower than predicted for everything: nothing meets
    board = FakeBoard(sel["lat"], set(sel["archs"]), slow=slow)
    doc = verified_select(sel["run"], sel["cost"], budget, board, {}, max_measurements=4, pool=sel["pool"])
    assert doc.arch is None and doc.reason
    assert 1 <= len(board.calls) <= 4 and doc.measurements == len(board.calls)  # never past --verify-max
    assert all(not c.meets for c in doc.candidates)


def test_verify_max_zero_judges_stored_measurements_only(selection) -> None:
    from modnas.toolkit.workflow.verify import verified_select

    sel = selection
    budget = float(np.median(list(sel["lat"].values())))
    board = FakeBoard(sel["lat"], set(sel["archs"]), slow=3.0)
    doc = verified_select(sel["run"], sel["cost"], budget, board, {}, max_measurements=0, pool=sel["pool"])
    assert board.calls == [] and doc.measurements == 0 and doc.arch is None
    assert doc.not_measured_verify_max > 0 and "not measured" in doc.reason


def test_a_failed_fallback_measurement_is_listed(selection) -> None:
    from modnas.toolkit.workflow.verify import verified_select

    sel = selection
    budget = float(np.median(list(sel["lat"].values())))
    accurate = _most_accurate_eligible(sel, budget)
    slow = set(accurate[:len(accurate) // 2])
    # the most accurate half is over on the board and every other network fails there: the fallback's tries fail
    board = FakeBoard(sel["lat"], slow, broken=set(sel["archs"]) - slow)
    doc = verified_select(sel["run"], sel["cost"], budget, board, {}, max_measurements=5, pool=sel["pool"])
    assert doc.arch is None and any(a not in slow for a in board.calls)
    assert doc.measurements == len(board.calls) == sum(c.source == "board" for c in doc.candidates) <= 5
    assert [c.arch for c in doc.candidates] == board.calls
    assert all(bool(c.failed) == (c.arch not in slow) for c in doc.candidates)


def test_no_fallback_measurement_below_every_estimate(selection) -> None:
    from modnas.toolkit.workflow.verify import verified_select

    sel = selection
    budget = 0.5 * min(sel["lat"].values())
    board = FakeBoard(sel["lat"], set())
    doc = verified_select(sel["run"], sel["cost"], budget, board, {}, max_measurements=2, pool=sel["pool"])
    assert board.calls == [] and doc.measurements == 0
    assert doc.arch is None and "fastest" in doc.reason
