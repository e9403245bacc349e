"""The board agent: fingerprint, probe, and run one measurement job in a killable worker process."""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Callable, List, Optional, Tuple

from . import fingerprint as fingerprint_mod
from . import timing
from .replay_runtime import NotInTable
from .runtimes import available_runtimes, get_runtime

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_LOG_TAIL = 600
_WATCH_S = 0.2  # how often a waiting agent or worker checks that the host (or the agent) is still there
# measurement settings of a language model -> the symbolic dimension of its graphs they fix
LM_SETTINGS = {"context": "past", "prompt": "prompt"}


class JobError(Exception):
    """A job cannot be run; carries the reply's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return "%s: %s" % (type(exc).__name__, lines[0][:300]) if lines else type(exc).__name__


def _emit(doc: dict) -> None:
    sys.stdout.write(json.dumps(doc, allow_nan=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _write_json_atomic(path: str, doc: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, allow_nan=False)
    os.replace(tmp, path)


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _number(value: Any, name: str, minimum: float, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise JobError("bad_job", "job field %s must be a number >= %g, got %r" % (name, minimum, value))
    if integer and int(value) != value:
        raise JobError("bad_job", "job field %s must be a whole number, got %r" % (name, value))
    return int(value) if integer else float(value)


def check_job(job: Any) -> dict:
    """The job with every field checked, or JobError('bad_job')."""
    if not isinstance(job, dict):
        raise JobError("bad_job", "a job must be a JSON object")
    for key in ("artifact", "sha256", "runtime", "threads", "input_shape", "measurement", "timeout_s"):
        if key not in job:
            raise JobError("bad_job", "job field %s is missing" % key)
    if not isinstance(job["artifact"], str) or not os.path.isabs(job["artifact"]):
        raise JobError("bad_job", "job field artifact must be an absolute path")
    if not isinstance(job["sha256"], str) or not _SHA256.match(job["sha256"]):
        raise JobError("bad_job", "job field sha256 must be 64 lower-case hex digits")
    if not isinstance(job["runtime"], str):
        raise JobError("bad_job", "job field runtime must be a string")
    shape = job["input_shape"]
    if not isinstance(shape, list) or not shape:
        raise JobError("bad_job", "job field input_shape must be a non-empty list")
    out = dict(job)
    out["input_shape"] = [_number(d, "input_shape", 1, integer=True) for d in shape]
    out["threads"] = _number(job["threads"], "threads", 1, integer=True)
    out["timeout_s"] = _number(job["timeout_s"], "timeout_s", 0.001)
    if not isinstance(job["measurement"], dict):
        raise JobError("bad_job", "job field measurement must be an object")
    try:
        timing.check_settings(job["measurement"])
    except ValueError as exc:
        raise JobError("bad_job", str(exc))
    for key in LM_SETTINGS:  # a language model's measurement: cached tokens while decoding, prompt tokens
        if key in job["measurement"]:
            _number(job["measurement"][key], "measurement." + key, 1, integer=True)
    for key in ("energy", "meta"):
        if job.get(key) is not None and not isinstance(job[key], dict):
            raise JobError("bad_job", "job field %s must be an object" % key)
    out["energy"] = job.get("energy") or {"sensor": "none"}
    out["meta"] = job.get("meta") or {}
    workdir = job.get("workdir")
    if workdir is not None and (not isinstance(workdir, str) or not os.path.isdir(workdir)):
        raise JobError("bad_job", "job field workdir must be an existing directory")
    if job.get("processes") is not None:  # how many fresh worker processes share the blocks
        out["processes"] = _number(job["processes"], "processes", 1, integer=True)
        if out["processes"] > int(job["measurement"]["repeats"]):
            raise JobError("bad_job", "job field processes (%d) exceeds measurement.repeats (%d)"
                           % (out["processes"], job["measurement"]["repeats"]))
    return out


def is_language_model(job: dict) -> bool:
    """Whether the job times a language model: its artifact names decode/prefill graphs, or its measurement
    sets a context or prompt length."""
    return bool(job["meta"].get("graphs")) or any(key in job["measurement"] for key in LM_SETTINGS)


def worker_plan(job: dict) -> List[int]:
    """How many blocks each fresh worker process times, in order. A language model's timing depends on the
    process it runs in (memory layout), so by default each of its blocks gets its own process; other models
    time every block in one. ``job["processes"]`` overrides (1: the single-process protocol)."""
    repeats = int(job["measurement"]["repeats"])
    count = job.get("processes") or (repeats if is_language_model(job) else 1)
    base, extra = divmod(repeats, count)
    return [base + (1 if index < extra else 0) for index in range(count)]


def _read_job(path: str) -> Any:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, "r", encoding="utf-8") as fh:
                text = fh.read()
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise JobError("bad_job", "cannot read the job: %s" % _one_line(exc))


def _self_argv() -> List[str]:
    """How to start this agent again (from its zipapp or from a source tree) in a new process."""
    package = __package__ or "modnas.profilers.board"
    top = os.path.dirname(os.path.abspath(__file__))
    for _ in package.split("."):
        top = os.path.dirname(top)
    code = (
        "import importlib, sys; sys.path.insert(0, sys.argv.pop(1)); "
        "agent = importlib.import_module(sys.argv.pop(1) + '.agent'); sys.exit(agent.main(sys.argv[1:]))"
    )
    return [sys.executable, "-c", code, top, package]


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(fh.tell() - _LOG_TAIL, 0))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def run_job(job_path: str, board: Any = None, job_text: Optional[str] = None,
            reply_fd: Optional[int] = None) -> dict:
    """Check the job and its artifact, run the worker under the job's timeout; the reply.

    With ``board`` (a board that lives in this process: a replay board) the job is read from ``job_text``
    and measured here, without a worker process: there is nothing to time, hang or kill. ``reply_fd`` is
    where the reply will go: when its reader hangs up, the worker is killed and HostGone raised."""
    start = time.monotonic()
    reply = {
        "ok": False,
        "error_code": None,
        "error": None,
        "blocks": [],
        "runtime": None,
        "runtime_version": "",
        "agent_seconds": 0.0,
        "energy": None,
    }
    tmp = None
    try:
        job = check_job(_read_job(job_path) if job_text is None else _parse_job(job_text))
        reply["runtime"] = job["runtime"]
        if not os.path.isfile(job["artifact"]):
            raise JobError("missing_artifact", "artifact %s is not on the board" % job["artifact"])
        found = sha256_file(job["artifact"])
        if found != job["sha256"]:
            raise JobError("hash_mismatch",
                           "artifact sha256 is %s, the job expects %s" % (found[:12], job["sha256"][:12]))
        if board is not None:
            reply.update(measure(job, board))
            reply["replayed"] = True
            return _finish(reply, start)
        tmp = tempfile.mkdtemp(prefix="job-", dir=job.get("workdir"))
        reply.update(_run_workers(job, tmp, reply_fd))
    except HostGone:
        raise
    except JobError as exc:
        reply["error_code"], reply["error"] = exc.code, str(exc)
    except Exception as exc:
        reply["error_code"], reply["error"] = "agent_error", _one_line(exc)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return _finish(reply, start)


def _finish(reply: dict, start: float) -> dict:
    reply["agent_seconds"] = time.monotonic() - start
    return reply


def _parse_job(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise JobError("bad_job", "cannot read the job: %s" % _one_line(exc))


class HostGone(Exception):
    """Nobody reads the reply any more (the connection's channel or pipe was closed): stop and clean up."""


def _reply_closed(fd: Optional[int]) -> bool:
    """Whether the pipe or channel the reply goes to was closed by the reader (POLLERR/POLLHUP on it)."""
    if fd is None or not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, 0)  # POLLERR, POLLHUP and POLLNVAL are always reported
    try:
        return any(event & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, event in poller.poll(0))
    except OSError:
        return False


