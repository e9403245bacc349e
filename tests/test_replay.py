"""Replay boards end to end through the CLI (device file -> doctor / profile / onboard, rows marked replayed,
reproducible noise, not_in_table, bad tables refused before anything is stored), and the local interpreter
default of device files."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from modnas.profilers.board.replay_runtime import ReplayBoard
from modnas.toolkit.cli import main
from modnas.toolkit.config import load_device, parse_device, read_device_file
from modnas.toolkit.errors import BadInput
from modnas.toolkit.data.replay_tables import read_table, write_device, write_table
from modnas.toolkit.spaces import get_space
from modnas.toolkit.store import Store

NB201 = get_space("nb201")
REFS = NB201.reference_archs()
EXTRA = [a for a in NB201.sample(20, seed=5) if a not in REFS][:6]
MISSING = [a for a in NB201.sample(40, seed=9) if a not in REFS and a not in EXTRA][0]
QUICK = {"min_runs": 10, "repeats": 2}


def _latency(archs: list[str]) -> dict[str, float]:
    """Distinct, plausible latencies (ms) for the table: the larger the cell's cost index, the slower."""
    return {a: round(0.3 + 0.05 * (NB201.index(a) % 97), 6) for a in archs}


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, object, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


@pytest.fixture()
def board(tmp_path: Path) -> tuple[Path, dict[str, float], dict[str, float]]:
    lat = _latency(REFS + EXTRA)
    energy = {a: round(2.0 * v, 6) for a, v in lat.items()}
    dev = write_device(tmp_path / "boards", "tx2-replay", lat, energy, noise=0.02, seed=3, measurement=QUICK)
    return dev, lat, energy


def test_replay_board_end_to_end(board, modnas_home: Path, tmp_path: Path, capsys) -> None:
    dev, lat, energy = board
    db = str(tmp_path / "store.db")
    code, doc, err = run_cli(capsys, "doctor", str(dev), "--db", db, "--json")
    assert code == 0, err
    assert doc["reachable"] and doc["runtimes"]["replay"]["available"] and doc["energy"]["readable"]
    replay = doc["fingerprint"]["replay"]
    assert replay["noise"] == 0.02 and replay["seed"] == 3
    assert replay["tables"]["latency"]["path"].endswith("tx2-replay-latency.csv")
    assert replay["tables"]["latency"]["rows"] == len(lat) and replay["tables"]["latency"]["space"] == "nb201"

    code, doc, err = run_cli(capsys, "onboard", str(dev), "--db", db, "--json", "--quiet")
    assert code == 0, err
    assert [r["arch"] for r in doc["references"]] == REFS
    for row in doc["references"]:
        assert row["replayed"] is True
        assert row["latency_ms"]["n"] == QUICK["min_runs"] * QUICK["repeats"]
        assert abs(math.log(row["latency_ms"]["median"] / lat[row["arch"]])) < 5 * 0.02
        assert abs(math.log(row["energy_mj"]["gross"] / energy[row["arch"]])) < 5 * 0.02

    archs = tmp_path / "archs.txt"
    archs.write_text("\n".join(EXTRA[:3] + [MISSING] + EXTRA[3:]) + "\n")
    code, doc, err = run_cli(capsys, "profile", str(dev), "--archs", str(archs), "--db", db, "--json", "--quiet")
    assert code == 0, err
    assert sorted(r["arch"] for r in doc["measured"]) == sorted(EXTRA)  # the campaign went on past the miss
    assert all(r["replayed"] is True for r in doc["measured"])
    assert [f["arch"] for f in doc["failed"]] == [MISSING]
    assert doc["failed"][0]["error"].startswith("not_in_table")

    store = Store(db)
    rows = store.measurement_rows("tx2-replay", "nb201", "latency") + store.measurement_rows(
        "tx2-replay", "nb201", "energy")
    assert len(rows) == 2 * len(lat) and {r["source"] for r in rows} == {"replay"}
    assert all(r["summary"]["replayed"] for r in rows)
    assert store.replayed("tx2-replay") and [f["error_code"] for f in store.failures("tx2-replay")] == ["not_in_table"]
    code, devices, _ = run_cli(capsys, "devices", "--db", db, "--json")
    assert devices[0]["replayed"] is True and devices[0]["embedding"] is True

    # resuming skips what is stored; --force measures again and the same seed gives the same numbers
    code, again, err = run_cli(capsys, "profile", str(dev), "--archs", str(archs), "--db", db, "--json", "--quiet",
                               "--force")
    assert code == 0, err
    assert {r["arch"]: r["latency_ms"] for r in again["measured"]} == {r["arch"]: r["latency_ms"]
                                                                         for r in doc["measured"]}
    code, skip, _ = run_cli(capsys, "profile", str(dev), "--archs", str(archs), "--db", db, "--json", "--quiet")
    assert sorted(skip["skipped"]) == sorted(EXTRA) and skip["measured"] == []


