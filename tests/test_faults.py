"""Faults against real sshd boards: lost links, hung runs, unreachable and lying boards, corrupted artifacts.

Each test runs the real host code (the CLI or `Board`) against a real sshd; only the board's failure
is staged (a network namespace whose link is cut, a tiny timeout, a `python` that lies).
"""
from __future__ import annotations

import getpass
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from sshd_fixture import QUICK_MEASUREMENT, SSHD, SSHDBoard, _SSHD_CONFIG, _stop, ed25519_pair, tiny_onnx
from modnas.toolkit.cli import main
from modnas.toolkit.spaces import get_space
from modnas.toolkit.store import Store

ARCHS = [
    "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|skip_connect~2|",
    "|skip_connect~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|skip_connect~2|",
]


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, dict | list | None, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def one_line(err: str | bytes) -> str:
    text = err.decode() if isinstance(err, bytes) else err
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {text!r}"
    assert "Traceback" not in text
    return lines[0]


def arch_file(tmp_path: Path, archs: list[str], name: str = "archs.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(archs) + "\n")
    return path


def descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in reversed(psutil.Process(pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line mentions ``text`` (the board's work directory)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(text in arg for arg in proc.info["cmdline"] or []):
                found.append(proc.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


# -- a board behind a network namespace: its link can be cut ------------------------------------
def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def netns_missing() -> str | None:
    """Why a namespace board cannot be made here, or None."""
    if not os.path.exists(SSHD):
        return "openssh-server is not installed"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"mnfprobe{os.getpid() % 100000}"
    done = _ip("netns", "add", probe)
    if done.returncode != 0:
        return f"`ip netns add` is not permitted here ({done.stderr.strip()[:120]}): needs CAP_NET_ADMIN/CAP_SYS_ADMIN"
    _ip("netns", "delete", probe)
    return None


class NetnsBoard:
    """An sshd inside its own network namespace, reached over a veth pair in 10.200.K.0/24."""

    def __init__(self, board: SSHDBoard, ns: str, host_if: str) -> None:
        self.board, self.ns, self.host_if = board, ns, host_if

    def cut(self) -> None:
        done = _ip("link", "set", self.host_if, "down")
        assert done.returncode == 0, done.stderr

    def restore(self) -> None:
        done = _ip("link", "set", self.host_if, "up")
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the route comes back with the link
            try:
                with socket.create_connection((self.board.host, self.board.port), timeout=1.0):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the namespace board did not come back")


@contextmanager
def netns_sshd(root: Path) -> Iterator[NetnsBoard]:
    """A private sshd in a fresh network namespace; the namespace, veth and processes go on exit."""
    tag = f"{os.getpid() % 10000}{random.randint(0, 999)}"
    ns, host_if, ns_if = f"mnf{tag}", f"mnfh{tag}", f"mnfn{tag}"
    subnet = random.randint(1, 250)
    host_ip, ns_ip, port = f"10.200.{subnet}.1", f"10.200.{subnet}.2", 2222
    root.mkdir(parents=True, exist_ok=True)
    proc = None
    try:
        for args in (("netns", "add", ns),
                     ("link", "add", host_if, "type", "veth", "peer", "name", ns_if),
                     ("link", "set", ns_if, "netns", ns),
                     ("addr", "add", f"{host_ip}/24", "dev", host_if),
                     ("link", "set", host_if, "up"),
                     ("-n", ns, "addr", "add", f"{ns_ip}/24", "dev", ns_if),
                     ("-n", ns, "link", "set", ns_if, "up"),
                     ("-n", ns, "link", "set", "lo", "up")):
            done = _ip(*args)
            if done.returncode != 0:
                raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
        host_public = ed25519_pair(root / "host_ed25519")
        client_public = ed25519_pair(root / "client_ed25519")
        (root / "authorized_keys").write_text(client_public + "\n")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        config = _SSHD_CONFIG.format(port=port, root=root).replace("ListenAddress 127.0.0.1",
                                                                    f"ListenAddress {ns_ip}")
        (root / "sshd_config").write_text(config)
        with open(root / "sshd.log", "ab") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, SSHD, "-D", "-f", str(root / "sshd_config"), "-e"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                    start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection((ns_ip, port), timeout=1.0) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"sshd in {ns} did not start: {(root / 'sshd.log').read_text()[-300:]}")
            time.sleep(0.1)
        (root / "known_hosts").write_text(f"[{ns_ip}]:{port} {host_public}\n")
        board = SSHDBoard(host=ns_ip, port=port, user=getpass.getuser(),
                          key_file=root / "client_ed25519", known_hosts=root / "known_hosts",
                          python=sys.executable, pid=proc.pid, root=root,
                          host_key_line=f"[{ns_ip}]:{port} {host_public}")
        yield NetnsBoard(board, ns, host_if)
    finally:
        if proc is not None:
            kill_pids(descendants(proc.pid))
            _stop(proc)
        _ip("link", "delete", host_if)
        _ip("netns", "delete", ns)


# -- 1. lost boards ----------------------------------------------------------------------------------
@pytest.mark.slow  # about a minute; tests/test_cli_profile.py's lost board checks exit 3 and resume fast
def test_network_cut_mid_campaign_exit_3_keeps_results_and_resumes(modnas_home, tmp_path, capsys) -> None:
    why = netns_missing()
    if why:
        pytest.skip(why)
    archs = get_space("nb201").sample(4, seed=23)
    f = arch_file(tmp_path, archs)
    with netns_sshd(tmp_path / "nsboard") as nsb:
        dev = nsb.board.device_yaml(tmp_path, name="loop-cut", measurement=dict(
            QUICK_MEASUREMENT, min_time_s=0.6, timeout_s=5))
        env = dict(os.environ, MODNAS_HOME=str(modnas_home))
        proc = subprocess.Popen([sys.executable, "-m", "modnas.toolkit.cli", "profile", str(dev), "--archs", str(f),
                                 "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        db = modnas_home / "modnas.db"
        try:
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline and proc.poll() is None:
                if db.exists() and len(Store(db).values("loop-cut", "nb201")) >= 2:
                    break
                time.sleep(0.2)
            nsb.cut()
            cut_at = time.monotonic()
            out, err = proc.communicate(timeout=150)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        gave_up_s = time.monotonic() - cut_at
        line = one_line(err)
        assert proc.returncode == 3, line
        assert "loop-cut" in line and ("lost" in line or "timed out" in line), line
        assert gave_up_s < 120, f"gave up only after {gave_up_s:.0f} s"
        store = Store(db)
        kept = store.values("loop-cut", "nb201")
        assert 2 <= len(kept) < len(archs)
        assert store.failures("loop-cut") == [], store.failures("loop-cut")  # the cut is not an arch failure
        assert store.campaigns("loop-cut")[-1]["status"] == "lost"
        nsb.restore()
        code, doc, err2 = run_cli(capsys, "profile", str(dev), "--archs", str(f), "--json", "--quiet")
        assert code == 0, err2
        assert sorted(doc["skipped"]) == sorted(kept)
        assert sorted(r["arch"] for r in doc["measured"]) == sorted(set(archs) - set(kept))
        rows = Store(db).measurement_rows("loop-cut", "nb201")
        assert sorted(r["arch"] for r in rows) == sorted(archs)  # each once: nothing lost, nothing twice


# -- 2. hung runs --------------------------------------------------------------------------------------
def test_hung_run_is_killed_recorded_and_the_campaign_goes_on(sshd_board, modnas_home, tmp_path, capsys) -> None:
    work = tmp_path / "hung-work"
    dev = sshd_board.device_yaml(tmp_path, name="loop-hung", workdir=str(work),
                                 measurement=dict(QUICK_MEASUREMENT, min_time_s=60, timeout_s=1.5))
    f = arch_file(tmp_path, ARCHS)
    start = time.monotonic()
    code, doc, err = run_cli(capsys, "profile", str(dev), "--archs", str(f), "--json", "--quiet")
    assert code == 0, err
    assert time.monotonic() - start < 120
    assert doc["measured"] == [] and sorted(x["arch"] for x in doc["failed"]) == sorted(ARCHS)
    assert all(x["error"].startswith("timeout:") and "killed" in x["error"] for x in doc["failed"])
    store = Store(modnas_home / "modnas.db")
    failures = store.failures("loop-hung")
    assert sorted(x["arch"] for x in failures) == sorted(ARCHS)
    assert {x["error_code"] for x in failures} == {"timeout"}
    assert store.values("loop-hung", "nb201") == {}
    # the worker's whole process group is gone and the work directory holds no job left-overs
    deadline = time.monotonic() + 10
    while processes_mentioning(str(work)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_mentioning(str(work)) == []
    assert sorted(p.name for p in work.iterdir() if p.name.startswith("job-")) == []
    assert (work.stat().st_mode & 0o777) == 0o700


# -- 3. many boards, one unreachable ---------------------------------------------------------------
def test_one_unreachable_board_among_many(sshd_board, modnas_home, tmp_path, capsys) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]  # closed again: nothing listens there
    good = [str(sshd_board.device_yaml(tmp_path, name=f"many-{k}", workdir=str(tmp_path / f"w{k}")))
            for k in range(2)]
    bad = str(sshd_board.device_yaml(tmp_path, name="many-dead", port=dead_port))
    f = arch_file(tmp_path, ARCHS)
    code, doc, err = run_cli(capsys, "profile", good[0], bad, good[1], "--archs", str(f), "--json", "--quiet")
    line = one_line(err)
    assert code == 3 and doc is None
    assert "many-dead" in line and str(dead_port) in line
    store = Store(modnas_home / "modnas.db")
    for k in range(2):
        rows = store.measurement_rows(f"many-{k}", "nb201")
        assert sorted(r["arch"] for r in rows) == sorted(ARCHS)
    assert store.values("many-dead", "nb201") == {}


# -- 4. boards that print garbage or lie ---------------------------------------------------------------
def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_board_whose_python_prints_garbage(sshd_board, modnas_home, tmp_path, capsys) -> None:
    garbage = _script(tmp_path / "garbage-python", "#!/bin/sh\necho 'Welcome! {not json'\necho oops >&2\n")
    dev = sshd_board.device_yaml(tmp_path, name="loop-garbage", python=str(garbage))
    code, doc, err = run_cli(capsys, "profile", str(dev), "--archs", str(arch_file(tmp_path, ARCHS)), "--json")
    line = one_line(err)
    assert code == 3 and doc is None and "loop-garbage" in line and "prepare" in line
    assert Store(modnas_home / "modnas.db").values("loop-garbage", "nb201") == {}


LIAR = """#!{python}
import json, os, sys, subprocess
real = [{python!r}] + sys.argv[1:]
if len(sys.argv) > 2 and sys.argv[2] == "run":
    done = subprocess.run(real, input=sys.stdin.buffer.read(), stdout=subprocess.PIPE)
    doc = json.loads(done.stdout.decode().splitlines()[-1])
    doc["blocks"] = [block[:1] for block in doc["blocks"]]  # claims a run but sends one sample a block
    sys.stdout.write(json.dumps(doc) + "\\n")
    sys.exit(done.returncode)
os.execv(real[0], real)
"""


def test_board_that_lies_about_its_samples(sshd_board, modnas_home, tmp_path, capsys) -> None:
    liar = _script(tmp_path / "liar-python", LIAR.format(python=sys.executable))
    dev = sshd_board.device_yaml(tmp_path, name="loop-liar", python=str(liar))
    code, doc, err = run_cli(capsys, "profile", str(dev), "--archs", str(arch_file(tmp_path, ARCHS)),
                             "--json", "--quiet")
    line = one_line(err)
    assert code == 3 and doc is None
    assert "loop-liar" in line and "bad_reply" in line and "fewer than min_runs=5" in line
    store = Store(modnas_home / "modnas.db")
    assert store.values("loop-liar", "nb201") == {}  # nothing half-written
    assert [x["error_code"] for x in store.failures("loop-liar")] == ["bad_reply"]  # stopped at the first lie
    assert store.campaigns("loop-liar")[-1]["status"] == "lost"


# -- 5. artifacts are checked by hash on the board -----------------------------------------------------
def test_corrupted_artifact_on_the_board_is_uploaded_again(sshd_board, tmp_path) -> None:
    from modnas.profilers.campaign import Board, MeasureJob, sha256_file

    model, shape = tiny_onnx(tmp_path / "tiny.onnx")
    cfg = sshd_board.config(tmp_path / "hash-work", name="loop-hash")
    job = MeasureJob(artifact=model, sha256=sha256_file(model), runtime="onnxruntime", threads=1,
                     input_shape=shape, measurement=QUICK_MEASUREMENT, timeout_s=60)
    with Board(cfg) as board:
        first = board.measure(job)
        assert first.ok, first.error
        remote = Path(board.artifact_path(job))
        remote.write_bytes(b"tampered" + remote.read_bytes()[8:])  # changed on the board between runs
        assert sha256_file(remote) != job.sha256
        second = board.measure(job)
        assert second.ok, second.error  # refused the tampered copy, uploaded again, measured
        assert sha256_file(remote) == job.sha256
        # a copy that cannot be replaced (a directory in its place) fails clearly, once
        remote.unlink()
        remote.mkdir()
        (remote / "x").write_text("not a model")
        third = board.measure(job)
        assert not third.ok and third.error_code in ("upload_failed", "missing_artifact", "hash_mismatch")
        assert "\n" not in (third.error or "")


def test_local_artifact_changed_after_hashing_is_refused(sshd_board, tmp_path) -> None:
    from modnas.profilers.campaign import Board, MeasureJob, sha256_file

    model, shape = tiny_onnx(tmp_path / "tiny2.onnx", channels=4)
    job = MeasureJob(artifact=model, sha256=sha256_file(model), runtime="onnxruntime", threads=1,
                     input_shape=shape, measurement=QUICK_MEASUREMENT, timeout_s=60)
    model.write_bytes(model.read_bytes() + b"\0")
    with Board(sshd_board.config(tmp_path / "hash-work2", name="loop-hash2")) as board:
        result = board.measure(job)
        assert not result.ok and result.error_code == "hash_mismatch"
        assert not Path(board.artifact_path(job)).exists()  # never uploaded, never run



def test_full_disk_on_the_board_fails_the_upload_clearly(sshd_board, tmp_path) -> None:
    from modnas.profilers.campaign import Board, MeasureJob, sha256_file

    work = tmp_path / "small-disk"
    work.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k,mode=0700", "tmpfs", str(work)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here (needs CAP_SYS_ADMIN): {done.stderr.strip()[:100]}")
    try:
        small, small_shape = tiny_onnx(tmp_path / "small.onnx", channels=4)
        big, big_shape = tiny_onnx(tmp_path / "big.onnx", channels=64, depth=3)
        assert small.stat().st_size < 16 * 1024 < 200 * 1024 < big.stat().st_size
        jobs = [MeasureJob(artifact=path, sha256=sha256_file(path), runtime="onnxruntime", threads=1,
                           input_shape=shape, measurement=QUICK_MEASUREMENT, timeout_s=60)
                for path, shape in ((big, big_shape), (small, small_shape))]
        with Board(sshd_board.config(work, name="loop-full")) as board:
            full = board.measure(jobs[0])
            assert not full.ok and full.error_code == "upload_failed"
            assert "disk full?" in full.error and "KiB free" in full.error and "\n" not in full.error
            assert [p.name for p in (work / "artifacts").iterdir()] == []  # no partial upload left behind
            fits = board.measure(jobs[1])  # the board goes on with what fits; a worker that cannot write says why
            assert fits.ok or (fits.error_code == "worker_failed" and "disk full?" in fits.error), fits.error
    finally:
        subprocess.run(["umount", str(work)], capture_output=True)


# -- 4. bad input everywhere: one line, exit 2, nothing half-written ---------------------------------------
def _store_rows(home: Path) -> dict[str, int]:
    import sqlite3

    db = home / "modnas.db"
    if not db.exists():
        return {}
    with sqlite3.connect(db) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("devices", "measurements", "failures", "campaigns")}


def test_bad_device_and_architecture_input(modnas_home, tmp_path, capsys) -> None:
    good_arch = arch_file(tmp_path, ARCHS[:1], "good.txt")
    cases = {
        "malformed.yaml": ("name: [unclosed\n", "malformed YAML"),
        "list.yaml": ("- a\n- b\n", "expected a mapping"),
        "unknown.yaml": ("name: d\nhost: 127.0.0.1\ncolour: red\n", "'colour'"),
        "noname.yaml": ("host: 127.0.0.1\n", "'name'"),
        "port.yaml": ("name: d\nhost: 127.0.0.1\nport: 70000\n", "port"),
        "binary.yaml": (None, "device file"),
        "measure.yaml": ("name: d\nmeasurement: {repeats: 0}\n", "measurement.repeats"),
    }
    for name, (text, expect) in cases.items():
        path = tmp_path / name
        if text is None:
            path.write_bytes(b"\xff\xfe\x00garbage")
        else:
            path.write_text(text)
        code, doc, err = run_cli(capsys, "profile", str(path), "--archs", str(good_arch), "--json")
        line = one_line(err)
        assert code == 2 and doc is None and expect in line, (name, line)
    code, _, err = run_cli(capsys, "profile", str(tmp_path / "missing.yaml"), "--json")
    assert code == 2 and "no such device file" in one_line(err)
    dev = tmp_path / "ok.yaml"
    dev.write_text("name: ok\nhost: 127.0.0.1\nport: 1\n")
    for spec, expect in (("random:0", "random:N"), ("random:x", "random:N"), (str(tmp_path / "nope.txt"), "nope.txt"),
                         (str(arch_file(tmp_path, ["# only a comment"], "empty.txt")), "no architectures"),
                         (str(arch_file(tmp_path, [ARCHS[0], "|bogus~0|+|"], "bad.txt")), "bad.txt:2")):
        code, _, err = run_cli(capsys, "profile", str(dev), "--archs", spec, "--json")
        assert code == 2 and expect in one_line(err), (spec, err)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\xfa\x00")
    code, _, err = run_cli(capsys, "profile", str(dev), "--archs", str(binary), "--json")
    assert code == 2 and "bin.txt" in one_line(err)
    code, _, err = run_cli(capsys, "export", "|nor_conv_3x3~0|+|", "--out", str(tmp_path / "ex"), "--json")
    assert code == 2 and one_line(err)
    code, _, err = run_cli(capsys, "export", "ks=3;e=3;d=2;r=9", "--space", "ofa_mbv3", "--out", str(tmp_path / "ex"))
    assert code == 2 and one_line(err)
    assert _store_rows(modnas_home).get("devices", 0) == 0 and _store_rows(modnas_home).get("measurements", 0) == 0


def test_bad_csv_imports(modnas_home, tmp_path, capsys) -> None:
    refs = get_space("nb201").reference_archs()
    cases = {
        "empty.csv": (b"", "empty file"),
        "header.csv": (b"arch,latency\nx,1\n", "header"),
        "binary.csv": (b"\xff\xfe\x00\x01\x02", "UTF-8"),
        "allbad.csv": (b"arch,value\n|bogus|,1\n" + refs[0].encode() + b",-1\n" + refs[1].encode() + b",nan\n",
                       "nothing to import"),
    }
    for name, (data, expect) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        code, doc, err = run_cli(capsys, "import", str(path), "--device", "imp", "--json")
        assert code == 2 and doc is None and expect in one_line(err), (name, err)
    code, _, err = run_cli(capsys, "import", str(tmp_path / "none.csv"), "--device", "imp", "--json")
    assert code == 2 and "no such file" in one_line(err)
    code, _, err = run_cli(capsys, "import", str(tmp_path / "empty.csv"), "--device", "bad name;x", "--json")
    assert code == 2 and "device name" in one_line(err)
    assert _store_rows(modnas_home).get("measurements", 0) == 0
    # a mixed file keeps the good rows and names every bad line
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("arch,value\n" + "".join(f"{a},{1 + k}\n" for k, a in enumerate(refs)) + "|x|,3\n" +
                     f"{refs[0]},0\n{refs[1]},1,2\n")
    code, doc, err = run_cli(capsys, "import", str(mixed), "--device", "imp", "--json")
    assert code == 0, err
    assert doc["imported"] == len(refs) and [r["line"] for r in doc["rejected"]] == [12, 13, 14]
    assert len(Store(modnas_home / "modnas.db").values("imp", "nb201")) == len(refs)


def test_bad_data_and_run_directories(modnas_home, tmp_path, capsys) -> None:
    from modnas.toolkit.search.run import default_run_path

    afile = tmp_path / "afile"
    afile.write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv in (["predictor", "eval", "--data", str(tmp_path / "missing")],
                 ["predictor", "eval", "--data", str(afile)],
                 ["predictor", "eval", "--data", str(empty)], ["predictor", "fit", "--data", str(empty)],
                 ["search", "--data", str(empty), "--out", str(tmp_path / "r")]):
        code, _, err = run_cli(capsys, *argv, "--json")
        assert code == 2 and one_line(err), argv
    # a device with an embedding, from imported reference measurements
    refs = get_space("nb201").reference_archs()
    csv_path = tmp_path / "refs.csv"
    csv_path.write_text("arch,value\n" + "".join(f"{a},{1 + 0.1 * k}\n" for k, a in enumerate(refs)))
    assert run_cli(capsys, "import", str(csv_path), "--device", "imp", "--json")[0] == 0
    shipped = default_run_path()
    bad_json = tmp_path / "run_json"
    shutil.copytree(shipped, bad_json)
    (bad_json / "config.json").write_text("{not json")
    not_run = tmp_path / "run_list"
    shutil.copytree(shipped, not_run)
    (not_run / "config.json").write_text("[1, 2]")
    truncated = tmp_path / "run_trunc"
    shutil.copytree(shipped, truncated)
    tensors = truncated / "hypernet.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-100])
    header = tmp_path / "run_header"
    shutil.copytree(shipped, header)
    (header / "hypernet.safetensors").write_bytes(b"\xff" * 8)
    cases = [(tmp_path / "missing-run", "missing-run"), (afile, "afile"), (empty, "config.json"),
             (bad_json, "not JSON"), (not_run, "config.json"), (truncated, "hypernet.safetensors"),
             (header, "hypernet.safetensors")]
    for run_dir, expect in cases:
        for argv in (["pareto", "--device", "imp"], ["select", "--device", "imp", "--budget-ms", "5"],
                     ["export", ARCHS[0], "--out", str(tmp_path / "ex")]):
            code, doc, err = run_cli(capsys, *argv, "--run", str(run_dir), "--json")
            assert code == 2 and doc is None and expect in one_line(err), (argv, run_dir, err)
    code, doc, err = run_cli(capsys, "pareto", "--device", "imp", "--run", str(shipped), "--preferences", "2", "--json")
    assert code == 0 and len(doc) >= 1, err