def _wait_watching(proc: "subprocess.Popen[bytes]", timeout_s: float, reply_fd: Optional[int]) -> None:
    """Wait for the worker; TimeoutExpired past timeout_s, HostGone when the reader hung up."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            proc.wait(timeout=max(min(remaining, _WATCH_S), 0.0))
            return
        except subprocess.TimeoutExpired:
            if remaining <= _WATCH_S:
                raise
        if _reply_closed(reply_fd):
            raise HostGone("the host closed the connection")


def _part_job(job: dict, blocks: int, index: int) -> dict:
    """The job one worker of several runs: ``blocks`` of the blocks; only the first meters energy."""
    part = dict(job, measurement=dict(job["measurement"], repeats=blocks), processes=None)
    if index:
        part["energy"] = {"sensor": "none"}
    return part


def _run_workers(job: dict, tmp: str, reply_fd: Optional[int] = None) -> dict:
    """Run the job's blocks in the worker processes :func:`worker_plan` asks for, one after another, all
    under the job's one timeout; their results joined. The first failed worker is the reply (typed)."""
    plan = worker_plan(job)
    deadline = time.monotonic() + job["timeout_s"]
    cooldown = float(job["measurement"]["cooldown_s"])
    parts = []
    for index, blocks in enumerate(plan):
        if index and cooldown > 0:
            time.sleep(min(cooldown, max(deadline - time.monotonic(), 0.0)))
        worker_job = os.path.join(tmp, "job%s.json" % _suffix(index))
        _write_json_atomic(worker_job, _part_job(job, blocks, index) if len(plan) > 1 else job)
        try:
            part = _run_worker(worker_job, deadline - time.monotonic(), tmp, reply_fd, index, job["timeout_s"])
        except JobError as exc:
            raise JobError(exc.code, _which(index, plan) + str(exc))
        if not part["ok"]:
            part.pop("pid")
            return dict(part, error=_which(index, plan) + str(part.get("error") or part.get("error_code")))
        parts.append(part)
    return _joined(parts)


