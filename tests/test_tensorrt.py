"""TensorRT: trtexec command lines and build settings, parsing of real trtexec output, the build over a
board connection, the board runtime's trtexec fallback, and the clear error where TensorRT is absent.

The fixtures under tests/fixtures/trtexec_*.txt are real trtexec output copied from public posts (the
first line of each names its source):
- trtexec_8.4_xavier_agx.txt: OE4T/meta-tegra PR #952 (Jetson AGX Xavier, TensorRT 8.4)
- trtexec_8.x_xavier_nx_e2e.txt: OE4T/meta-tegra PR #1124 (Jetson Xavier NX, with End-to-End Host Latency)
- trtexec_8.6_orin_jp6.txt: OE4T/meta-tegra-community PR #113 (Jetson AGX Orin, JetPack 6)
- trtexec_10.x_summary.txt: NVIDIA/TensorRT issue #4177 (percentile 90/95/99 layout)
- trtexec_7.x_host_latency.txt: NVIDIA/TensorRT issue #2054 (the TensorRT 7 block layout)
- trtexec_10.2_header.txt: NVIDIA/TensorRT issue #4036 (version tag v100200)
- trtexec_8.6.3_device.txt: NVIDIA/TensorRT issue #3747 (device section, "TensorRT version: 8.6.3")
Building and timing a real engine needs an NVIDIA GPU and TensorRT: that test is skipped elsewhere.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

from modnas.exporters.tensorrt import (PRECISIONS, TrtBuildConfig, build_local, build_on_board,
                                       locate_trtexec, shapes_arg, trtexec_command)
from modnas.profilers.board.runtimes import get_runtime
from modnas.profilers.board.trtexec_parse import last_error, parse_trtexec, version_from_tag
from modnas.profilers.connection import LocalConnection
from modnas.toolkit.errors import BadInput, BoardError, NotAvailable

FIXTURES = Path(__file__).parent / "fixtures"

# fixture -> (layout, version, throughput, latency median, latency p99, GPU compute median, extra checks)
EXPECTED = {
    "trtexec_8.4_xavier_agx.txt": ("summary", "8.4.0", 41087.7, 0.401947, 0.420288, 0.388443),
    "trtexec_8.x_xavier_nx_e2e.txt": ("summary", None, 27207.0, 0.572998, 0.587769, 0.564087),
    "trtexec_8.6_orin_jp6.txt": ("summary", None, 208.729, 4.83752, 4.85547, None),
    "trtexec_10.x_summary.txt": ("summary", None, 130.298, 7.16092, 12.9675, 7.14139),
    "trtexec_7.x_host_latency.txt": ("legacy", None, 0.0, 1.65601, 1.67065, None),
}


def _read(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse_real_trtexec_summaries(name: str) -> None:
    layout, version, qps, median, p99, gpu_median = EXPECTED[name]
    parsed = parse_trtexec(_read(name))
    assert parsed["layout"] == layout
    assert parsed["tensorrt_version"] == version
    assert parsed["throughput_qps"] == pytest.approx(qps)
    lat = parsed["latency_ms"]
    assert lat["median"] == pytest.approx(median) and lat["p99"] == pytest.approx(p99)
    assert lat["min"] <= lat["median"] <= lat["max"]
    if gpu_median is None:
        assert parsed["gpu_compute_ms"] is None
    else:
        assert parsed["gpu_compute_ms"]["median"] == pytest.approx(gpu_median)


def test_parse_percentiles_totals_and_end_to_end() -> None:
    new = parse_trtexec(_read("trtexec_10.x_summary.txt"))
    assert new["latency_ms"] == {"min": 5.38672, "max": 13.3664, "mean": 7.60628, "median": 7.16092,
                                 "p90": 10.2996, "p95": 10.8698, "p99": 12.9675}
    assert new["total_host_walltime_s"] == pytest.approx(3.00082)
    assert new["total_gpu_compute_s"] == pytest.approx(2.96536)
    assert new["h2d_ms"]["p95"] == pytest.approx(0.0270996)
    nx = parse_trtexec(_read("trtexec_8.x_xavier_nx_e2e.txt"))
    assert nx["end_to_end_ms"]["median"] == pytest.approx(0.585938)
    assert "p90" not in nx["latency_ms"]
    old = parse_trtexec(_read("trtexec_7.x_host_latency.txt"))
    assert old["end_to_end_ms"] == {"min": 1.66368, "max": 7.65552, "mean": 3.00909, "median": 3.01636, "p99": 3.03931}
    assert old["total_host_walltime_s"] == pytest.approx(3.00461)
    # the per-10-runs trace lines before the summary are not mistaken for it
    orin = parse_trtexec(_read("trtexec_8.6_orin_jp6.txt"))
    assert orin["latency_ms"]["mean"] == pytest.approx(4.83767)


@pytest.mark.parametrize("name,version,device", [
    ("trtexec_10.2_header.txt", "10.2.0", None),
    ("trtexec_8.6.3_device.txt", "8.6.3", "NVIDIA GeForce RTX 2080"),
])
def test_parse_version_and_device_without_summary(name: str, version: str, device: str | None) -> None:
    parsed = parse_trtexec(_read(name))
    assert parsed["tensorrt_version"] == version and parsed["device"] == device
    assert parsed["layout"] is None and parsed["latency_ms"] is None


def test_parse_status_line() -> None:
    assert parse_trtexec(_read("trtexec_8.4_xavier_agx.txt"))["status"] == "passed"
    assert parse_trtexec(_read("trtexec_10.2_header.txt"))["status"] == "running"
    assert parse_trtexec("")["status"] is None


@pytest.mark.parametrize("tag,version", [(8400, "8.4.0"), (8601, "8.6.1"), (8602, "8.6.2"), (7103, "7.1.3"),
                                         (100200, "10.2.0"), (100300, "10.3.0")])
def test_version_tags(tag: int, version: str) -> None:
    assert version_from_tag(tag) == version


@pytest.mark.parametrize("precision,flags", [("fp32", ["--noTF32"]), ("fp16", ["--fp16"]), ("int8", ["--int8", "--fp16"])])
def test_trtexec_command_per_precision(precision: str, flags: list[str]) -> None:
    argv = trtexec_command("/w/net.onnx", "/w/net.engine", precision, 512)
    assert argv[:4] == ["trtexec", "--onnx=/w/net.onnx", "--saveEngine=/w/net.engine", "--memPoolSize=workspace:512"]
    assert [a for a in argv if a in ("--noTF32", "--fp16", "--int8")] == flags
    assert not any(a.startswith("--minShapes") for a in argv)
    assert "--duration=1" in argv


def test_every_precision_has_a_command() -> None:
    assert {p for p in PRECISIONS} == {"fp32", "fp16", "int8"}
    for precision in PRECISIONS:
        assert trtexec_command("/a.onnx", "/a.engine", precision)


def test_trtexec_command_shapes_and_build_only() -> None:
    argv = trtexec_command("/w/n.onnx", "/w/n.engine", "fp16", 1024, {"input": [1, 3, 32, 32]},
                           trtexec="/usr/src/tensorrt/bin/trtexec", time_build=False)
    assert argv[0] == "/usr/src/tensorrt/bin/trtexec"
    for key in ("min", "opt", "max"):
        assert f"--{key}Shapes=input:1x3x32x32" in argv
    assert argv[-1] == "--skipInference"
    assert shapes_arg({"a": [1, 2], "b": [3]}) == "a:1x2,b:3"


@pytest.mark.parametrize("kwargs,field", [
    ({"precision": "bf16"}, "precision"),
    ({"workspace_mb": 0}, "workspace_mb"),
    ({"workspace_mb": 1.5}, "workspace_mb"),
    ({"shapes": {"in:put": [1, 3]}}, "shapes"),
    ({"shapes": {"input": [1, -1, 32]}}, "shapes.input"),
    ({"shapes": {"input": []}}, "shapes.input"),
    ({"timeout_s": 0}, "timeout_s"),
])
def test_build_config_validation_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(BadInput, match=field.replace(".", r"\.")):
        TrtBuildConfig(**kwargs)


def test_paths_with_spaces_are_refused() -> None:
    with pytest.raises(BadInput, match="onnx_remote"):
        trtexec_command("/w/my net.onnx", "/w/n.engine")


def test_last_error_picks_the_error_line() -> None:
    text = "[I] loading\n[06/01/2024-10:00:00] [E] [TRT] ModelImporter.cpp:771: unsupported op\n&&&& FAILED TensorRT.trtexec\n"
    assert last_error(text) == "[TRT] ModelImporter.cpp:771: unsupported op"
    assert last_error("") == "no output"


# ---- a board reached through a real LocalConnection, with trtexec replaced by a replay of recorded output ----

REPLAY = """#!{python}
import sys
from pathlib import Path
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
fixtures = Path({fixtures!r})
if "--help" in sys.argv:
    print((fixtures / "trtexec_10.2_header.txt").read_text())
    sys.exit(0)