def test_replay_runtime_only_on_replay_boards(board, modnas_home: Path, tmp_path: Path, capsys) -> None:
    dev, _, _ = board
    db = str(tmp_path / "store.db")
    code, _, err = run_cli(capsys, "profile", str(dev), "--runtime", "onnxruntime", "--db", db)
    assert code == 2 and "replay board" in err
    with pytest.raises(BadInput, match="only on host: replay"):
        parse_device({"name": "x", "host": "local", "runtime": "replay"})
    with pytest.raises(BadInput, match="needs replay"):
        parse_device({"name": "x", "host": "replay"})
    assert not Path(db).exists() or Store(db).devices() == []


def test_seeded_noise_is_reproducible_and_has_the_asked_spread() -> None:
    archs = NB201.sample(400, seed=1)
    table = {a: 1.0 + (i % 13) for i, a in enumerate(archs)}
    settings = {"repeats": 3, "min_runs": 20}

    def medians(noise: float, seed: int) -> np.ndarray:
        b = ReplayBoard({"latency": table}, noise=noise, seed=seed)
        return np.array([np.median(np.concatenate(b.blocks(a, settings))) for a in archs])

    exact = ReplayBoard({"latency": table}, noise=0.0).blocks(archs[0], settings)
    assert exact == [[table[archs[0]]] * 20] * 3
    a, b, c = medians(0.05, 0), medians(0.05, 0), medians(0.05, 1)
    assert np.array_equal(a, b) and not np.allclose(a, c)
    values = np.array([table[x] for x in archs])
    spread = float(np.std(np.log(a / values)))
    assert 0.04 < spread < 0.06, spread  # the measurement's relative spread is `noise`
    one = np.concatenate(ReplayBoard({"latency": table}, noise=0.05, seed=0).blocks(archs[0], {"repeats": 10,
                                                                                               "min_runs": 100}))
    assert 0.045 < float(np.std(np.log(one))) < 0.055  # and so is the raw samples' spread around it


def test_two_strings_of_one_network_are_one_row(tmp_path: Path) -> None:
    ofa = get_space("ofa_mbv3")
    arch = ofa.sample(1, seed=2)[0]
    ks, e, d, r = arch.split(";")
    depths = [int(x) for x in d[2:].split("-")]
    kernels = ks[3:].split("-")
    stage = next(i for i, depth in enumerate(depths) if depth < 4)
    kernels[stage * 4 + 3] = "3" if kernels[stage * 4 + 3] != "3" else "5"  # a slot past the stage's depth
    other = ";".join(["ks=" + "-".join(kernels), e, d, r])
    assert other != arch and ofa.canonical(other) == ofa.canonical(arch)
    path = write_table({other: 4.2}, tmp_path / "ofa.csv")
    table = read_table(path)
    assert table.space == "ofa_mbv3" and dict(table.values) == {ofa.canonical(arch): 4.2}