def _suffix(index: int) -> str:
    """The file-name suffix of worker ``index`` (none for the first, the only one of a one-process job)."""
    return "-%d" % index if index else ""


def _which(index: int, plan: List[int]) -> str:
    return "worker %d of %d: " % (index + 1, len(plan)) if len(plan) > 1 else ""


def _joined(parts: List[dict]) -> dict:
    """One reply from the workers' results, in order: blocks and prefill blocks joined, the first worker's
    runtime version and energy, the largest peak memory; ``processes`` and each block's worker id."""
    first = parts[0]
    reply = {"ok": True, "error_code": None, "error": None, "runtime_version": first.get("runtime_version"),
             "energy": first.get("energy")}
    reply["blocks"] = [block for part in parts for block in part["blocks"]]
    if all(part.get("prefill_blocks") is not None for part in parts):
        reply["prefill_blocks"] = [block for part in parts for block in part["prefill_blocks"]]
    peaks = [part["peak_rss_mb"] for part in parts if part.get("peak_rss_mb") is not None]
    if peaks:
        reply["peak_rss_mb"] = max(peaks)
    reply["block_pids"] = [part["pid"] for part in parts for _ in part["blocks"]]
    reply["processes"] = len(parts)  # not the distinct ids: one finished worker's id may be reused by the next
    return reply


