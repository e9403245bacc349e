"""The results store: SQLite in WAL mode, schema-versioned, one transaction per write."""
from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from modnas.toolkit.errors import BadInput
from modnas.toolkit.results import JsonDoc

SCHEMA_VERSION = 1


@dataclass
class DeviceSummary(JsonDoc):
    """One device and space in the store: a row of ``modnas devices``."""

    name: str
    space: str
    measurements: dict[str, int]  # metric -> architectures measured
    embedding: bool
    replayed: bool  # measured on a replay board (copies of a table)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    name TEXT PRIMARY KEY, config TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS fingerprints (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, taken REAL NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS campaigns (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, started REAL NOT NULL, finished REAL,
    status TEXT NOT NULL DEFAULT 'running', settings TEXT NOT NULL, fingerprint_id INTEGER);
CREATE TABLE IF NOT EXISTS artifacts (
    sha256 TEXT PRIMARY KEY, kind TEXT NOT NULL, space TEXT NOT NULL, arch TEXT NOT NULL,
    meta TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, space TEXT NOT NULL, arch TEXT NOT NULL,
    metric TEXT NOT NULL, runtime TEXT NOT NULL, settings_key TEXT NOT NULL,
    artifact_sha TEXT NOT NULL, campaign_id INTEGER, source TEXT NOT NULL,
    value REAL NOT NULL, summary TEXT, samples TEXT, created REAL NOT NULL,
    UNIQUE (device, space, arch, metric, runtime, settings_key, artifact_sha));
CREATE INDEX IF NOT EXISTS measurements_by_device ON measurements (device, space, metric);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY, campaign_id INTEGER, device TEXT NOT NULL, space TEXT NOT NULL,
    arch TEXT NOT NULL, error_code TEXT NOT NULL, error TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS embeddings (
    device TEXT NOT NULL, space TEXT NOT NULL, metric TEXT NOT NULL, vector TEXT NOT NULL,
    updated REAL NOT NULL, PRIMARY KEY (device, space, metric));
CREATE TABLE IF NOT EXISTS calibrations (
    device TEXT NOT NULL, space TEXT NOT NULL, metric TEXT NOT NULL, data TEXT NOT NULL,
    updated REAL NOT NULL, PRIMARY KEY (device, space, metric));
