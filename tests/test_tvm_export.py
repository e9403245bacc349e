"""ONNX -> TVM compile for this CPU and for aarch64 boards, checked against ONNX Runtime, and the board's TVM runtime.

Compiles are slow (seconds each), so a module fixture builds three artifacts once: a one-cell NB201
network (default ``parallel`` schedule) and a tiny conv net (``none``: TVM's plain loops) for this CPU,
and the tiny net for a Raspberry Pi 4 (cortex-a72).
"""
from __future__ import annotations

import json
import shutil
import struct
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from modnas.exporters import EXPORTERS, ExportMismatch, get_exporter
from modnas.exporters.result import read_sidecar, sha256_file
from modnas.exporters.targets import host_arch, resolve_target
from modnas.exporters.tvm import compile_tvm, onnx_input, verify_tvm
from modnas.exporters.tvm_schedule import DEFAULT_SCHEDULE, SCHEDULES
from modnas.profilers.board.runtimes import get_runtime
from modnas.toolkit.errors import BadInput

EM_X86_64, EM_AARCH64 = 62, 183
ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def _tiny() -> Any:
    """An NB201-like cell in plain torch: stem conv, a 3x3 and a 1x1 branch, an average-pool skip, head."""
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
            self.conv3 = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
            self.conv1 = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8))
            self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
            self.head = nn.Linear(8, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            n1 = self.conv3(x)
            n2 = self.conv1(x) + self.pool(n1)
            return self.head((n2 + x).mean(dim=(2, 3)))

    torch.manual_seed(0)
    return Tiny().eval()


def _nb201_small() -> Any:
    """A one-cell-per-stage NB201 network from the search space (the plain tiny net if it is absent)."""
    try:
        from modnas.toolkit.spaces import get_space
    except ImportError:
        return _tiny()
    import torch

    torch.manual_seed(1)
    return get_space("nb201").build(ARCH, cells=1).eval()


def _elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF", "not an ELF file"
    return struct.unpack_from("<H", data, 18)[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from modnas.exporters.onnx import export_onnx

    root = tmp_path_factory.mktemp("tvm")
    shape = (1, 3, 32, 32)
    onnx = {name: export_onnx(make(), shape, root / f"{name}.onnx").path
            for name, make in (("nb201", _nb201_small), ("tiny", _tiny))}
    host = resolve_target(None, "x86") if host_arch() == "x86_64" else {"kind": "llvm"}
    out = {"root": root, "onnx": onnx, "host": {}}
    for (name, path), schedule in zip(onnx.items(), SCHEDULE_PER_MODEL.values()):
        out["host"][name] = compile_tvm(path, host, root / "host", schedule=schedule)
    out["a72"] = compile_tvm(onnx["tiny"], resolve_target(None, "cortex-a72"), root / "a72", name="tiny-a72")
    return out


# every registered schedule is compiled and checked once
SCHEDULE_PER_MODEL = {"nb201": DEFAULT_SCHEDULE, "tiny": "none"}
assert set(SCHEDULE_PER_MODEL.values()) == set(SCHEDULES)


@pytest.mark.parametrize("name,schedule", sorted(SCHEDULE_PER_MODEL.items()))
def test_host_build_matches_onnxruntime(built: dict[str, Any], name: str, schedule: str) -> None:
    result = built["host"][name]
    assert result.meta["schedule"] == schedule
    assert result.path.suffix == ".so" and result.path.is_file()
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4
    assert result.sha256 == sha256_file(result.path)
    if host_arch() == "x86_64":
        assert _elf_machine(result.path.read_bytes()[:64]) == EM_X86_64


def test_sidecar_records_version_target_and_input(built: dict[str, Any]) -> None:
    import tvm

    result = built["host"]["nb201"]
    meta = read_sidecar(result.path)
    assert meta == json.loads(json.dumps(result.meta))
    assert meta["tvm_version"] == tvm.__version__
    assert meta["target"]["kind"] == "llvm"
    assert meta["input_name"] == "input" and meta["input_shape"] == [1, 3, 32, 32]
    assert meta["onnx_sha256"] == sha256_file(built["onnx"]["nb201"])


def test_reloaded_library_still_matches(built: dict[str, Any]) -> None:
    copy = built["root"] / "moved" / "net.so"
    copy.parent.mkdir()
    shutil.copyfile(built["host"]["tiny"].path, copy)
    assert verify_tvm(copy, built["onnx"]["tiny"]) < 1e-4


def test_verify_catches_a_different_model(built: dict[str, Any], tmp_path: Path) -> None:
    import torch

    from modnas.exporters.onnx import export_onnx

    other = _tiny()
    with torch.no_grad():
        other.head.bias.add_(1.0)  # same graph, outputs shifted by one
    path = export_onnx(other, (1, 3, 32, 32), tmp_path / "other.onnx").path
    with pytest.raises(ExportMismatch, match="differs from ONNX Runtime"):
        verify_tvm(built["host"]["tiny"].path, path)


def test_aarch64_build_is_an_aarch64_library(built: dict[str, Any]) -> None:
    result = built["a72"]
    assert result.max_abs_diff is None  # cannot run here
    assert result.meta["arch"] == "aarch64" and result.meta["target"]["mcpu"] == "cortex-a72"
    if shutil.which("aarch64-linux-gnu-gcc"):
        assert result.path.suffix == ".so" and result.meta["linked"] == "so"
        assert _elf_machine(result.path.read_bytes()[:64]) == EM_AARCH64
    else:
        assert result.path.suffix == ".tar" and result.meta["linked"] == "tar"


def test_without_cross_compiler_a_tar_of_aarch64_objects(built: dict[str, Any], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import modnas.exporters.tvm as tvm_exporter

    monkeypatch.setattr(tvm_exporter, "CROSS_COMPILERS", {"aarch64": "no-such-gcc-for-modnas"})
    result = compile_tvm(built["onnx"]["tiny"], resolve_target(None, "cortex-a76"), tmp_path, name="tiny-a76",
                         schedule="none")
    assert result.path.suffix == ".tar" and result.meta["linked"] == "tar" and result.meta["cc"] is None
    with tarfile.open(result.path) as tar:
        objects = [m for m in tar.getmembers() if m.name.endswith(".o")]
        assert objects
        machines = {_elf_machine(tar.extractfile(m).read(64)) for m in objects}
    assert machines == {EM_AARCH64}


def test_board_runtime_runs_the_library(built: dict[str, Any]) -> None:
    runtime = get_runtime("tvm")
    ok, version = runtime.available()
    assert ok and version == runtime.version()
    result = built["host"]["nb201"]
    run_once = runtime.load(str(result.path), 2, [1, 3, 32, 32], dict(result.meta))
    start = time.perf_counter()
    for _ in range(5):
        run_once()
    assert 0 < time.perf_counter() - start < 10


def test_board_runtime_refuses_other_tvm_versions_and_shapes(built: dict[str, Any]) -> None:
    runtime = get_runtime("tvm")
    result = built["host"]["tiny"]
    meta = dict(result.meta, tvm_version="0.19.0")
    with pytest.raises(RuntimeError, match=r"TVM 0\.19\.0 .*TVM " + runtime.version().replace(".", r"\.")):
        runtime.load(str(result.path), 1, [1, 3, 32, 32], meta)
    with pytest.raises(ValueError, match="input shape"):
        runtime.load(str(result.path), 1, [1, 3, 64, 64], dict(result.meta))


def test_onnx_input_needs_one_static_input(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "dyn.onnx"
    torch.onnx.export(_tiny(), (torch.randn(1, 3, 32, 32),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], dynamic_axes={"input": {0: "batch"}})
    with pytest.raises(BadInput, match="static shape"):
        onnx_input(path)
    with pytest.raises(BadInput, match="not found"):
        onnx_input(tmp_path / "missing.onnx")


def _workflow_exporters() -> dict[str, Any]:
    """The functions `modnas export` and the workflow's artifact cache call, imported as they import them."""
    from modnas.exporters.executorch import export_executorch
    from modnas.exporters.onnx import export_onnx
    from modnas.exporters.tensorrt import build_on_board
    from modnas.exporters.tvm import compile_tvm as workflow_compile_tvm

    return {"onnx": export_onnx, "tvm": workflow_compile_tvm, "tensorrt": build_on_board,
            "executorch": export_executorch}


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_exporter_registry_resolves_every_format(fmt: str) -> None:
    expected = _workflow_exporters()
    assert sorted(EXPORTERS) == sorted(expected)  # no format registered that the workflow lacks, or the reverse
    assert get_exporter(fmt) is expected[fmt]


def test_onnx_exporter_from_the_registry_runs_in_onnxruntime(tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime as ort
    import torch

    model = _tiny()
    result = get_exporter("onnx")(model, (1, 3, 16, 16), tmp_path / "tiny.onnx")
    assert result.path.is_file() and result.sha256 == sha256_file(result.path)
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4
    assert read_sidecar(result.path)["input_shape"] == [1, 3, 16, 16]
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))  # not the exporter's own example
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == want.shape == (1, 10)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_unknown_schedule_is_bad_input(built: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="schedule"):
        compile_tvm(built["onnx"]["tiny"], {"kind": "llvm"}, tmp_path, schedule="fastest")


def test_parallel_schedule_runs_on_the_thread_pool_plain_loops_do_not(built: dict[str, Any], tmp_path: Path) -> None:
    """The default schedule hands its outer loops to TVM's thread pool, TVM's plain loops never do; both give
    ONNX Runtime's numbers. (Which one is faster is measured in benchmarks/, not asserted on a shared machine.)"""
    fast = compile_tvm(built["onnx"]["tiny"], {"kind": "llvm"}, tmp_path, name="fast", schedule="parallel")
    plain = built["host"]["tiny"]
    assert fast.meta["schedule"] == "parallel" and plain.meta["schedule"] == "none"
    assert fast.max_abs_diff is not None and fast.max_abs_diff < 1e-4
    assert verify_tvm(fast.path, built["onnx"]["tiny"]) < 1e-4
    # a library with parallel loops imports the runtime's parallel launcher (a symbol in its dynamic table)
    launcher = b"__TVMBackendParallelLaunch"
    assert launcher in fast.path.read_bytes()
    assert launcher not in plain.path.read_bytes()
    runtime = get_runtime("tvm")
    for result in (fast, plain):  # both load and run on a two-thread pool
        runtime.load(str(result.path), 2, [1, 3, 32, 32], dict(result.meta))()


def test_unknown_format_is_bad_input() -> None:
    with pytest.raises(BadInput, match="unknown export format") as info:
        get_exporter("tflite")
    text = str(info.value)
    assert "'tflite'" in text and text.endswith("known: " + ", ".join(sorted(EXPORTERS)))