if {fail!r}:
    print("[06/01/2024-10:00:00] [E] [TRT] ModelImporter.cpp:771: While parsing node number 3 [Foo]")
    print("&&&& FAILED TensorRT.trtexec [TensorRT v8602]")
    sys.exit(1)
if "onnx" in args:
    data = Path(args["onnx"]).read_bytes()
    Path(args["saveEngine"]).write_bytes(b"replayed engine for " + str(len(data)).encode())
    Path(args["saveEngine"] + ".argv").write_text("\\n".join(sys.argv[1:]))
    print((fixtures / "trtexec_8.6.3_device.txt").read_text())
    print((fixtures / "trtexec_8.4_xavier_agx.txt").read_text())
else:
    Path(args["loadEngine"]).with_suffix(".runs").open("a").write(" ".join(sys.argv[1:]) + "\\n")
    if "exportTimes" in args:  # trtexec's per-inference records, as it writes them
        import json
        n = max(int(args.get("iterations", 1)), 3)
        recs = [{{"count": n}}] + [{{"startComputeMs": i * 2.0, "computeMs": 1.5, "latencyMs": 2.0 + 0.01 * i}}
                                  for i in range(n)]
        Path(args["exportTimes"]).write_text(json.dumps(recs))
    print((fixtures / "trtexec_10.x_summary.txt").read_text())
