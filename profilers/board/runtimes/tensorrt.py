"""NVIDIA TensorRT on the board's GPU: runs an engine built on this board (``trtexec --saveEngine`` or
:func:`build_engine`). Engines only run on the GPU model and TensorRT version that built them.

Two ways to run, best first:
1. the ``tensorrt`` Python bindings with CUDA buffers from torch or cuda-python: run_once() copies the
   fixed input to the GPU, executes, copies the outputs back and waits (trtexec's "Latency");
2. ``trtexec --loadEngine`` when only the command-line tool is present. A process per inference would
   time process start-up, so run_once() then carries ``run_once.trtexec_timing(warmup_ms, duration_s,
   iterations)``: one trtexec run that times on the board and returns the parsed summary
   (see ``modnas.profilers.board.trtexec_parse``); the agent should prefer it for latency.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from typing import Any, Callable, Dict, List, Optional, Tuple

NAME = "tensorrt"
JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
MISSING = ("TensorRT is not available here: no Python bindings (import tensorrt failed) and no trtexec on PATH "
           "or in /usr/src/tensorrt/bin; TensorRT needs an NVIDIA GPU, engines are built and run on the board "
           "(e.g. a Jetson with JetPack)")
PRECISIONS = ("fp32", "fp16", "int8")


def trtexec_path() -> Optional[str]:
    """trtexec on PATH, else JetPack's usual place, else None."""
    found = shutil.which("trtexec")
    if found:
        return found
    return JETPACK_TRTEXEC if os.access(JETPACK_TRTEXEC, os.X_OK) else None


def gpu_present() -> bool:
    """Whether an NVIDIA GPU device node exists (desktop driver or Jetson's integrated GPU)."""
    return any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu", "/dev/nvgpu/igpu0/ctrl"))


def _bindings() -> Any:
    import tensorrt

    return tensorrt


def available() -> Tuple[bool, str]:
    """(True, version) when the bindings or trtexec are here, else (False, what is missing)."""
    try:
        return True, version()
    except Exception as exc:
        return False, str(exc).splitlines()[0] if str(exc) else MISSING