def _run_worker(worker_job: str, timeout_s: float, tmp: str, reply_fd: Optional[int] = None, index: int = 0,
                limit_s: Optional[float] = None) -> dict:
    """Run one worker process on ``worker_job`` for at most ``timeout_s``; its result and process id.
    ``limit_s`` is the job's timeout a timeout is reported against (default ``timeout_s``)."""
    limit_s = timeout_s if limit_s is None else limit_s
    if timeout_s <= 0:
        raise JobError("timeout", "the measurement ran past timeout_s=%g s" % limit_s)
    result_path = os.path.join(tmp, "result%s.json" % _suffix(index))
    log_path = os.path.join(tmp, "worker%s.log" % _suffix(index))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            _self_argv() + ["worker", worker_job, "--out", result_path],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=tmp,
            start_new_session=True,
        )
    try:
        _wait_watching(proc, timeout_s, reply_fd)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.wait()
        raise JobError("timeout", "the measurement ran past timeout_s=%g s; its process group was killed" % limit_s)
    finally:
        if proc.poll() is None:
            _kill_group(proc.pid)
            proc.wait()
    _kill_group(proc.pid)  # helpers the runtime or a sensor left behind
    try:
        with open(result_path, "r", encoding="utf-8") as fh:
            result = json.load(fh)
    except (OSError, ValueError):
        if proc.returncode < 0:
            why = "the worker died from signal %d" % -proc.returncode
        else:
            why = "the worker exited with status %d" % proc.returncode
        last = _tail(log_path)
        try:
            stat = os.statvfs(tmp)
            free_kib = stat.f_bavail * stat.f_frsize // 1024
        except OSError:
            free_kib = -1
        if 0 <= free_kib < 1024:  # a full disk makes the worker die without a word (it cannot write its log)
            why += " (disk full? the work directory has %d KiB free)" % free_kib
        raise JobError("worker_failed", why + (": " + last if last else ""))
    keep = ("ok", "error_code", "error", "blocks", "runtime_version", "energy")
    reply = {key: result.get(key) for key in keep}
    for key in ("prefill_blocks", "peak_rss_mb"):  # a language model's prefill; the worker's peak memory
        if result.get(key) is not None:
            reply[key] = result[key]
    reply["pid"] = proc.pid
    return reply


def _energy_cfg(cfg: dict) -> dict:
    """The energy mapping without unset (null) keys, which sensors would take as given."""
    return {key: value for key, value in cfg.items() if value is not None}


def time_blocks(run_once: Callable[[], None], measurement: dict) -> List[List[float]]:
    """The timing protocol in this process, or, for a runtime that times itself (trtexec without
    TensorRT's Python bindings), the same protocol run by that tool block by block."""
    drawn = getattr(run_once, "replay_blocks", None)
    if drawn is not None:  # a replay board draws its samples from a table: nothing is timed
        return drawn(timing.check_settings(measurement))
    sampler = getattr(run_once, "trtexec_samples", None)
    if sampler is None:
        return timing.measure(run_once, measurement)
    m = timing.check_settings(measurement)
    blocks = []
    for index in range(m["repeats"]):
        if index and m["cooldown_s"] > 0:
            time.sleep(m["cooldown_s"])
        blocks.append(sampler(int(m["warmup_s"] * 1000), m["min_time_s"], m["min_runs"]))
    return blocks