BAD_TABLES = [
    ("arch,value\n{a},1.5\n{b},1.0,7\n", 3, "expected 2 fields"),
    ("arch,value\n{a},1.5\n{b},\n", 3, "value is missing"),
    ("arch,value\n{a},-0.4\n", 2, "positive"),
    ("arch,value\n{a},1.5\n,2.5\n", 3, "architecture is missing"),
    ("arch,value\n{a},fast\n", 2, "not a number"),
    ("arch,value\n{a},1.5\n|conv_9x9~0|+|x|,2.0\n", 3, "not an architecture"),
    ("arch,ms\n{a},1.5\n", 1, "header"),
]


@pytest.mark.parametrize("text, line, needle", BAD_TABLES, ids=["fields", "missing", "negative", "no-arch",
                                                                 "nan-text", "arch", "header"])
def test_bad_tables_exit_2_naming_file_and_line_with_nothing_stored(text: str, line: int, needle: str,
                                                                    modnas_home: Path, tmp_path: Path,
                                                                    capsys) -> None:
    table = tmp_path / "tables" / "bad.csv"
    table.parent.mkdir()
    table.write_text(text.format(a=REFS[0], b=REFS[1]))
    dev = tmp_path / "bad-replay.yaml"
    dev.write_text(yaml.safe_dump({"name": "bad-replay", "host": "replay", "replay": {"latency": "tables/bad.csv"}}))
    db = tmp_path / "store.db"
    for command in (["profile", str(dev), "--archs", "refs"], ["onboard", str(dev)], ["doctor", str(dev)]):
        code, out, err = run_cli(capsys, *command, "--db", str(db), "--json")
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert code == 2 and out is None and len(lines) == 1 and "Traceback" not in err, err
        assert f"{table.resolve()}:{line}:" in lines[0] and needle in lines[0], lines[0]
    assert not db.exists() or Store(db).devices() == []
    assert not (tmp_path / "board").exists()


def test_a_missing_table_is_bad_input(tmp_path: Path) -> None:
    dev = tmp_path / "gone.yaml"
    dev.write_text(yaml.safe_dump({"name": "gone", "host": "replay", "replay": {"latency": "nowhere.csv"}}))
    with pytest.raises(BadInput, match="no such replay table"):
        read_device_file(dev)


def test_replay_boards_in_parallel(modnas_home: Path, tmp_path: Path, capsys) -> None:
    """Several replay boards in one `profile`: each answers from its own table, from threads of one process."""
    lat = _latency(REFS)
    devs = [write_device(tmp_path, f"r{i}", {a: v * (i + 1) for a, v in lat.items()}, seed=i, noise=0.01,
                         measurement=QUICK) for i in range(3)]
    code, doc, err = run_cli(capsys, "profile", *map(str, devs), "--db", str(tmp_path / "s.db"), "--json",
                             "--quiet")
    assert code == 0, err
    for i, res in enumerate(doc):
        assert res["device"] == f"r{i}" and len(res["measured"]) == len(REFS)
        ratio = np.median([r["latency_ms"]["median"] / lat[r["arch"]] for r in res["measured"]])
        assert abs(ratio / (i + 1) - 1) < 0.03


# -- the local interpreter default (item 5) ------------------------------------------------------------------
def test_local_and_replay_boards_default_to_this_interpreter(tmp_path: Path) -> None:
    local = parse_device({"name": "here"})
    assert local.python == sys.executable and "python" not in local.for_store()
    assert load_device("local").python == sys.executable  # the shipped local.yaml names no interpreter
    kept = parse_device({"name": "here", "python": "/usr/bin/python3"})
    assert kept.python == "/usr/bin/python3" and kept.for_store()["python"] == "/usr/bin/python3"
    remote = parse_device({"name": "pi", "host": "192.168.1.42"})
    assert remote.python == "python3"
    table = write_table(_latency(REFS), tmp_path / "t.csv")
    replay = parse_device({"name": "rp", "host": "replay", "replay": {"latency": str(table)}})
    assert replay.python == sys.executable and replay.runtime == "replay"
    stored = parse_device(local.for_store())  # a stored local device takes the interpreter of whoever loads it
    assert stored.python == sys.executable