def version() -> str:
    try:
        return str(_bindings().__version__)
    except ImportError:
        pass
    tool = trtexec_path()
    if tool is None:
        raise RuntimeError(MISSING)
    from ..trtexec_parse import parse_trtexec

    proc = subprocess.run([tool, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    found = parse_trtexec(proc.stdout.decode("utf-8", "replace")).get("tensorrt_version")
    return "trtexec %s" % (found or "(version unknown)")


def load(artifact_path: str, threads: int, input_shape: List[int], meta: dict) -> Callable[[], None]:
    """Deserialize the engine and return run_once() (Python bindings), else a trtexec-backed run_once."""
    try:
        trt = _bindings()
    except ImportError:
        trt = None
    if trt is not None:
        backend = _buffer_backend()
        if backend is not None:
            return _load_python(trt, backend, artifact_path, input_shape, meta)
    tool = trtexec_path()
    if tool is None:
        if trt is not None:
            raise RuntimeError("TensorRT bindings are here but neither torch (CUDA) nor cuda-python is, and trtexec "
                               "is missing: install one of them on the board")
        raise RuntimeError(MISSING)
    return _load_trtexec(tool, artifact_path, input_shape, meta)


# ---- Python bindings -------------------------------------------------------------------------

def _load_python(trt: Any, backend: Any, path: str, input_shape: List[int], meta: dict) -> Callable[[], None]:
    import numpy as np

    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    with open(path, "rb") as handle:
        engine = runtime.deserialize_cuda_engine(handle.read())
    if engine is None:
        raise RuntimeError("TensorRT %s could not deserialize %s: engines only load on the GPU and TensorRT version "
                           "that built them (built with %s)" % (trt.__version__, path, meta.get("tensorrt_version", "?")))
    context = engine.create_execution_context()
    tensors = _io_tensors(trt, engine)
    inputs = [t for t in tensors if t["input"]]
    if len(inputs) != 1:
        raise RuntimeError("the engine has %d inputs; one is supported" % len(inputs))
    _set_input_shape(engine, context, inputs[0], [int(d) for d in input_shape])
    rng = np.random.default_rng(int(meta.get("seed", 0)))
    addresses = []
    host_inputs, host_outputs = [], []
    for spec in tensors:
        shape = [int(d) for d in (input_shape if spec["input"] else _output_shape(engine, context, spec))]
        host = (rng.standard_normal(shape) if spec["input"] else np.zeros(shape)).astype(spec["dtype"])
        device = backend.alloc(host)
        addresses.append(device)
        (host_inputs if spec["input"] else host_outputs).append((host, device))
        if spec["v3"]:
            context.set_tensor_address(spec["name"], backend.address(device))
    stream = backend.stream()
    handle = backend.stream_handle(stream)
    if tensors[0]["v3"]:
        def execute() -> None:
            if not context.execute_async_v3(handle):
                raise RuntimeError("TensorRT execute_async_v3 failed")
    else:
        order = sorted(range(len(tensors)), key=lambda i: tensors[i]["index"])
        bindings = [backend.address(addresses[i]) for i in order]

        def execute() -> None:
            if not context.execute_async_v2(bindings, handle):
                raise RuntimeError("TensorRT execute_async_v2 failed")

    def run_once() -> None:
        for host, device in host_inputs:
            backend.to_device(host, device, stream)
        execute()
        for host, device in host_outputs:
            backend.to_host(device, host, stream)
        backend.sync(stream)

    run_once()
    run_once.keepalive = (runtime, engine, context, addresses, stream)  # type: ignore[attr-defined]
    return run_once


def _io_tensors(trt: Any, engine: Any) -> List[Dict[str, Any]]:
    out = []
    if hasattr(engine, "num_io_tensors"):  # TensorRT 8.5 and later
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            out.append({"name": name, "index": i, "v3": True,
                        "input": engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                        "dtype": trt.nptype(engine.get_tensor_dtype(name))})
    else:
        for i in range(engine.num_bindings):
            out.append({"name": engine.get_binding_name(i), "index": i, "v3": False,
                        "input": bool(engine.binding_is_input(i)), "dtype": trt.nptype(engine.get_binding_dtype(i))})
    return out


def _set_input_shape(engine: Any, context: Any, spec: dict, shape: List[int]) -> None:
    if spec["v3"]:
        declared = [int(d) for d in engine.get_tensor_shape(spec["name"])]
        if any(d < 0 for d in declared):
            context.set_input_shape(spec["name"], shape)
    else:
        declared = [int(d) for d in engine.get_binding_shape(spec["index"])]
        if any(d < 0 for d in declared):
            context.set_binding_shape(spec["index"], shape)
    if len(declared) != len(shape) or any(d >= 0 and d != s for d, s in zip(declared, shape)):
        raise RuntimeError("the engine's input %s has shape %r, the job gives %r" % (spec["name"], declared, shape))


def _output_shape(engine: Any, context: Any, spec: dict) -> List[int]:
    if spec["v3"]:
        return [int(d) for d in context.get_tensor_shape(spec["name"])]
    return [int(d) for d in context.get_binding_shape(spec["index"])]


class _TorchBuffers:
    """CUDA buffers and a stream from torch."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch

    def alloc(self, host: Any) -> Any:
        return self.torch.from_numpy(host.copy()).to("cuda")

    def address(self, device: Any) -> int:
        return int(device.data_ptr())

    def stream(self) -> Any:
        return self.torch.cuda.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.cuda_stream)

    def to_device(self, host: Any, device: Any, stream: Any) -> None:
        with self.torch.cuda.stream(stream):
            device.copy_(self.torch.from_numpy(host), non_blocking=True)

    def to_host(self, device: Any, host: Any, stream: Any) -> None:
        with self.torch.cuda.stream(stream):
            self.torch.from_numpy(host).copy_(device, non_blocking=False)

    def sync(self, stream: Any) -> None:
        stream.synchronize()


class _CudaPythonBuffers:
    """CUDA buffers and a stream from NVIDIA's cuda-python (``cuda.bindings.runtime`` or ``cuda.cudart``)."""

    def __init__(self, cudart: Any) -> None:
        self.rt = cudart

    def _ok(self, result: Any) -> Any:
        err = result[0] if isinstance(result, tuple) else result
        if int(err) != 0:
            raise RuntimeError("CUDA runtime error %s" % (err,))
        return result[1] if isinstance(result, tuple) and len(result) > 1 else None

    def alloc(self, host: Any) -> int:
        return int(self._ok(self.rt.cudaMalloc(max(1, host.nbytes))))

    def address(self, device: int) -> int:
        return int(device)

    def stream(self) -> Any:
        return self._ok(self.rt.cudaStreamCreate())

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def to_device(self, host: Any, device: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self.rt.cudaMemcpyAsync(device, host.ctypes.data, host.nbytes, kind, stream))

    def to_host(self, device: int, host: Any, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self.rt.cudaMemcpyAsync(host.ctypes.data, device, host.nbytes, kind, stream))

    def sync(self, stream: Any) -> None:
        self._ok(self.rt.cudaStreamSynchronize(stream))


def _buffer_backend() -> Any:
    """torch with CUDA, else cuda-python, else None."""
    try:
        import torch

        if torch.cuda.is_available():
            return _TorchBuffers(torch)
    except ImportError:
        pass
    for module in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            import importlib

            return _CudaPythonBuffers(importlib.import_module(module))
        except ImportError:
            continue
    return None


# ---- trtexec fallback ------------------------------------------------------------------------

def loadengine_command(tool: str, engine: str, input_shape: Optional[List[int]] = None, input_name: Optional[str] = None,
                       warmup_ms: int = 0, duration_s: float = 0, iterations: int = 1) -> List[str]:
    """argv timing an engine with trtexec (no shell: the engine path is one argument)."""
    argv = [tool, "--loadEngine=%s" % engine, "--warmUp=%d" % int(warmup_ms), "--duration=%g" % float(duration_s),
            "--iterations=%d" % int(iterations), "--avgRuns=%d" % max(1, min(int(iterations), 10))]
    if input_name and input_shape:
        argv.append("--shapes=%s:%s" % (input_name, "x".join(str(int(d)) for d in input_shape)))
    return argv


def _load_trtexec(tool: str, path: str, input_shape: List[int], meta: dict) -> Callable[[], None]:
    from ..trtexec_parse import last_error, parse_trtexec

    name = meta.get("input_name")
    dynamic = bool(meta.get("dynamic_shapes"))

    def _run(warmup_ms: int, duration_s: float, iterations: int, timeout: float) -> dict:
        argv = loadengine_command(tool, path, input_shape if dynamic else None, name, warmup_ms, duration_s, iterations)
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        text = proc.stdout.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise RuntimeError("trtexec --loadEngine failed (exit %d): %s" % (proc.returncode, last_error(text)))
        parsed = parse_trtexec(text)
        parsed["argv"] = argv
        return parsed

    def run_once() -> None:
        _run(0, 0, 1, 300)

    def trtexec_timing(warmup_ms: int = 1000, duration_s: float = 1.0, iterations: int = 50, timeout: float = 600) -> dict:
        return _run(warmup_ms, duration_s, iterations, timeout)

    def trtexec_samples(warmup_ms: int, min_time_s: float, min_runs: int, timeout: float = 600) -> List[float]:
        """One block timed by trtexec itself: per-inference latencies (ms) from ``--exportTimes``."""
        fd, times = tempfile.mkstemp(prefix="trtexec-times-", suffix=".json")
        os.close(fd)
        try:
            argv = loadengine_command(tool, path, input_shape if dynamic else None, name, warmup_ms, min_time_s,
                                      min_runs) + ["--exportTimes=%s" % times]
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
            if proc.returncode != 0:
                text = proc.stdout.decode("utf-8", "replace")
                raise RuntimeError("trtexec --loadEngine failed (exit %d): %s" % (proc.returncode, last_error(text)))
            with open(times) as fh:
                records = json.load(fh)
        finally:
            os.unlink(times)
        samples = [float(r["latencyMs"]) for r in records if isinstance(r, dict) and "latencyMs" in r]
        if len(samples) < min_runs:
            raise RuntimeError("trtexec reported %d timed inferences, fewer than min_runs=%d" % (len(samples), min_runs))
        return samples

    trtexec_timing(0, 0, 1, 300)  # fail at load, not in the timing loop
    run_once.trtexec_timing = trtexec_timing  # type: ignore[attr-defined]
    run_once.trtexec_samples = trtexec_samples  # type: ignore[attr-defined]
    run_once.per_call_process = True  # type: ignore[attr-defined]
    return run_once


# ---- Python builder (on the board) -----------------------------------------------------------

def build_engine(onnx_path: str, engine_path: str, precision: str = "fp16", workspace_mb: int = 1024) -> dict:
    """Build and save an engine with the TensorRT Python builder; returns {tensorrt_version, precision, bytes}."""
    if precision not in PRECISIONS:
        raise ValueError("precision must be one of %s, got %r" % (", ".join(PRECISIONS), precision))
    trt = _bindings()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and int(trt.__version__.split(".")[0]) < 10:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as handle:
        if not parser.parse(handle.read()):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise RuntimeError("TensorRT cannot parse %s: %s" % (onnx_path, errors[0] if errors else "unknown error"))
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    else:  # before TensorRT 8.4
        config.max_workspace_size = int(workspace_mb) << 20
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
    elif hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build an engine from %s" % onnx_path)
    data = bytes(serialized)
    with open(engine_path, "wb") as handle:
        handle.write(data)
    return {"tensorrt_version": str(trt.__version__), "precision": precision, "bytes": len(data)}