def measure_energy_for(job: dict, run_once: Callable[[], None]) -> dict:
    """The energy sensor's reading for this model, or {'sensor', 'error'}; loaded only when asked for."""
    cfg = _energy_cfg(job["energy"])
    name = str(cfg.get("sensor"))
    overrides = {} if "min_time_s" in cfg else {"min_time_s": float(job["measurement"]["min_time_s"])}
    try:
        from . import meter
        from . import sensors
    except Exception as exc:
        return {"sensor": name, "error": "the energy code cannot be loaded: %s" % _one_line(exc)}
    sensor = None
    try:
        if hasattr(meter, "measure_with_config"):
            energy = dict(meter.measure_with_config(cfg, run_once, **overrides))
        else:
            sensor = sensors.make_sensor(cfg)
            kwargs = {key: cfg[key] for key in ("idle_s", "min_samples", "min_time_s") if key in cfg}
            kwargs.update(overrides)
            energy = dict(meter.measure_energy(sensor, run_once, **kwargs))
        energy.setdefault("sensor", name)
        json.dumps(energy, allow_nan=False)  # ValueError on NaN/inf: reported, never sent as a number
        return energy
    except Exception as exc:
        return {"sensor": name, "error": _one_line(exc)}
    finally:
        close = getattr(sensor, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                pass


def probe_energy(cfg: Optional[dict]) -> dict:
    """Whether the configured energy sensor can be read here."""
    if not cfg or cfg.get("sensor", "none") == "none":
        return {"sensor": "none", "readable": False, "detail": "no energy sensor configured"}
    name = str(cfg.get("sensor"))
    try:
        from . import meter

        found = dict(meter.probe_sensor(_energy_cfg(cfg)))
    except Exception as exc:
        return {"sensor": name, "readable": False, "detail": _one_line(exc)}
    found.update(sensor=found.get("sensor", name), readable=bool(found.get("readable")),
                 detail=str(found.get("detail", "")))
    return found


def measure(job: dict, runtime: Any = None) -> dict:
    """Load the model, time it, read energy: the result fields of a reply. ``runtime`` is an object with the
    runtime interface (a replay board); by default the one the job names is imported."""
    result = {"ok": False, "error_code": None, "error": None, "blocks": [], "runtime_version": "", "energy": None}
    try:
        try:
            if runtime is None or job["runtime"] != getattr(runtime, "NAME", None):
                runtime = get_runtime(job["runtime"])
            usable, detail = runtime.available()
        except Exception as exc:
            raise JobError("runtime_unavailable", "runtime %s: %s" % (job["runtime"], _one_line(exc)))
        if not usable:
            raise JobError("runtime_unavailable", "runtime %s: %s" % (job["runtime"], detail))
        result["runtime_version"] = str(runtime.version())
        meta = job["meta"]
        dims = {dim: int(job["measurement"][key]) for key, dim in LM_SETTINGS.items() if key in job["measurement"]}
        if dims:  # symbolic dimensions of the graph's inputs: the cache's length and the prompt's
            meta = dict(meta, dims=dims)
        try:
            run_once = runtime.load(job["artifact"], job["threads"], job["input_shape"], meta)
        except NotInTable as exc:
            raise JobError("not_in_table", str(exc))
        except Exception as exc:
            raise JobError("load_failed", _one_line(exc))
        prefill = getattr(run_once, "prefill", None)  # a language model's prefill graph, timed after decoding
        try:
            blocks = time_blocks(run_once, job["measurement"])
            prefill_blocks = time_blocks(prefill, job["measurement"]) if prefill is not None else None
        except Exception as exc:
            raise JobError("run_failed", _one_line(exc))
        result.update(ok=True, blocks=blocks)
        if prefill_blocks is not None:
            result["prefill_blocks"] = prefill_blocks
        if job["energy"].get("sensor", "none") != "none":
            metered = getattr(run_once, "replay_energy", None)
            if metered is not None:
                result["energy"] = metered(_energy_cfg(job["energy"]), job["measurement"])
            elif getattr(run_once, "per_call_process", False):
                result["energy"] = {"sensor": job["energy"]["sensor"],
                                    "error": "energy per inference needs an in-process runtime (for TensorRT: "
                                             "its Python bindings), not one process per call"}
            else:
                result["energy"] = measure_energy_for(job, run_once)
    except JobError as exc:
        result.update(ok=False, error_code=exc.code, error=str(exc))
    except Exception as exc:
        traceback.print_exc()
        result.update(ok=False, error_code="worker_error", error=_one_line(exc))
    return result


def work(job_path: str, out_path: str) -> int:
    """The worker: measure the job; the result goes to out_path as JSON."""
    try:
        result = measure(check_job(_read_job(job_path)))
    except JobError as exc:
        result = {"ok": False, "error_code": exc.code, "error": str(exc), "blocks": [], "runtime_version": "",
                  "energy": None}
    peak = peak_rss_mb()
    if peak is not None:
        result["peak_rss_mb"] = peak
    _write_json_atomic(out_path, result)
    return 0


def peak_rss_mb() -> Optional[float]:
    """This process's peak resident memory (ru_maxrss) in MB, or None where it cannot be read."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except Exception:
        return None
    scale = 1.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB on Linux
    return round(peak * scale / (1024.0 * 1024.0), 1) if peak > 0 else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent", description="modnas board agent")
    sub = parser.add_subparsers(dest="command")
    fp = sub.add_parser("fingerprint", help="describe this board as one JSON line")
    fp.add_argument("--root", default="/", help="where sysfs/procfs are mounted (tests)")
    fp.add_argument("--runtimes", default=None, help="comma-separated runtimes to check (default: all)")
    pr = sub.add_parser("probe", help="runtimes and the energy sensor, as one JSON line")
    pr.add_argument("--energy", default=None, help="the energy settings as a JSON object")
    pr.add_argument("--runtimes", default=None, help="comma-separated runtimes to check (default: all)")
    rn = sub.add_parser("run", help="run one measurement job (a JSON file, or - for stdin)")
    rn.add_argument("job")
    wk = sub.add_parser("worker", help="internal: the measuring process that `run` starts")
    wk.add_argument("job")
    wk.add_argument("--out", default=None)
    return parser


def _runtime_names(arg: Optional[str]) -> Optional[List[str]]:
    return [name for name in arg.split(",") if name] if arg else None


def _command(args: argparse.Namespace, reply_fd: Optional[int] = None) -> Optional[dict]:
    if args.command == "fingerprint":
        return fingerprint_mod.collect(args.root, available_runtimes(_runtime_names(args.runtimes)))
    if args.command == "probe":
        try:
            energy = json.loads(args.energy) if args.energy else None
            probe = probe_energy(energy if isinstance(energy, dict) else None)
        except ValueError as exc:
            probe = {"sensor": "?", "readable": False, "detail": "bad --energy JSON: %s" % _one_line(exc)}
        return {"runtimes": available_runtimes(_runtime_names(args.runtimes)), "energy": probe}
    if args.command == "run":
        for sig in (signal.SIGTERM, signal.SIGHUP):  # stopping the agent still kills the worker and cleans up
            signal.signal(sig, _exit_on_signal)
        return run_job(args.job, reply_fd=reply_fd)
    return None


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _watch_parent() -> None:
    """In the worker: when the agent that started it is gone (killed outright), kill this process group."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_WATCH_S)
        _kill_group(os.getpgid(0))

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(argv: List[str], stdin: bytes, board: Any) -> Tuple[int, bytes, bytes]:
    """One agent command for a board that lives in this process (a replay board): (exit status, stdout, stderr).

    The same commands and replies as ``main``; no file descriptors or signal handlers are touched, so several
    boards may be served from threads of one process."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit:
        return 2, b"", ("bad agent arguments: %s" % " ".join(argv)).encode()
    if args.command == "fingerprint":
        doc = board.fingerprint(board.runtimes(_runtime_names(args.runtimes)))
    elif args.command == "probe":
        try:
            energy = json.loads(args.energy) if args.energy else None
        except ValueError:
            energy = None
        doc = {"runtimes": board.runtimes(_runtime_names(args.runtimes)),
               "energy": board.probe_energy(energy if isinstance(energy, dict) else None)}
    elif args.command == "run":
        doc = run_job(args.job, board=board, job_text=stdin.decode("utf-8", "replace"))
    else:
        return 2, b"", ("the agent command %r does not run in-process" % args.command).encode()
    return 0, (json.dumps(doc, allow_nan=False, separators=(",", ":")) + "\n").encode(), b""


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "worker":
        _watch_parent()
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.job)), "result.json")
        return work(args.job, out)
    if args.command is None:
        _parser().print_usage(sys.stderr)
        return 2
    sys.stdout.flush()
    reply_fd = os.dup(1)
    os.dup2(2, 1)  # whatever a runtime or sensor prints goes to stderr: stdout carries one JSON line
    try:
        doc = _command(args, reply_fd)
    except HostGone:
        return 3  # nobody reads a reply any more; the worker and its group are already gone
    finally:
        sys.stdout.flush()
        os.dup2(reply_fd, 1)
        os.close(reply_fd)
    _emit(doc or {})
    return 0
