"""A board session: one connection and the agent on it; measuring an artifact gives a typed result."""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modnas.profilers import stats
from modnas.profilers.connection import (CommandTimeout, Completed, Connection, ConnectionLost,
                                         check_remote_path, open_connection)
from modnas.profilers.board.agent import sha256_file
from modnas.profilers.pack import build_agent
from modnas.profilers.errors import BadInput, BoardError

SETTINGS = ("warmup_s", "min_runs", "min_time_s", "repeats", "cooldown_s")
LM_SETTINGS = ("context", "prompt")  # a language model's measurement: cached tokens when decoding, prompt tokens
MIN_PYTHON = (3, 8)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SUFFIX = re.compile(r"^(\.[A-Za-z0-9_]{1,16})?$")
_FREE = ("import os, sys\ntry:\n    s = os.statvfs(sys.argv[1])\n    print(s.f_bavail * s.f_frsize)\n"
         "except OSError:\n    print(-1)")  # bytes free in the work directory; also proves the board still answers
_REPLY_GRACE_S = 30.0  # interpreter start, hashing and clean-up on a slow board, beyond the job's timeout

# Runs on the board with its own Python: make the work directory (0700), check the interpreter and
# hash the agent already there. Existing directories are never re-moded; other-writable ones refused.
_PREPARE = """
import hashlib, json, os, stat, sys
work = os.path.abspath(os.path.expanduser(sys.argv[1]))
agent = os.path.join(work, sys.argv[2])
out = {"python": list(sys.version_info[:3]), "workdir": work, "agent_sha256": None, "error": None}
for path in (work, os.path.join(work, "artifacts")):
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o700)
        os.chmod(path, 0o700)
    mode = os.stat(path).st_mode
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        out["error"] = "workdir %s is writable by other users" % path
if os.path.isfile(agent):
    with open(agent, "rb") as fh:
        out["agent_sha256"] = hashlib.sha256(fh.read()).hexdigest()
print(json.dumps(out))
"""


def _as_dict(value: Any) -> dict:
    if value is None:
        return {}
    if hasattr(value, "model_dump"):
        return dict(value.model_dump())
    return dict(value)


