"""Faults against real loopback sshd boards: is each one handled, how, how fast, and is anything lost?

Every scenario runs `modnas profile` as a subprocess (real exit codes, real SQLite) against a private
sshd on loopback (or inside a network namespace for the link cut), stages one fault, and then runs
the same command again to resume. For each: handled (yes/no), exit code, seconds from the fault to
the command giving up, measurements lost (goal 0 everywhere), and the one line the user saw.
Prints JSON on stdout and a Markdown table on stderr.  Usage (as root for the namespace and tmpfs
scenarios; others are skipped with the reason):
    python benchmarks/faults.py [--out results.json] [--md table.md] [--only NAME,...]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from sshd_fixture import QUICK_MEASUREMENT, SSHDBoard, loopback_sshd  # noqa: E402
from test_faults import LIAR, kill_pids, netns_missing, netns_sshd, processes_mentioning  # noqa: E402

from modnas.toolkit.spaces import get_space  # noqa: E402
from modnas.toolkit.store import Store  # noqa: E402

SPACE = get_space("nb201")
ARCHS = SPACE.sample(4, seed=5)
SLOW = dict(QUICK_MEASUREMENT, min_time_s=0.6, timeout_s=5)


class Scenario:
    """One staged fault: its home (store), its arch file and the CLI runs."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name, self.tmp = name, tmp / name
        self.tmp.mkdir(parents=True)
        self.home = self.tmp / "home"
        self.home.mkdir()
        self.archs_file = self.tmp / "archs.txt"
        self.archs_file.write_text("\n".join(ARCHS) + "\n")
        self.env = dict(os.environ, MODNAS_HOME=str(self.home))

    @property
    def db(self) -> Path:
        return self.home / "modnas.db"

    def device(self, board: SSHDBoard, name: str, **overrides: Any) -> Path:
        overrides.setdefault("workdir", str(self.tmp / f"work-{name}"))
        overrides.setdefault("measurement", SLOW)
        return board.device_yaml(self.tmp, name=name, **overrides)

    def start(self, *devices: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "modnas.toolkit.cli", "profile", *map(str, devices), "--archs",
                                 str(self.archs_file), "--quiet", "--json"], env=self.env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run(self, *devices: Path, timeout: float = 300) -> tuple[int, Any, str, float]:
        start = time.monotonic()
        proc = self.start(*devices)
        out, err = proc.communicate(timeout=timeout)
        doc = json.loads(out) if out.strip() else None
        return proc.returncode, doc, err.decode().strip(), time.monotonic() - start

    def stored(self, device: str) -> dict[str, float]:
        return Store(self.db).values(device, SPACE.name) if self.db.exists() else {}

    def rows(self, device: str) -> int:
        return len(Store(self.db).measurement_rows(device, SPACE.name)) if self.db.exists() else 0

    def wait_stored(self, device: str, n: int, proc: subprocess.Popen, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if len(self.stored(device)) >= n:
                return
            time.sleep(0.2)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err.decode().strip()


def _lost(sc: Scenario, device: str, kept: dict[str, float]) -> int:
    """Measurements lost: kept results that vanished, archs still missing after resuming, duplicates."""
    after = sc.stored(device)
    vanished = sum(1 for arch, value in kept.items() if after.get(arch) != value)
    return vanished + len(set(ARCHS) - set(after)) + (sc.rows(device) - len(after))


def shorten(text: str, limit: int) -> str:
    """Head and tail of a long message: the cause usually sits at the end."""
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit * 2 // 3 - 2]} … {text[-(limit // 3 - 1):]}"


def _row(name: str, handled: bool, code: int | None, gave_up_s: float | None, lost: int | None, message: str,
         expected: str, **extra: Any) -> dict[str, Any]:
    return {"fault": name, "handled": handled, "exit_code": code,
            "gave_up_s": None if gave_up_s is None else round(gave_up_s, 1), "lost": lost,
            "expected": expected, "message": shorten(message, 400), **extra}


def _one_line(err: str) -> bool:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return len(lines) == 1 and "Traceback" not in err


# -- the scenarios -----------------------------------------------------------------------------------------
def board_killed(tmp: Path) -> dict[str, Any]:
    sc = Scenario("board_killed", tmp)
    with loopback_sshd(sc.tmp / "sshd") as board:
        dev = sc.device(board, "killed")
        proc = sc.start(dev)
        sc.wait_stored("killed", 2, proc)
        kill_pids(board.session_pids())  # the board reboots: every session dies, sshd stays
        fault_at = time.monotonic()
        code, err = _finish(proc)
        gave_up = time.monotonic() - fault_at
        kept = sc.stored("killed")
        code2, doc2, err2, _ = sc.run(dev)
        lost = _lost(sc, "killed", kept)
    handled = code == 3 and "killed" in err and _one_line(err) and code2 == 0 and \
        sorted(doc2["skipped"]) == sorted(kept)
    return _row("board killed mid-campaign", handled, code, gave_up, lost, err, "exit 3, resume measures the rest",
                kept_at_fault=len(kept))


def network_cut(tmp: Path) -> dict[str, Any]:
    why = netns_missing()
    if why:
        return _row("network cut (netns)", False, None, None, None, f"skipped: {why}", "exit 3", skipped=True)
    sc = Scenario("network_cut", tmp)
    with netns_sshd(sc.tmp / "ns") as nsb:
        dev = sc.device(nsb.board, "cut")
        proc = sc.start(dev)
        sc.wait_stored("cut", 2, proc)
        nsb.cut()
        fault_at = time.monotonic()
        code, err = _finish(proc)
        gave_up = time.monotonic() - fault_at
        kept = sc.stored("cut")
        failures = len(Store(sc.db).failures("cut"))
        nsb.restore()
        code2, doc2, err2, _ = sc.run(dev)
        lost = _lost(sc, "cut", kept)
    handled = code == 3 and "cut" in err and _one_line(err) and failures == 0 and code2 == 0
    return _row("network cut (netns, link down)", handled, code, gave_up, lost, err,
                "exit 3 within ~60 s, resume measures the rest", kept_at_fault=len(kept), failures_blamed=failures)


def hung_runtime(tmp: Path) -> dict[str, Any]:
    sc = Scenario("hung_runtime", tmp)
    with loopback_sshd(sc.tmp / "sshd") as board:
        work = sc.tmp / "work-hung"
        dev = sc.device(board, "hung", workdir=str(work), measurement=dict(QUICK_MEASUREMENT, min_time_s=60,
                                                                            timeout_s=1.5))
        code, doc, err, seconds = sc.run(dev)
        time.sleep(0.5)
        leftovers = processes_mentioning(str(work))
        jobs = [p.name for p in work.iterdir() if p.name.startswith("job-")] if work.is_dir() else ["?"]
        failures = Store(sc.db).failures("hung")
    handled = (code == 0 and doc is not None and len(doc["failed"]) == len(ARCHS) and not leftovers and not jobs
               and {f["error_code"] for f in failures} == {"timeout"} and len(failures) == len(ARCHS))
    return _row("hung runtime (timeout_s << run)", handled, code, seconds / len(ARCHS), 0,
                doc["failed"][0]["error"] if doc and doc["failed"] else err,
                "each arch killed with its group, recorded failed, campaign goes on",
                leftover_processes=len(leftovers), leftover_job_dirs=len(jobs))


def corrupted_agent_output(tmp: Path) -> dict[str, Any]:
    sc = Scenario("corrupted_output", tmp)
    with loopback_sshd(sc.tmp / "sshd") as board:
        liar = sc.tmp / "liar-python"
        liar.write_text(LIAR.format(python=sys.executable))
        liar.chmod(0o755)
        garbage = sc.tmp / "garbage-python"
        garbage.write_text("#!/bin/sh\necho 'Welcome! {not json'\n")
        garbage.chmod(0o755)
        code, doc, err, seconds = sc.run(sc.device(board, "liar", python=str(liar), measurement=QUICK_MEASUREMENT))
        code_g, _, err_g, _ = sc.run(sc.device(board, "garbage", python=str(garbage)))
        stored = len(sc.stored("liar")) + len(sc.stored("garbage"))
    failures = Store(sc.db).failures("liar")
    handled = (code == 3 and _one_line(err) and "bad_reply" in err and stored == 0
               and [f["error_code"] for f in failures] == ["bad_reply"] and code_g == 3 and _one_line(err_g))
    return _row("corrupted agent output (lies / garbage)", handled, code, seconds, 0,
                f"{err} | garbage board: exit {code_g}: {err_g}",
                "exit 3 at the first lying reply (recorded bad_reply), nothing stored; garbage board exit 3")


def disk_full(tmp: Path) -> dict[str, Any]:
    sc = Scenario("disk_full", tmp)
    work = sc.tmp / "small-tmpfs"
    work.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k,mode=0700", "tmpfs", str(work)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return _row("disk-full work directory (tmpfs)", False, None, None, None,
                    f"skipped: mount -t tmpfs is not permitted here ({done.stderr.strip()[:100]})", "", skipped=True)
    try:
        with loopback_sshd(sc.tmp / "sshd") as board:
            dev = sc.device(board, "full", workdir=str(work))
            code, doc, err, seconds = sc.run(dev)
            parts = [p.name for p in (work / "artifacts").iterdir()] if (work / "artifacts").is_dir() else []
            stored = sc.stored("full")
            failures = Store(sc.db).failures("full")
    finally:
        subprocess.run(["umount", str(work)], capture_output=True)
    full = [f for f in failures if f["error_code"] == "upload_failed"]
    msg = doc["failed"][0]["error"] if doc and doc["failed"] else err
    no_partial = not any(".part-" in p for p in parts)
    if code == 0:
        handled = no_partial and len(stored) + len(full) == len(ARCHS)
    else:
        handled = code == 3 and _one_line(err) and no_partial
    return _row("disk-full work directory (96 KiB tmpfs)", handled, code, seconds, 0, msg,
                "uploads that do not fit fail per arch (upload_failed), no partial files left",
                stored=len(stored), upload_failed=len(full), partial_files=sum(".part-" in p for p in parts))