"""


def _replay_tool(folder: Path, fail: bool = False) -> Path:
    tool = folder / "trtexec"
    tool.write_text(REPLAY.format(python=sys.executable, fixtures=str(FIXTURES), fail=fail), encoding="utf-8")
    tool.chmod(0o755)
    return tool


@pytest.fixture()
def onnx_file(tmp_path: Path) -> Path:
    import torch

    from modnas.exporters.onnx import export_onnx

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 8 * 8, 5))
    return export_onnx(model, (1, 3, 8, 8), tmp_path / "host" / "small.onnx", check=False).path


def test_build_on_board_pushes_builds_fetches_and_parses(tmp_path: Path, onnx_file: Path) -> None:
    board = tmp_path / "board"
    tool = _replay_tool(tmp_path)
    with LocalConnection("replay") as conn:
        result = build_on_board(conn, onnx_file, "fp16", out_dir=tmp_path / "out", workdir=str(board),
                                trtexec=str(tool), workspace_mb=256)
    assert result.path == tmp_path / "out" / "small-fp16.engine"
    assert result.path.read_bytes() == b"replayed engine for " + str(onnx_file.stat().st_size).encode()
    meta = result.meta
    assert meta["tensorrt_version"] == "8.6.3" and meta["gpu"] == "NVIDIA GeForce RTX 2080"
    assert meta["build_timing"]["latency_ms"]["median"] == pytest.approx(0.401947)
    assert meta["input_name"] == "input" and meta["input_shape"] == [1, 3, 8, 8]
    remote_argv = Path(meta["remote_engine"] + ".argv").read_text().splitlines()
    assert remote_argv == meta["trtexec_argv"][1:] and "--memPoolSize=workspace:256" in remote_argv
    assert (tmp_path / "out" / meta["log"]).read_text().count("=== Performance summary ===") == 1
    assert (tmp_path / "out" / "small-fp16.engine.json").is_file()


def test_build_failure_is_one_board_error_line(tmp_path: Path, onnx_file: Path) -> None:
    tool = _replay_tool(tmp_path, fail=True)
    with LocalConnection("replay") as conn, pytest.raises(BoardError) as info:
        build_on_board(conn, onnx_file, "fp32", out_dir=tmp_path / "out", workdir=str(tmp_path / "b"), trtexec=str(tool))
    message = str(info.value)
    assert "exit 1" in message and "While parsing node number 3" in message and "\n" not in message


def test_missing_trtexec_on_the_board_is_not_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a board without TensorRT (which/test from /usr/bin via absolute paths)
    if os.access("/usr/src/tensorrt/bin/trtexec", os.X_OK):
        pytest.skip("this machine has JetPack's trtexec")
    with LocalConnection("bare") as conn, pytest.raises(NotAvailable, match="/usr/src/tensorrt/bin"):
        locate_trtexec(_PathConnection(conn))


class _PathConnection:
    """A LocalConnection that starts ``which``/``test`` by absolute path (PATH is emptied by the test)."""

    def __init__(self, conn: LocalConnection) -> None:
        self.conn = conn

    def run(self, argv: list[str], timeout: float):
        import shutil

        resolved = shutil.which(argv[0], path="/usr/bin:/bin") or argv[0]
        return self.conn.run([resolved, *argv[1:]], timeout)


def test_board_runtime_without_tensorrt_says_what_is_missing() -> None:
    runtime = get_runtime("tensorrt")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT bindings are installed here")
    except ImportError:
        pass
    if runtime.trtexec_path():
        pytest.skip("trtexec is installed here")
    ok, why = runtime.available()
    assert not ok and "tensorrt" in why and "GPU" in why and "JetPack" in why
    with pytest.raises(RuntimeError, match="built and run on the board"):
        runtime.load("/nonexistent.engine", 1, [1, 3, 32, 32], {})
    with pytest.raises(NotAvailable, match="built on the board"):
        build_local(Path("/nonexistent.onnx"))


@pytest.fixture()
def replayed_trtexec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The trtexec fallback, with trtexec replaying recorded output (skipped where the bindings exist)."""
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT bindings are installed here: the bindings path is used")
    except ImportError:
        pass
    tool = _replay_tool(tmp_path)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")
    return tool


