"""TensorRT engines, built on the board that will run them.

An engine is tied to the GPU model and the TensorRT version that built it, so the host never builds
one for a board: :func:`build_on_board` copies the ONNX file over the board connection, runs
``trtexec --onnx=... --saveEngine=...`` there (JetPack puts trtexec in /usr/src/tensorrt/bin), and
fetches the engine and the build log. :func:`build_local` uses the TensorRT Python builder where the
bindings and a GPU are on this machine (for example when the toolkit runs on the Jetson itself).
Timing summaries in build logs are parsed by ``modnas.profilers.board.trtexec_parse`` (shared with the board).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from modnas.exporters.result import ExportResult, sha256_file, write_sidecar
from modnas.profilers.board.trtexec_parse import last_error, parse_trtexec
from modnas.profilers.errors import BadInput, BoardError, NotAvailable

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
TRTEXEC_CANDIDATES: tuple[str, ...] = ("trtexec", "/usr/src/tensorrt/bin/trtexec")
_NAME = re.compile(r"^[A-Za-z0-9_.:/\-]+$")
MISSING_HERE = ("TensorRT is not usable on this machine ({why}); TensorRT engines are built on the board "
                "(e.g. a Jetson with JetPack): use build_on_board or `modnas export --format tensorrt --device DEVICE`")


class BoardLink(Protocol):
    """What this module needs of a board connection (``modnas.profilers.connection``)."""

    def run(self, argv: list[str], timeout: float) -> Any: ...

    def put(self, local_path: str | Path, remote_path: str) -> None: ...

    def get(self, remote_path: str, local_path: str | Path) -> None: ...


@dataclass(frozen=True)
class TrtBuildConfig:
    """Checked settings of one engine build."""

    precision: str = "fp16"
    workspace_mb: int = 1024
    shapes: dict[str, list[int]] = field(default_factory=dict)
    timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise BadInput(f"precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if isinstance(self.workspace_mb, bool) or not isinstance(self.workspace_mb, int) or not 1 <= self.workspace_mb <= 1 << 20:
            raise BadInput(f"workspace_mb: expected an integer between 1 and 1048576, got {self.workspace_mb!r}")
        if not isinstance(self.shapes, dict):
            raise BadInput(f"shapes: expected {{input_name: [dims]}}, got {self.shapes!r}")
        for name, dims in self.shapes.items():
            if not isinstance(name, str) or not name or ":" in name or "," in name or any(c.isspace() for c in name):
                raise BadInput(f"shapes: input name {name!r} cannot be passed to trtexec (no ':', ',' or spaces)")
            if not isinstance(dims, (list, tuple)) or not dims or not all(
                    isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
                raise BadInput(f"shapes.{name}: expected positive integer dimensions, got {dims!r}")
        if not isinstance(self.timeout_s, (int, float)) or self.timeout_s <= 0:
            raise BadInput(f"timeout_s: expected a positive number, got {self.timeout_s!r}")


def shapes_arg(shapes: dict[str, list[int]]) -> str:
    """``{"input": [1, 3, 32, 32]}`` -> ``input:1x3x32x32`` (trtexec's shape syntax)."""
    return ",".join(f"{name}:{'x'.join(str(int(d)) for d in dims)}" for name, dims in shapes.items())


def trtexec_command(onnx_remote: str, engine_remote: str, precision: str = "fp16", workspace_mb: int = 1024,
                    shapes: dict[str, list[int]] | None = None, *, trtexec: str = "trtexec",
                    time_build: bool = True) -> list[str]:
    """argv for building (and briefly timing) an engine on the board; one argument per option, no shell.

    - ``--memPoolSize=workspace:N`` (N in MiB; TensorRT 8.4 and later, where ``--workspace`` is deprecated);
    - fp32 adds ``--noTF32`` so Ampere GPUs (Orin) do not round to TF32; int8 adds ``--int8 --fp16`` (no
      calibration data: placeholder scales, right for timing, not for accuracy);
    - shapes, when given, fix min = opt = max for models with dynamic dimensions;
    - ``time_build`` keeps a short timing run (1 s) after the build, whose summary lands in the log;
      otherwise ``--skipInference``.
    """
    config = TrtBuildConfig(precision=precision, workspace_mb=workspace_mb, shapes=dict(shapes or {}))
    for label, path in (("onnx_remote", onnx_remote), ("engine_remote", engine_remote), ("trtexec", trtexec)):
        if not isinstance(path, str) or not _NAME.match(path):
            raise BadInput(f"{label}: expected a plain path (letters, digits, '._-/:'), got {path!r}")
    argv = [trtexec, f"--onnx={onnx_remote}", f"--saveEngine={engine_remote}",
            f"--memPoolSize=workspace:{config.workspace_mb}"]
    argv += {"fp32": ["--noTF32"], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}[config.precision]
    if config.shapes:
        spec = shapes_arg(config.shapes)
        argv += [f"--minShapes={spec}", f"--optShapes={spec}", f"--maxShapes={spec}"]
    argv += ["--warmUp=200", "--duration=1", "--iterations=10"] if time_build else ["--skipInference"]
    return argv


def locate_trtexec(conn: BoardLink, timeout: float = 30.0) -> str:
    """The board's trtexec (on PATH or JetPack's /usr/src/tensorrt/bin), or NotAvailable."""
    for candidate in TRTEXEC_CANDIDATES:
        probe = ["which", candidate] if "/" not in candidate else ["test", "-x", candidate]
        done = conn.run(probe, timeout)
        if done.rc == 0:
            found = done.stdout.decode("utf-8", "replace").strip().splitlines()
            return found[0] if found and "/" not in candidate else candidate
    raise NotAvailable("trtexec not found on the board (looked on PATH and in /usr/src/tensorrt/bin): "
                       "install TensorRT there (JetPack on a Jetson)")


def build_on_board(conn: BoardLink, onnx_local: str | Path, precision: str = "fp16", *, out_dir: str | Path | None = None,
                   workspace_mb: int = 1024, shapes: dict[str, list[int]] | None = None, workdir: str = "/tmp/modnas",
                   trtexec: str | None = None, timeout_s: float = 1800.0, name: str | None = None) -> ExportResult:
    """Push the ONNX file, build the engine with trtexec on the board, fetch engine and log to ``out_dir``."""
    config = TrtBuildConfig(precision=precision, workspace_mb=workspace_mb, shapes=dict(shapes or {}), timeout_s=timeout_s)
    onnx_local = Path(onnx_local)
    if not onnx_local.is_file():
        raise BadInput(f"ONNX file not found: {onnx_local}")
    onnx_sha = sha256_file(onnx_local)
    stem = name or onnx_local.stem
    out = Path(out_dir) if out_dir else onnx_local.parent
    out.mkdir(parents=True, exist_ok=True)
    base = f"{workdir.rstrip('/')}/{stem}-{onnx_sha[:12]}"
    onnx_remote, engine_remote = f"{base}.onnx", f"{base}-{config.precision}.engine"
    made = conn.run(["mkdir", "-p", "-m", "700", workdir], 60)
    if made.rc != 0:
        raise BoardError(f"cannot create {workdir} on the board: {_text(made.stderr) or made.rc}")
    tool = trtexec or locate_trtexec(conn)
    argv = trtexec_command(onnx_remote, engine_remote, config.precision, config.workspace_mb, config.shapes,
                           trtexec=tool)
    conn.put(onnx_local, onnx_remote)
    started = time.perf_counter()
    done = conn.run(argv, config.timeout_s)
    log_text = _text(done.stdout) + _text(done.stderr)
    log_path = out / f"{stem}-{config.precision}.trtexec.log"
    log_path.write_text(log_text, encoding="utf-8")
    if done.rc != 0:
        raise BoardError(f"trtexec failed on the board (exit {done.rc}): {last_error(log_text)}; log: {log_path}")
    engine = out / f"{stem}-{config.precision}.engine"
    conn.get(engine_remote, engine)
    parsed = parse_trtexec(log_text)
    from modnas.exporters.tvm import onnx_input

    input_name, input_shape = onnx_input(onnx_local)
    meta: dict[str, Any] = {
        "format": "tensorrt",
        "built_on": "board",
        "precision": config.precision,
        "workspace_mb": config.workspace_mb,
        "tensorrt_version": parsed["tensorrt_version"],
        "gpu": parsed["device"],
        "compute_capability": parsed["compute_capability"],
        "input_name": input_name,
        "input_shape": input_shape,
        "dynamic_shapes": bool(config.shapes),
        "onnx_sha256": onnx_sha,
        "trtexec_argv": argv,
        "build_seconds": round(float(getattr(done, "seconds", time.perf_counter() - started)), 3),
        "build_timing": {k: parsed[k] for k in ("throughput_qps", "latency_ms", "gpu_compute_ms")} if parsed["layout"] else None,
        "log": log_path.name,
        "remote_engine": engine_remote,
    }
    write_sidecar(engine, meta)
    return ExportResult(path=engine, sha256=sha256_file(engine), max_abs_diff=None, meta=meta)


def tensorrt_missing_reason() -> str | None:
    """None when TensorRT's Python bindings and an NVIDIA GPU are both here, else what is missing."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt Python package is not installed"
    from modnas.profilers.board.runtimes.tensorrt import gpu_present

    return None if gpu_present() else "no NVIDIA GPU found"


def build_local(onnx_path: str | Path, precision: str = "fp16", *, out_dir: str | Path | None = None,
                workspace_mb: int = 1024, name: str | None = None) -> ExportResult:
    """Build with the TensorRT Python builder on this machine (it must be the GPU that will run the engine)."""
    config = TrtBuildConfig(precision=precision, workspace_mb=workspace_mb)
    why = tensorrt_missing_reason()
    if why:
        raise NotAvailable(MISSING_HERE.format(why=why))
    from modnas.exporters.tvm import onnx_input
    from modnas.profilers.board.runtimes.tensorrt import build_engine

    onnx_path = Path(onnx_path)
    out = Path(out_dir) if out_dir else onnx_path.parent
    out.mkdir(parents=True, exist_ok=True)
    engine = out / f"{name or onnx_path.stem}-{config.precision}.engine"
    started = time.perf_counter()
    info = build_engine(str(onnx_path), str(engine), config.precision, config.workspace_mb)
    input_name, input_shape = onnx_input(onnx_path)
    meta = {"format": "tensorrt", "built_on": "local", "precision": config.precision, "workspace_mb": config.workspace_mb,
            "tensorrt_version": info["tensorrt_version"], "input_name": input_name, "input_shape": input_shape,
            "dynamic_shapes": False, "onnx_sha256": sha256_file(onnx_path),
            "build_seconds": round(time.perf_counter() - started, 3)}
    write_sidecar(engine, meta)
    return ExportResult(path=engine, sha256=sha256_file(engine), max_abs_diff=None, meta=meta)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")