def concurrent_boards(tmp: Path) -> dict[str, Any]:
    sc = Scenario("concurrent", tmp)
    with loopback_sshd(sc.tmp / "sshd") as board:
        devs = [sc.device(board, f"par{k}", measurement=QUICK_MEASUREMENT) for k in range(3)]
        code, doc, err, seconds = sc.run(*devs)
        ok = code == 0 and isinstance(doc, list) and [d["device"] for d in doc] == ["par0", "par1", "par2"]
        lost = 0
        for k in range(3):
            values = sc.stored(f"par{k}")
            lost += len(set(ARCHS) - set(values)) + (sc.rows(f"par{k}") - len(values))
            if ok:  # each board's stored numbers are its own
                ok = ok and all(values[r["arch"]] == r["latency_ms"]["median"] for r in doc[k]["measured"])
    return _row("3 boards at once", ok and lost == 0, code, seconds, lost, err or "ok",
                "every result stored once, for the right board")


def one_unreachable(tmp: Path) -> dict[str, Any]:
    sc = Scenario("unreachable", tmp)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    with loopback_sshd(sc.tmp / "sshd") as board:
        devs = [sc.device(board, f"ok{k}", measurement=QUICK_MEASUREMENT) for k in range(2)]
        bad = sc.device(board, "dead", port=dead_port)
        code, doc, err, seconds = sc.run(devs[0], bad, devs[1])
        lost = sum(len(set(ARCHS) - set(sc.stored(f"ok{k}"))) for k in range(2))
    handled = code == 3 and "dead" in err and _one_line(err) and lost == 0
    return _row("1 unreachable board among 3", handled, code, seconds, lost, err,
                "the others' results all stored, exit 3 naming the bad board")