def test_board_runtime_trtexec_fallback(tmp_path: Path, replayed_trtexec: Path) -> None:
    runtime = get_runtime("tensorrt")
    assert runtime.available() == (True, "trtexec 10.2.0")
    engine = tmp_path / "net.engine"
    engine.write_bytes(b"engine")
    run_once = runtime.load(str(engine), 4, [1, 3, 32, 32], {"input_name": "input"})
    run_once()
    timing = run_once.trtexec_timing(500, 2.0, 100)
    assert timing["latency_ms"]["median"] == pytest.approx(7.16092)
    assert timing["argv"][1:] == [f"--loadEngine={engine}", "--warmUp=500", "--duration=2", "--iterations=100",
                                  "--avgRuns=10"]
    runs = engine.with_suffix(".runs").read_text().splitlines()
    assert len(runs) == 3 and "--iterations=1" in runs[0].split()


def _gpu_and_tensorrt() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "needs an NVIDIA GPU with TensorRT: the tensorrt Python package is not installed"
    from modnas.profilers.board.runtimes.tensorrt import gpu_present

    return None if gpu_present() else "needs an NVIDIA GPU: no /dev/nvidia0 or Jetson GPU device here"


@pytest.mark.skipif(_gpu_and_tensorrt() is not None, reason=str(_gpu_and_tensorrt()))
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_and_time_a_real_engine(tmp_path: Path, onnx_file: Path, precision: str) -> None:
    result = build_local(onnx_file, precision, out_dir=tmp_path)
    assert result.path.stat().st_size > 1000 and result.meta["precision"] == precision
    run_once = get_runtime("tensorrt").load(str(result.path), 1, [1, 3, 8, 8], result.meta)
    start = time.perf_counter()
    for _ in range(20):
        run_once()
    assert 0 < (time.perf_counter() - start) / 20 < 0.5


def test_agent_times_trtexec_blocks_from_its_own_records(tmp_path: Path, replayed_trtexec: Path) -> None:
    """Without the bindings, each block is timed by trtexec on the board and its per-inference records
    come back as the block's samples (never the start-up of one process per inference)."""
    from modnas.profilers.board.agent import time_blocks

    engine = tmp_path / "net.engine"
    engine.write_bytes(b"engine")
    run_once = get_runtime("tensorrt").load(str(engine), 1, [1, 3, 32, 32], {"input_name": "input"})
    settings = {"warmup_s": 0.2, "min_runs": 7, "min_time_s": 0.5, "repeats": 2, "cooldown_s": 0.0}
    blocks = time_blocks(run_once, settings)
    assert len(blocks) == 2 and all(len(b) == 7 for b in blocks)
    assert blocks[0] == pytest.approx([2.0 + 0.01 * i for i in range(7)])
    runs = engine.with_suffix(".runs").read_text().splitlines()[-2:]
    for line in runs:
        argv = line.split()
        assert "--warmUp=200" in argv and "--iterations=7" in argv and "--duration=0.5" in argv
        assert any(a.startswith("--exportTimes=") for a in argv)
    assert not list(Path(tempfile.gettempdir()).glob("trtexec-times-*.json"))
