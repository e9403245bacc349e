"""The SQLite store: schema, atomic writes, resume keys, threads."""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from modnas.toolkit.errors import BadInput
from modnas.toolkit.store import SCHEMA_VERSION, Store


def _add(store: Store, arch: str, value: float, sha: str = "s1", **kw) -> None:
    store.add_measurement(device="b", space="nb201", arch=arch, metric="latency", value=value, runtime="onnxruntime",
                          settings_key="k", artifact_sha=sha, summary={"median": value}, samples=[[value]], **kw)


def test_schema_wal_and_version(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    db.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(BadInput, match="newer"):
        Store(path)


def test_not_a_store(tmp_path: Path) -> None:
    bad = tmp_path / "junk.db"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(BadInput):
        Store(bad)


def test_measurements_resume_key_and_replace(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        _add(store, "a", 1.0)
        assert store.has_measurement("b", "nb201", "a", "latency", "onnxruntime", "k", "s1")
        assert not store.has_measurement("b", "nb201", "a", "latency", "onnxruntime", "k", "s2")
        _add(store, "a", 2.0)  # --force: replaced, not duplicated
        assert len(store.measurement_rows("b", "nb201")) == 1
        assert store.values("b", "nb201") == {"a": 2.0}


def test_bad_values_write_nothing(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        with pytest.raises(BadInput):
            store.import_values("d", "nb201", "latency", {"a": 1.0, "b": float("nan")})
        assert store.values("d", "nb201") == {}
        with pytest.raises(BadInput):
            _add(store, "x", 1.0, extra=[{"metric": "power", "value": 1.0}])
        assert store.values("b", "nb201") == {}


def test_concurrent_writers(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")

    def work(k: int) -> None:
        for i in range(25):
            store.add_measurement(device=f"d{k}", space="nb201", arch=f"a{i}", metric="latency", value=k + i / 100,
                                  runtime="onnxruntime", settings_key="k", artifact_sha="s")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        vals = store.values(f"d{k}", "nb201")
        assert len(vals) == 25 and all(int(v) == k for v in vals.values())
    store.close()


def test_devices_listing_and_derived_state(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        store.import_values("pi", "nb201", "latency", {"a": 1.0, "b": 2.0})
        store.import_values("pi", "nb201", "energy", {"a": 3.0})
        store.set_embedding("pi", "nb201", "latency", [0.0, 1.0])
        store.set_calibration("pi", "nb201", "latency", {"slope": 1.0})
        (row,) = store.devices()
        assert row.to_json() == {"name": "pi", "space": "nb201", "measurements": {"latency": 2, "energy": 1},
                                 "embedding": True, "replayed": False}
        assert store.get_calibration("pi", "nb201") == {"slope": 1.0}
        assert store.get_embedding("pi", "nb201", "energy") is None