"""

METRICS = ("latency", "energy", "prefill")  # prefill: a language model's prompt (ms), beside its decode latency
SUMMARY_METRICS = ("latency", "energy")  # counted in every device summary; others only where measured


def _finite(value: float, what: str) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise BadInput(f"{what} must be a finite, non-negative number, got {value!r}")
    return v


class Store:
    """All measurements, devices and derived per-device state of one user."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False,
                                       isolation_level=None)
        except (OSError, sqlite3.Error) as err:
            raise BadInput(f"{self.path}: cannot open the store: {err}") from None
        self._lock = threading.RLock()
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self.transaction() as db:
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise BadInput(f"{self.path}: store schema {row[0]} is newer than this toolkit ({SCHEMA_VERSION})")
        except sqlite3.DatabaseError as err:
            raise BadInput(f"{self.path}: not a modnas store ({err})") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: all of it lands or none of it does."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- devices -------------------------------------------------------------------------------
    def upsert_device(self, name: str, config: dict[str, Any]) -> None:
        now = time.time()
        with self.transaction() as db:
            db.execute("INSERT INTO devices VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                       "config=excluded.config, updated=excluded.updated",
                       (name, json.dumps(config, sort_keys=True), now, now))

    def get_device(self, name: str) -> dict[str, Any] | None:
        rows = self._query("SELECT config FROM devices WHERE name=?", (name,))
        return json.loads(rows[0][0]) if rows else None

    def devices(self) -> list[DeviceSummary]:
        """One row per device and space, with measurement counts and whether it has an embedding."""
        names = [r[0] for r in self._query("SELECT name FROM devices ORDER BY name")]
        counts = self._query("SELECT device, space, metric, COUNT(DISTINCT arch) FROM measurements "
                             "GROUP BY device, space, metric")
        embedded = {(d, s) for d, s in self._query("SELECT device, space FROM embeddings")}
        replayed = {d for (d,) in self._query("SELECT DISTINCT device FROM measurements WHERE source='replay'")}
        table: dict[tuple[str, str], dict[str, int]] = {}
        for device, space, metric, n in counts:
            table.setdefault((device, space), {m: 0 for m in SUMMARY_METRICS})[metric] = n
        out = []
        for name in names:
            spaces = sorted({s for d, s in table if d == name} | {s for d, s in embedded if d == name}) or ["nb201"]
            for space in spaces:
                out.append(DeviceSummary(name, space, table.get((name, space), {m: 0 for m in SUMMARY_METRICS}),
                                         (name, space) in embedded, name in replayed))
        return out

    # -- fingerprints and campaigns --------------------------------------------------------------
    def add_fingerprint(self, device: str, data: dict[str, Any]) -> int:
        with self.transaction() as db:
            cur = db.execute("INSERT INTO fingerprints (device, taken, data) VALUES (?, ?, ?)",
                             (device, time.time(), json.dumps(data, sort_keys=True, default=str)))
            return int(cur.lastrowid)

    def latest_fingerprint(self, device: str) -> dict[str, Any] | None:
        rows = self._query("SELECT data FROM fingerprints WHERE device=? ORDER BY id DESC LIMIT 1", (device,))
        return json.loads(rows[0][0]) if rows else None

    def start_campaign(self, device: str, settings: dict[str, Any], fingerprint_id: int | None = None) -> int:
        with self.transaction() as db:
            cur = db.execute("INSERT INTO campaigns (device, started, settings, fingerprint_id) VALUES (?, ?, ?, ?)",
                             (device, time.time(), json.dumps(settings, sort_keys=True), fingerprint_id))
            return int(cur.lastrowid)

    def finish_campaign(self, campaign_id: int, status: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE campaigns SET finished=?, status=? WHERE id=?", (time.time(), status, campaign_id))

    def campaigns(self, device: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT id, started, finished, status, settings FROM campaigns WHERE device=? ORDER BY id",
                           (device,))
        return [{"id": r[0], "started": r[1], "finished": r[2], "status": r[3], "settings": json.loads(r[4])}
                for r in rows]

    # -- artifacts -------------------------------------------------------------------------------
    def add_artifact(self, sha256: str, kind: str, space: str, arch: str, meta: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO artifacts VALUES (?, ?, ?, ?, ?, ?)",
                       (sha256, kind, space, arch, json.dumps(meta, sort_keys=True, default=str), time.time()))

    def artifact(self, sha256: str) -> dict[str, Any] | None:
        rows = self._query("SELECT kind, space, arch, meta FROM artifacts WHERE sha256=?", (sha256,))
        if not rows:
            return None
        kind, space, arch, meta = rows[0]
        return {"sha256": sha256, "kind": kind, "space": space, "arch": arch, "meta": json.loads(meta)}

    # -- measurements ------------------------------------------------------------------------------
    def has_measurement(self, device: str, space: str, arch: str, metric: str, runtime: str,
                        settings_key: str, artifact_sha: str) -> bool:
        rows = self._query("SELECT 1 FROM measurements WHERE device=? AND space=? AND arch=? AND metric=? "
                           "AND runtime=? AND settings_key=? AND artifact_sha=?",
                           (device, space, arch, metric, runtime, settings_key, artifact_sha))
        return bool(rows)

    def add_measurement(self, *, device: str, space: str, arch: str, metric: str, value: float,
                        runtime: str, settings_key: str = "", artifact_sha: str = "", campaign_id: int | None = None,
                        source: str = "profile", summary: dict[str, Any] | None = None,
                        samples: list[list[float]] | None = None, extra: list[dict[str, Any]] | None = None) -> None:
        """Store one result (and optional sibling metrics) atomically, replacing an equal key."""
        rows = [dict(metric=metric, value=value, summary=summary, samples=samples)] + list(extra or [])
        with self.transaction() as db:
            for row in rows:
                if row["metric"] not in METRICS:
                    raise BadInput(f"unknown metric {row['metric']!r}; use one of {', '.join(METRICS)}")
                db.execute(
                    "INSERT INTO measurements (device, space, arch, metric, runtime, settings_key, artifact_sha, "
                    "campaign_id, source, value, summary, samples, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(device, space, arch, metric, runtime, settings_key, artifact_sha) DO UPDATE SET "
                    "value=excluded.value, summary=excluded.summary, samples=excluded.samples, "
                    "campaign_id=excluded.campaign_id, source=excluded.source, created=excluded.created",
                    (device, space, arch, row["metric"], runtime, settings_key, artifact_sha, campaign_id, source,
                     _finite(row["value"], row["metric"]),
                     json.dumps(row.get("summary")) if row.get("summary") is not None else None,
                     json.dumps(row.get("samples")) if row.get("samples") is not None else None, time.time()))

    def import_values(self, device: str, space: str, metric: str, values: dict[str, float]) -> int:
        """Measurements taken elsewhere, all in one transaction."""
        now = time.time()
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO devices VALUES (?, ?, ?, ?)",
                       (device, json.dumps({"name": device}), now, now))
            for arch, value in values.items():
                db.execute(
                    "INSERT INTO measurements (device, space, arch, metric, runtime, settings_key, artifact_sha, "
                    "campaign_id, source, value, created) VALUES (?,?,?,?,'import','','',NULL,'import',?,?) "
                    "ON CONFLICT(device, space, arch, metric, runtime, settings_key, artifact_sha) DO UPDATE SET "
                    "value=excluded.value, created=excluded.created",
                    (device, space, arch, metric, _finite(value, metric), now))
        return len(values)

    def replayed(self, device: str) -> bool:
        """Whether the device's measurements come from a replay board (source 'replay'), not a real one."""
        return bool(self._query("SELECT 1 FROM measurements WHERE device=? AND source='replay' LIMIT 1", (device,)))

    def values(self, device: str, space: str, metric: str = "latency", runtime: str | None = None) -> dict[str, float]:
        """The latest value per architecture (median ms, or mJ per inference)."""
        sql = "SELECT arch, value FROM measurements WHERE device=? AND space=? AND metric=?"
        args: tuple = (device, space, metric)
        if runtime:
            sql += " AND runtime=?"
            args += (runtime,)
        out: dict[str, float] = {}
        for arch, value in self._query(sql + " ORDER BY created, id", args):
            out[arch] = value
        return out

    def measurement_rows(self, device: str, space: str, metric: str = "latency") -> list[dict[str, Any]]:
        rows = self._query("SELECT arch, runtime, settings_key, artifact_sha, campaign_id, source, value, summary, "
                           "samples FROM measurements WHERE device=? AND space=? AND metric=? ORDER BY id",
                           (device, space, metric))
        keys = ("arch", "runtime", "settings_key", "artifact_sha", "campaign_id", "source", "value", "summary", "samples")
        out = []
        for r in rows:
            d = dict(zip(keys, r))
            d["summary"] = json.loads(d["summary"]) if d["summary"] else None
            d["samples"] = json.loads(d["samples"]) if d["samples"] else None
            out.append(d)
        return out

    def add_failure(self, campaign_id: int | None, device: str, space: str, arch: str, error_code: str,
                    error: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO failures (campaign_id, device, space, arch, error_code, error, created) "
                       "VALUES (?,?,?,?,?,?,?)", (campaign_id, device, space, arch, error_code, error, time.time()))

    def failures(self, device: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT campaign_id, arch, error_code, error FROM failures WHERE device=? ORDER BY id",
                           (device,))
        return [{"campaign_id": r[0], "arch": r[1], "error_code": r[2], "error": r[3]} for r in rows]

    # -- derived per-device state ----------------------------------------------------------------------
    def set_embedding(self, device: str, space: str, metric: str, vector: list[float]) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?)",
                       (device, space, metric, json.dumps([float(v) for v in vector]), time.time()))

    def get_embedding(self, device: str, space: str, metric: str = "latency") -> list[float] | None:
        rows = self._query("SELECT vector FROM embeddings WHERE device=? AND space=? AND metric=?",
                           (device, space, metric))
        return json.loads(rows[0][0]) if rows else None

    def set_calibration(self, device: str, space: str, metric: str, data: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO calibrations VALUES (?, ?, ?, ?, ?)",
                       (device, space, metric, json.dumps(data, sort_keys=True), time.time()))

    def get_calibration(self, device: str, space: str, metric: str = "latency") -> dict[str, Any] | None:
        rows = self._query("SELECT data FROM calibrations WHERE device=? AND space=? AND metric=?",
                           (device, space, metric))
        return json.loads(rows[0][0]) if rows else None