def corrupted_artifact(tmp: Path) -> dict[str, Any]:
    from sshd_fixture import tiny_onnx

    from modnas.profilers.campaign import Board, MeasureJob, sha256_file

    sc = Scenario("corrupted_artifact", tmp)
    with loopback_sshd(sc.tmp / "sshd") as board:
        model, shape = tiny_onnx(sc.tmp / "tiny.onnx")
        job = MeasureJob(artifact=model, sha256=sha256_file(model), runtime="onnxruntime", threads=1,
                         input_shape=shape, measurement=QUICK_MEASUREMENT, timeout_s=60)
        with Board(board.config(sc.tmp / "work")) as b:
            first = b.measure(job)
            remote = Path(b.artifact_path(job))
            remote.write_bytes(b"tampered" + remote.read_bytes()[8:])
            start = time.monotonic()
            second = b.measure(job)
            seconds = time.monotonic() - start
            restored = sha256_file(remote) == job.sha256
    handled = first.ok and second.ok and restored
    return _row("artifact changed on the board", handled, None, seconds, 0,
                "refused by hash on the board, uploaded again, measured" if handled else str(second.error),
                "hash_mismatch -> re-upload once -> measured")


SCENARIOS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "board_killed": board_killed,
    "network_cut": network_cut,
    "hung_runtime": hung_runtime,
    "corrupted_output": corrupted_agent_output,
    "disk_full": disk_full,
    "concurrent": concurrent_boards,
    "unreachable": one_unreachable,
    "corrupted_artifact": corrupted_artifact,
}


