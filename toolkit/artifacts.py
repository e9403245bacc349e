"""Build the artifact a board runs for one architecture (ONNX, TVM library), cached by content."""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.spaces import Space

# torch.onnx.export and TVM compilation are not safe to run from several threads at once
_BUILD_LOCK = threading.Lock()


@dataclass(frozen=True)
class Artifact:
    """A file ready to push to a board, with its content hash and what the board needs to run it."""

    path: Path
    sha256: str
    kind: str
    input_shape: tuple[int, ...]
    meta: dict[str, Any]


def weights_seed(space: str, arch: str) -> int:
    """Profiling uses untrained weights, fixed per architecture so the artifact hash is stable."""
    return int.from_bytes(hashlib.sha256(f"{space}:{arch}".encode()).digest()[:4], "big")


def build_model(space: Space, arch: str, run: str | None = None) -> Any:
    """The standalone network: a run's inherited supernet weights when it has them, else seeded untrained ones."""
    import torch

    if run is not None:
        from toolkit.search.run import run_subnet

        inherited = run_subnet(Path(run), space.name, arch)
        if inherited is not None:
            return inherited.eval()
    torch.manual_seed(weights_seed(space.name, arch))
    return space.build(arch).eval()


def cache_key(space: str, arch: str, kind: str, target: dict[str, Any] | None, weights: str = "untrained") -> str:
    blob = json.dumps({"space": space, "arch": arch, "kind": kind, "target": target, "weights": weights},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def build_artifact(space: Space, arch: str, runtime: str, cache_dir: Path,
                   target: dict[str, Any] | None = None, run: str | None = None) -> Artifact:
    """ONNX for onnxruntime and TensorRT (engines are built on the board), a TVM library for tvm.

    With ``run``, the network carries the run's inherited supernet weights (when it has any)."""
    from exporters.onnx import export_onnx
    from exporters.result import read_sidecar, sha256_file

    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    shape = tuple(space.input_shape(arch))
    weights = _run_tag(run)
    onnx_path = cache_dir / f"{cache_key(space.name, arch, 'onnx', None, weights)}.onnx"
    with _BUILD_LOCK:
        if not onnx_path.exists():
            export_onnx(build_model(space, arch, run), shape, onnx_path,
                        meta={"space": space.name, "arch": arch, "weights": weights})
        if runtime != "tvm":
            return Artifact(onnx_path, sha256_file(onnx_path), "onnx", shape, read_sidecar(onnx_path))
        from exporters.targets import resolve_target
        from exporters.tvm import compile_tvm

        tgt = resolve_target(target)
        key = cache_key(space.name, arch, "tvm", tgt, weights)
        existing = sorted(cache_dir.glob(f"{key}.*"))
        libs = [p for p in existing if p.suffix in (".so", ".tar")]
        if libs:
            lib = libs[0]
            return Artifact(lib, sha256_file(lib), "tvm", shape, read_sidecar(lib))
        result = compile_tvm(onnx_path, tgt, cache_dir, name=key)
        return Artifact(Path(result.path), result.sha256, "tvm", shape, result.meta)


def _run_tag(run: str | None) -> str:
    """Which weights an artifact carries: 'untrained', or the run's supernet file hash."""
    if run is None:
        return "untrained"
    weights = Path(run) / "supernet.safetensors"
    if not weights.exists():
        return "untrained"
    from exporters.result import sha256_file

    return "run-" + sha256_file(weights)[:16]