@dataclass
class MeasureJob:
    """One artifact to time (and maybe meter) on a board."""

    artifact: Path
    sha256: str
    runtime: str
    threads: int
    input_shape: list[int]
    measurement: dict
    energy: dict = field(default_factory=lambda: {"sensor": "none"})
    timeout_s: float = 600.0
    meta: dict = field(default_factory=dict)
    processes: int | None = None  # worker processes sharing the blocks; None: the agent's (agent.worker_plan)

    def __post_init__(self) -> None:
        self.artifact = Path(self.artifact)
        self.measurement = _as_dict(self.measurement)
        self.energy = _as_dict(self.energy) or {"sensor": "none"}
        if not isinstance(self.sha256, str) or not _SHA256.match(self.sha256):
            raise BadInput(f"sha256 must be 64 lower-case hex digits: {self.sha256!r}")
        if not isinstance(self.runtime, str) or not _NAME.match(self.runtime):
            raise BadInput(f"bad runtime name: {self.runtime!r}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise BadInput(f"threads must be a whole number >= 1: {self.threads!r}")
        shape = list(self.input_shape)
        if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
            raise BadInput(f"input_shape must be positive whole numbers: {self.input_shape!r}")
        self.input_shape = shape
        missing = [key for key in SETTINGS if key not in self.measurement]
        if missing:
            raise BadInput(f"measurement setting {missing[0]} is missing")
        self.measurement = {key: self.measurement[key] for key in SETTINGS + LM_SETTINGS
                            if key in SETTINGS or self.measurement.get(key) is not None}
        for key, value in self.measurement.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise BadInput(f"measurement setting {key} must be a number >= 0: {value!r}")
        for key in ("min_runs", "repeats") + tuple(k for k in LM_SETTINGS if k in self.measurement):
            value = self.measurement[key]
            if int(value) != value or value < 1:
                raise BadInput(f"measurement setting {key} must be a whole number >= 1: {value!r}")
            self.measurement[key] = int(value)
        if not (isinstance(self.timeout_s, (int, float)) and math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise BadInput(f"timeout_s must be a positive number: {self.timeout_s!r}")
        if self.processes is not None and (isinstance(self.processes, bool) or not isinstance(self.processes, int)
                                           or not 1 <= self.processes <= self.measurement["repeats"]):
            raise BadInput(f"processes must be a whole number from 1 to repeats: {self.processes!r}")
        if not _SUFFIX.match(self.suffix):
            raise BadInput(f"artifact file name has an unusable suffix: {self.artifact.name!r}")

    @property
    def suffix(self) -> str:
        return self.artifact.suffix


@dataclass
class MeasureResult:
    """What became of one job: samples and their summary, or why not (error_code)."""

    ok: bool
    error_code: str | None
    error: str | None
    blocks: list[list[float]]
    summary: dict | None
    runtime: str
    runtime_version: str
    energy: dict | None
    agent_seconds: float | None
    wall_seconds: float
    replayed: bool = False  # the board answered from a table (a replay board), nothing was run
    prefill_blocks: list[list[float]] | None = None  # a language model's prefill samples (ms), per block
    prefill_summary: dict | None = None
    peak_rss_mb: float | None = None  # the measuring process's peak resident memory, when the board reports it
    processes: int | None = None  # distinct worker processes that timed the blocks, when the board reports it


class BadReply(Exception):
    """The agent's reply broke the protocol."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def parse_reply(stdout: bytes, job: MeasureJob) -> dict:
    """The agent's reply checked field by field; BadReply says what is wrong."""
    try:
        text = stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise BadReply("reply is not UTF-8") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        hint = " (does the board's shell start-up print to stdout?)" if len(lines) > 1 else ""
        raise BadReply(f"expected one JSON line on stdout, got {len(lines)} lines{hint}")
    try:
        doc = json.loads(lines[0], parse_constant=_reject_constant)
    except ValueError as exc:
        raise BadReply(f"reply is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadReply("reply is not a JSON object")
    kinds: dict[str, tuple[type, ...]] = {
        "ok": (bool,),
        "error_code": (str, type(None)),
        "error": (str, type(None)),
        "blocks": (list,),
        "runtime": (str, type(None)),
        "runtime_version": (str,),
        "energy": (dict, type(None)),
    }
    for key, types in kinds.items():
        if key not in doc:
            raise BadReply(f"reply has no {key}")
        if not isinstance(doc[key], types):
            raise BadReply(f"reply field {key} has the wrong type")
    if not _is_number(doc.get("agent_seconds")) or not math.isfinite(doc["agent_seconds"]) or doc["agent_seconds"] < 0:
        raise BadReply("reply field agent_seconds must be a number >= 0")
    if not isinstance(doc.setdefault("replayed", False), bool):
        raise BadReply("reply field replayed has the wrong type")
    if not doc["ok"]:
        if not doc["error_code"]:
            raise BadReply("a failed reply has no error_code")
        return doc
    if doc["error_code"] is not None:
        raise BadReply("a successful reply carries an error_code")
    if doc["runtime"] != job.runtime:
        raise BadReply(f"reply is for runtime {doc['runtime']!r}, the job asked for {job.runtime!r}")
    blocks = doc["blocks"]
    if not isinstance(blocks, list) or len(blocks) != job.measurement["repeats"]:
        raise BadReply(f"reply has {len(blocks) if isinstance(blocks, list) else 'no list of'} blocks, "
                       f"the job asked for {job.measurement['repeats']}")
    doc["blocks"] = _checked_blocks(blocks, job.measurement["min_runs"], "block")
    peak = doc.get("peak_rss_mb")
    if peak is not None and (not _is_number(peak) or not math.isfinite(peak) or peak <= 0):
        raise BadReply("reply field peak_rss_mb must be a positive number")
    processes = doc.get("processes")
    if processes is not None and (not isinstance(processes, int) or isinstance(processes, bool)
                                  or not 1 <= processes <= len(blocks)):
        raise BadReply("reply field processes must be a whole number from 1 to the number of blocks")
    prefill = doc.get("prefill_blocks")
    if prefill is not None:
        if not isinstance(prefill, list) or len(prefill) != job.measurement["repeats"]:
            raise BadReply(f"reply's prefill_blocks must be {job.measurement['repeats']} blocks")
        doc["prefill_blocks"] = _checked_blocks(prefill, job.measurement["min_runs"], "prefill block")
    return doc


def _checked_blocks(blocks: list[Any], min_runs: int, what: str) -> list[list[float]]:
    """Each block a list of at least ``min_runs`` finite positive numbers, as floats."""
    for index, block in enumerate(blocks):
        if not isinstance(block, list) or len(block) < min_runs:
            raise BadReply(f"{what} {index} has fewer than min_runs={min_runs} samples")
        if not all(_is_number(v) and math.isfinite(v) and v > 0 for v in block):
            raise BadReply(f"{what} {index} has a sample that is not a finite positive number")
    return [[float(v) for v in block] for block in blocks]


def _last_line(data: bytes) -> str:
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


class Board:
    """One board: its connection and agent. Use as a context manager; `measure` never raises for a bad model."""

    def __init__(self, cfg: Any, connection: Connection | None = None, command_timeout: float = 120.0) -> None:
        self.cfg = cfg
        self.name = str(cfg.name)
        self.python = str(cfg.python)
        workdir = str(cfg.workdir)
        if cfg.host in ("local", "replay"):  # both run on this machine
            workdir = os.path.expanduser(workdir)
        if not (workdir == "~" or workdir.startswith("~/")):  # a remote '~' is resolved on the board
            try:
                check_remote_path(workdir)
            except BadInput as exc:
                raise BadInput(f"device {self.name}: workdir: {exc}") from None
        self.workdir = workdir.rstrip("/") or "/"
        if not self.python or "\x00" in self.python:
            raise BadInput(f"device {self.name}: python must name an interpreter")
        self.command_timeout = command_timeout
        self.connection = connection if connection is not None else open_connection(cfg)
        self.agent_path: str | None = None
        self.python_version: tuple[int, ...] | None = None

    def __enter__(self) -> "Board":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    def abort(self) -> None:
        """From another thread: stop what runs on the board now (CommandAborted there) and refuse more."""
        stop = getattr(self.connection, "abort", None)
        if callable(stop):
            stop()

    def _fail(self, what: str, done: Completed) -> BoardError:
        why = _last_line(done.stderr) or _last_line(done.stdout) or f"exit status {done.rc}"
        return BoardError(f"board {self.name}: {what}: {why}")

    def prepare(self) -> str:
        """Make the work directory (0700) and upload the agent unless the board has it already; its path."""
        if self.agent_path is not None:
            return self.agent_path
        pack = build_agent()
        argv = [self.python, "-c", _PREPARE, self.workdir, pack.filename]
        done = self.connection.run(argv, timeout=self.command_timeout)
        try:
            state = json.loads(done.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
            version = tuple(int(v) for v in state["python"])
            workdir = check_remote_path(str(state["workdir"]))
        except (ValueError, KeyError, IndexError, TypeError):
            raise self._fail(f"cannot prepare {self.workdir} with {self.python}", done) from None
        self.workdir = workdir
        agent_path = f"{workdir}/{pack.filename}"
        if version < MIN_PYTHON:
            found = ".".join(map(str, version))
            raise BoardError(f"board {self.name}: {self.python} is Python {found}; the agent needs 3.8 or newer")
        if state.get("error"):
            raise BoardError(f"board {self.name}: {state['error']}")
        if state.get("agent_sha256") != pack.sha256:
            with tempfile.TemporaryDirectory(prefix="modnas-agent-") as tmp:
                local = Path(tmp) / pack.filename
                local.write_bytes(pack.data)
                self.connection.put(local, agent_path)
        self.python_version = version
        self.agent_path = agent_path
        return agent_path

    def _agent_json(self, args: list[str], what: str) -> dict:
        agent = self.prepare()
        done = self.connection.run([self.python, agent, *args], timeout=self.command_timeout)
        if done.rc != 0:
            raise self._fail(what, done)
        lines = [line for line in done.stdout.decode("utf-8", "replace").splitlines() if line.strip()]
        try:  # the reply is the last line: a chatty shell start-up on the board must not hide it
            doc = json.loads(lines[-1] if lines else "", parse_constant=_reject_constant)
        except ValueError:
            raise self._fail(f"{what}: the agent's reply is not JSON", done) from None
        if not isinstance(doc, dict):
            raise BoardError(f"board {self.name}: {what}: the agent's reply is not a JSON object")
        return doc

    def _runtime_args(self, runtimes: list[str] | None) -> list[str]:
        if runtimes is None:
            return []
        names = [str(name) for name in runtimes]
        if not names or not all(_NAME.match(name) for name in names):
            raise BadInput(f"bad runtime names: {runtimes!r}")
        return ["--runtimes", ",".join(names)]

    def fingerprint(self, runtimes: list[str] | None = None) -> dict:
        """The board's environment (CPU, frequencies, memory, OS, temperatures, load) and runtime versions.

        Checks only the device's runtime unless `runtimes` names others (importing TVM takes seconds).
        """
        names = runtimes if runtimes is not None else [str(getattr(self.cfg, "runtime", "onnxruntime"))]
        doc = self._agent_json(["fingerprint", *self._runtime_args(names)], "fingerprint failed")
        doc["agent_sha256"] = build_agent().sha256
        return doc

    def probe(self, energy: Any = None, runtimes: list[str] | None = None) -> dict:
        """Which runtimes work on the board (default: all registered) and whether the energy sensor reads."""
        settings = _as_dict(energy if energy is not None else getattr(self.cfg, "energy", None)) or {"sensor": "none"}
        args = ["probe", "--energy", json.dumps(settings, sort_keys=True), *self._runtime_args(runtimes)]
        return self._agent_json(args, "probe failed")

    def _check_link(self, cause: BaseException) -> int:
        """After a command timed out or an upload failed: ConnectionLost unless a trivial command still answers
        promptly. Returns the bytes free in the work directory (-1 when unknown)."""
        try:
            done = self.connection.run([self.python, "-c", _FREE, self.workdir],
                                       timeout=min(self.command_timeout, 15.0))
        except BoardError as exc:
            raise ConnectionLost(f"board {self.name}: connection lost: no answer after a timeout ({exc})") from None
        if done.rc != 0:
            raise ConnectionLost(f"board {self.name}: connection lost: {self.python} no longer runs after {cause}")
        try:
            return int(done.stdout.decode("utf-8", "replace").split()[-1])
        except (ValueError, IndexError):
            return -1

    def artifact_path(self, job: MeasureJob) -> str:
        return f"{self.workdir}/artifacts/{job.sha256}{job.suffix}"

    def measure(self, job: MeasureJob) -> MeasureResult:
        """Upload the artifact (once, by hash), run the agent on it, check its reply strictly."""
        start = time.monotonic()

        def failed(code: str, error: str, agent_seconds: float | None = None, version: str = "") -> MeasureResult:
            return MeasureResult(False, code, error, [], None, job.runtime, version, None, agent_seconds,
                                 time.monotonic() - start)

        if not job.artifact.is_file():
            raise BadInput(f"artifact not found: {job.artifact}")
        found = sha256_file(job.artifact)
        if found != job.sha256:
            return failed("hash_mismatch", f"local artifact sha256 is {found[:12]}, the job expects {job.sha256[:12]}")
        agent = self.prepare()  # a board that cannot be prepared is a board failure (BoardError), not a model's
        remote = self.artifact_path(job)
        try:
            if not self.connection.exists(remote):
                self.connection.put(job.artifact, remote)
        except ConnectionLost:
            raise
        except BoardError as exc:
            free = self._check_link(exc)  # a link that stopped answering is the board's failure, not this model's
            size = job.artifact.stat().st_size
            if 0 <= free < size + (1 << 16):
                return failed("upload_failed", f"{exc} (disk full? the board's work directory has {free // 1024} KiB "
                                               f"free, the artifact needs {-(-size // 1024)} KiB)")
            return failed("upload_failed", str(exc))
        payload = {
            "artifact": remote,
            "sha256": job.sha256,
            "runtime": job.runtime,
            "threads": job.threads,
            "input_shape": job.input_shape,
            "measurement": job.measurement,
            "energy": job.energy,
            "timeout_s": job.timeout_s,
            "meta": job.meta,
            "workdir": self.workdir,
        }
        if job.processes is not None:
            payload["processes"] = job.processes
        for attempt in (1, 2):
            try:
                done = self.connection.run(
                    [self.python, agent, "run", "-"],
                    timeout=job.timeout_s + _REPLY_GRACE_S,
                    stdin=json.dumps(payload).encode(),
                )
            except CommandTimeout as exc:
                self._check_link(exc)  # an agent that does not answer at all may mean the link is gone
                return failed("timeout", str(exc))
            try:
                reply = parse_reply(done.stdout, job)
            except BadReply as exc:
                tail = _last_line(done.stderr)
                detail = f"{exc} (exit status {done.rc}{'; ' + tail if tail else ''})"
                return failed("bad_reply", detail)
            if reply["ok"] or reply["error_code"] != "hash_mismatch" or attempt == 2:
                break
            try:  # the copy on the board was changed since it was uploaded: upload it again, once
                self.connection.put(job.artifact, remote)
            except ConnectionLost:
                raise
            except BoardError as exc:
                return failed("upload_failed", f"re-upload after hash_mismatch: {exc}")
        if not reply["ok"]:
            return failed(reply["error_code"], reply["error"] or reply["error_code"], reply["agent_seconds"],
                          reply["runtime_version"])
        processes = reply.get("processes")
        return MeasureResult(
            ok=True,
            error_code=None,
            error=None,
            blocks=reply["blocks"],
            summary=_summary(reply["blocks"], processes),
            runtime=job.runtime,
            runtime_version=reply["runtime_version"],
            energy=reply["energy"],
            agent_seconds=float(reply["agent_seconds"]),
            wall_seconds=time.monotonic() - start,
            replayed=bool(reply["replayed"]),
            prefill_blocks=reply.get("prefill_blocks"),
            prefill_summary=_summary(reply["prefill_blocks"], processes) if reply.get("prefill_blocks") else None,
            peak_rss_mb=float(reply["peak_rss_mb"]) if reply.get("peak_rss_mb") is not None else None,
            processes=processes,
        )


def _summary(blocks: list[list[float]], processes: int | None) -> dict:
    """The blocks' statistics; blocks from several worker processes are summarised across processes (median of
    the block medians) and the summary records how many processes timed them."""
    if not processes or processes < 2:
        return stats.summarize(blocks)
    return dict(stats.summarize(blocks, across_blocks=True), processes=processes)