def markdown(rows: list[dict[str, Any]]) -> str:
    out = ["| fault | handled | exit code | time to give up (s) | measurements lost | what the user saw |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        handled = "skipped" if r.get("skipped") else ("yes" if r["handled"] else "**no**")
        msg = shorten(r["message"], 200).replace("|", "\\|")
        out.append(f"| {r['fault']} | {handled} | {'-' if r['exit_code'] is None else r['exit_code']} | "
                   f"{'-' if r['gave_up_s'] is None else r['gave_up_s']} | "
                   f"{'-' if r['lost'] is None else r['lost']} | {msg} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="write the JSON here too")
    ap.add_argument("--md", default=None, help="write the Markdown table here too")
    ap.add_argument("--only", default=None, help=f"comma-separated: {','.join(SCENARIOS)}")
    args = ap.parse_args()
    names = [n for n in (args.only.split(",") if args.only else SCENARIOS) if n]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="modnas-faults-") as tmp:
        for name in names:
            start = time.monotonic()
            try:
                row = SCENARIOS[name](Path(tmp))
            except Exception as exc:  # a scenario that breaks is a result, not a crash of the benchmark
                row = _row(name, False, None, None, None, f"scenario error: {type(exc).__name__}: {exc}", "")
            row["message"] = row["message"].replace(tmp, "$TMP")
            row["scenario_s"] = round(time.monotonic() - start, 1)
            rows.append(row)
            print(f"{name}: handled={row['handled']} exit={row['exit_code']} gave_up_s={row['gave_up_s']} "
                  f"lost={row['lost']} ({row['scenario_s']} s)", file=sys.stderr, flush=True)
    doc = {"archs": len(ARCHS), "measurement": SLOW, "rows": rows,
           "all_handled": all(r["handled"] or r.get("skipped") for r in rows),
           "lost_total": sum(r["lost"] or 0 for r in rows)}
    table = markdown(rows)
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    if args.md:
        Path(args.md).write_text(table)
    print(json.dumps(doc, indent=2))
    print(table, file=sys.stderr)


if __name__ == "__main__":
    main()
