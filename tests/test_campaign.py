"""Boards end to end: the agent over a real loopback sshd (and locally) measuring real ONNX models."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

import onnxruntime
import pytest
from sshd_fixture import QUICK_MEASUREMENT, leftover_processes, tiny_onnx

from modnas.profilers.campaign import BadReply, Board, MeasureJob, MeasureResult, parse_reply
from modnas.profilers.connection import ConnectionLost
from modnas.profilers.pack import build_agent
from modnas.toolkit.errors import BadInput, BoardError


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[int], str]]:
    out = {}
    base = tmp_path_factory.mktemp("models")
    for name, channels, depth in (("small", 4, 1), ("deeper", 8, 3)):
        path, shape = tiny_onnx(base / f"{name}.onnx", channels=channels, depth=depth)
        out[name] = (path, shape, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def make_job(model: tuple[Path, list[int], str], **overrides: Any) -> MeasureJob:
    path, shape, sha = model
    fields: dict[str, Any] = dict(artifact=path, sha256=sha, runtime="onnxruntime", threads=1, input_shape=shape,
                                  measurement=dict(QUICK_MEASUREMENT), timeout_s=60.0)
    fields.update(overrides)
    return MeasureJob(**fields)


def assert_good(result: MeasureResult, job: MeasureJob) -> None:
    assert isinstance(result, MeasureResult)
    assert result.ok is True and result.error_code is None, (result.error_code, result.error)
    assert len(result.blocks) == job.measurement["repeats"]
    assert all(len(b) >= job.measurement["min_runs"] for b in result.blocks)
    assert result.summary is not None and result.summary["n"] == sum(len(b) for b in result.blocks)
    assert 0 < result.summary["median"] <= result.summary["p90"]
    assert result.runtime == "onnxruntime" and result.runtime_version == onnxruntime.__version__
    assert result.agent_seconds is not None and 0 < result.agent_seconds <= result.wall_seconds


def leftovers(workdir: Path) -> list[str]:
    """Everything in the work directory besides the agent and the stored artifacts."""
    keep = {build_agent().filename, "artifacts"}
    return sorted(p.name for p in workdir.iterdir() if p.name not in keep)


def test_profile_models_over_ssh(sshd_board, models, tmp_path: Path) -> None:
    workdir = tmp_path / "board" / "work"
    cfg = sshd_board.config(workdir)
    with Board(cfg) as board:
        agent_path = board.prepare()
        assert agent_path == f"{workdir}/{build_agent().filename}"
        assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
        assert stat.S_IMODE((workdir / "artifacts").stat().st_mode) == 0o700
        assert hashlib.sha256(Path(agent_path).read_bytes()).hexdigest() == build_agent().sha256
        fp = board.fingerprint()
        assert fp["hostname"] and fp["cores"] >= 1 and fp["python"] == ".".join(map(str, sys.version_info[:3]))
        assert fp["runtimes"] == {"onnxruntime": {"available": True, "detail": onnxruntime.__version__}}
        probe = board.probe(runtimes=["onnxruntime"])
        assert probe["energy"]["sensor"] == "none" and probe["runtimes"]["onnxruntime"]["available"] is True
        for name in ("small", "deeper"):
            job = make_job(models[name])
            result = board.measure(job)
            assert_good(result, job)
            stored = workdir / "artifacts" / f"{models[name][2]}.onnx"
            assert stored.read_bytes() == models[name][0].read_bytes()
    agent_inode = Path(agent_path).stat().st_ino
    with Board(cfg) as again:
        assert again.prepare() == agent_path
    assert Path(agent_path).stat().st_ino == agent_inode  # agent already there with the right hash
    assert leftovers(workdir) == []


def test_local_board_from_a_device_file(sshd_board, models, tmp_path: Path) -> None:
    from modnas.toolkit.config import load_device

    path = sshd_board.device_yaml(tmp_path, host="local", name="here")
    cfg = load_device(str(path))
    with Board(cfg) as board:
        job = make_job(models["small"], runtime=cfg.runtime, threads=cfg.threads)
        result = board.measure(job)
    assert_good(result, job)
    assert leftovers(Path(cfg.workdir)) == []


def test_tampered_artifact_on_the_board_is_refused(sshd_board, models, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    with Board(sshd_board.config(workdir)) as board:
        job = make_job(models["small"])
        assert board.measure(job).ok
        stored = Path(board.artifact_path(job))
        inode = stored.stat().st_ino
        assert board.measure(job).ok
        assert stored.stat().st_ino == inode  # stored by hash: not uploaded again
        stored.write_bytes(models["deeper"][0].read_bytes())  # the board's copy is swapped
        result = board.measure(job)  # the agent refuses it (hash_mismatch); the host uploads it again, once
    assert result.ok, result.error
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == job.sha256 and stored.stat().st_ino != inode
    assert leftovers(workdir) == []


def test_local_hash_mismatch_never_reaches_the_board(sshd_board, models, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    with Board(sshd_board.config(workdir)) as board:
        wrong = hashlib.sha256(b"not this model").hexdigest()
        result = board.measure(make_job(models["small"], sha256=wrong))
    assert result.error_code == "hash_mismatch"
    assert not (workdir / "artifacts" / f"{wrong}.onnx").exists()


def test_hung_measurement_is_killed_and_the_workdir_left_clean(sshd_board, models, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    slow = dict(QUICK_MEASUREMENT, min_time_s=300.0, repeats=1)
    with Board(sshd_board.config(workdir)) as board:
        result = board.measure(make_job(models["deeper"], measurement=slow, timeout_s=1.5))
        assert (result.ok, result.error_code) == (False, "timeout"), result.error
        assert leftovers(workdir) == []
        assert_good(board.measure(make_job(models["small"])), make_job(models["small"]))  # board still usable
    assert leftover_processes(str(workdir)) == []


def _reply(**changes: Any) -> dict:
    doc = {"ok": True, "error_code": None, "error": None, "blocks": [[1.0] * 5, [1.5] * 6], "runtime": "onnxruntime",
           "runtime_version": "1.0", "agent_seconds": 0.1, "energy": None}
    doc.update(changes)
    return doc


BAD_REPLIES = {
    "empty": b"",
    "not json": b"hello from a confused board\n",
    "not utf-8": b"\xff\xfe\n",
    "two lines": b"warming up\n" + json.dumps(_reply()).encode(),
    "a list": b"[1, 2]",
    "too few samples": json.dumps(_reply(blocks=[[1.0] * 5, [1.0] * 4])).encode(),
    "missing block": json.dumps(_reply(blocks=[[1.0] * 5])).encode(),
    "nan sample": json.dumps(_reply(blocks=[[1.0] * 5, [float("nan")] * 5])).encode(),
    "infinite sample": json.dumps(_reply(blocks=[[1.0] * 5, [float("inf")] * 5])).encode(),
    "negative sample": json.dumps(_reply(blocks=[[1.0] * 5, [-1.0] * 5])).encode(),
    "zero sample": json.dumps(_reply(blocks=[[1.0] * 5, [0.0] * 5])).encode(),
    "string samples": json.dumps(_reply(blocks=[["1.0"] * 5] * 2)).encode(),
    "bool samples": json.dumps(_reply(blocks=[[True] * 5] * 2)).encode(),
    "ok with error code": json.dumps(_reply(error_code="timeout")).encode(),
    "failure without code": json.dumps(_reply(ok=False, blocks=[])).encode(),
    "wrong runtime": json.dumps(_reply(runtime="tvm")).encode(),
    "no agent_seconds": json.dumps({k: v for k, v in _reply().items() if k != "agent_seconds"}).encode(),
    "ok as string": json.dumps(_reply(ok="true")).encode(),
    "energy as list": json.dumps(_reply(energy=[1])).encode(),
}


@pytest.mark.parametrize("why", sorted(BAD_REPLIES))
def test_reply_protocol_is_checked_strictly(why: str, models) -> None:
    job = make_job(models["small"])
    with pytest.raises(BadReply):
        parse_reply(BAD_REPLIES[why], job)


def test_well_formed_replies_pass(models) -> None:
    job = make_job(models["small"])
    doc = parse_reply(json.dumps(_reply()).encode() + b"\n", job)
    assert doc["blocks"] == [[1.0] * 5, [1.5] * 6]
    failed = parse_reply(json.dumps(_reply(ok=False, error_code="timeout", error="slow", blocks=[])).encode(), job)
    assert failed["error_code"] == "timeout"


def test_a_board_that_prints_garbage_or_lies_gets_bad_reply(sshd_board, models, tmp_path: Path) -> None:
    with Board(sshd_board.config(tmp_path / "work")) as board:
        agent = Path(board.prepare())
        job = make_job(models["small"])
        liar = "import json; print(json.dumps(%r))" % (_reply(blocks=[[1.0, 1.1]] * 2),)
        for script in ("print('hello from a confused board')", liar, "import sys; sys.exit(1)"):
            agent.write_text(script)
            result = board.measure(job)
            assert (result.ok, result.error_code, result.summary, result.blocks) == (False, "bad_reply", None, [])
            assert result.error and "\n" not in result.error
        agent.write_text("import json; print(json.dumps(%r))" % (_reply(),))
        assert board.measure(job).summary["n"] == 11  # the same checks pass a well-formed reply through


def test_failed_model_is_a_typed_result(sshd_board, tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage")
    job = MeasureJob(junk, hashlib.sha256(junk.read_bytes()).hexdigest(), "onnxruntime", 1, [1, 3, 8, 8],
                     dict(QUICK_MEASUREMENT), timeout_s=60)
    with Board(sshd_board.config(tmp_path / "work")) as board:
        result = board.measure(job)
        assert (result.ok, result.error_code) == (False, "load_failed")
        assert result.runtime_version == onnxruntime.__version__ and result.summary is None


def test_connection_lost_mid_measurement_raises_board_error(sshd_board, models, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    outcome: dict[str, Any] = {}
    with Board(sshd_board.config(workdir, name="dropper")) as board:
        board.prepare()
        job = make_job(models["small"], measurement=dict(QUICK_MEASUREMENT, min_time_s=8.0, repeats=1))

        def measure() -> None:
            try:
                outcome["result"] = board.measure(job)
            except BaseException as exc:  # the thread hands its exception to the test
                outcome["error"] = exc

        thread = threading.Thread(target=measure)
        thread.start()
        deadline = time.monotonic() + 20
        while not list(workdir.glob("job-*")) and time.monotonic() < deadline:  # the agent is at work
            time.sleep(0.05)
        for pid in sshd_board.session_pids():  # the board side goes away: sessions, agent and worker
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert "result" not in outcome, outcome
    assert isinstance(outcome["error"], ConnectionLost), repr(outcome["error"])
    assert isinstance(outcome["error"], BoardError)
    assert str(outcome["error"]).startswith(f"board dropper (127.0.0.1:{sshd_board.port}): connection lost")


def test_unsafe_workdir_and_bad_jobs_are_refused(sshd_board, models, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with Board(sshd_board.config(shared)) as board:
        with pytest.raises(BoardError, match="writable by other users"):
            board.prepare()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o777  # an existing directory is never re-moded
    with pytest.raises(BadInput, match="workdir"):
        Board(sshd_board.config("relative/work", host="local"))
    with pytest.raises(BadInput, match="sha256"):
        make_job(models["small"], sha256="abc")
    with pytest.raises(BadInput, match="min_runs"):
        make_job(models["small"], measurement=dict(QUICK_MEASUREMENT, min_runs=0))
    with pytest.raises(BadInput, match="input_shape"):
        make_job(models["small"], input_shape=[1, -3])
    with pytest.raises(BadInput, match="runtime"):
        make_job(models["small"], runtime="onnx; rm -rf /")
    assert json.loads(json.dumps(vars(make_job(models["small"])), default=str))  # plain data only
