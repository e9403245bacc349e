"""Build the artifact a board runs for one architecture (ONNX, TVM library, ExecuTorch program, a language
model's decode and prefill graphs), cached by content."""
from __future__ import annotations

import hashlib
import json
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modnas.toolkit.spaces import Space

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
        from modnas.toolkit.search.run import run_subnet

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
                   target: dict[str, Any] | None = None, run: str | None = None,
                   precision: str = "fp32") -> Artifact:
    """ONNX for onnxruntime and TensorRT (engines are built on the board), a TVM library for tvm, an
    XNNPACK-delegated ``.pte`` program for executorch, a file naming the architecture for a replay
    board's ``replay`` runtime.

    With ``run``, the network carries the run's inherited supernet weights (when it has any)."""
    from modnas.exporters.onnx import export_onnx
    from modnas.exporters.result import read_sidecar, sha256_file

    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if runtime == "replay":
        return replay_artifact(space, arch, cache_dir)
    shape = tuple(space.input_shape(arch))
    weights = _run_tag(run)
    export = space.board_export()
    if export is not None:  # a language model: its decode and prefill graphs, in one file
        with _BUILD_LOCK:
            return _graphs_artifact(space, arch, runtime, cache_dir, run, weights, precision, export)
    if runtime == "executorch":
        with _BUILD_LOCK:
            return _executorch_artifact(space, arch, shape, cache_dir, run, weights, precision)
    onnx_path = cache_dir / f"{cache_key(space.name, arch, 'onnx', None, weights)}.onnx"
    with _BUILD_LOCK:
        if not onnx_path.exists():
            export_onnx(build_model(space, arch, run), shape, onnx_path,
                        meta={"space": space.name, "arch": arch, "weights": weights})
        if precision == "int8":
            return _int8_artifact(onnx_path, runtime, shape, cache_key(space.name, arch, "onnx_int8", None, weights))
        if runtime != "tvm":
            return Artifact(onnx_path, sha256_file(onnx_path), "onnx", shape, read_sidecar(onnx_path))
        from modnas.exporters.targets import resolve_target
        from modnas.exporters.tvm import compile_tvm

        tgt = resolve_target(target)
        key = cache_key(space.name, arch, "tvm", tgt, weights)
        existing = sorted(cache_dir.glob(f"{key}.*"))
        libs = [p for p in existing if p.suffix in (".so", ".tar")]
        if libs:
            lib = libs[0]
            return Artifact(lib, sha256_file(lib), "tvm", shape, read_sidecar(lib))
        result = compile_tvm(onnx_path, tgt, cache_dir, name=key)
        return Artifact(Path(result.path), result.sha256, "tvm", shape, result.meta)


def replay_artifact(space: Space, arch: str, cache_dir: Path) -> Artifact:
    """What a replay board runs: a tiny JSON file naming the architecture (canonical form) and its space."""
    from modnas.profilers.board.replay_runtime import ARTIFACT_FORMAT

    canonical = space.canonical(arch)
    body = json.dumps({"format": ARTIFACT_FORMAT, "space": space.name, "arch": canonical}, sort_keys=True) + "\n"
    data = body.encode()
    sha = hashlib.sha256(data).hexdigest()
    path = cache_dir / f"{cache_key(space.name, canonical, 'replay', None)}.replay.json"
    if not path.is_file() or path.read_bytes() != data:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")  # boards in threads share the cache
        tmp.write_bytes(data)
        tmp.replace(path)
    meta = {"space": space.name, "arch": canonical, "kind": "replay"}
    return Artifact(path, sha, "replay", tuple(space.input_shape(canonical)), meta)


INT8_CALIBRATION_IMAGES = 32


def _int8_artifact(onnx_path: Path, runtime: str, shape: tuple[int, ...], key: str) -> Artifact:
    """The static INT8 (QDQ) model of ``onnx_path`` for onnxruntime, calibrated on a fixed seeded random
    set: profiling measures speed, not accuracy, so the scales only need to be deterministic."""
    import numpy as np

    from modnas.exporters.quantize import quantize_int8
    from modnas.exporters.result import read_sidecar, sha256_file
    from modnas.toolkit.errors import BadInput

    if runtime != "onnxruntime":
        raise BadInput(f"precision: int8 is profiled with runtime onnxruntime or executorch, not {runtime} "
                       "(for TensorRT, `modnas export --quantize int8 --format tensorrt`)")
    path = onnx_path.with_name(f"{key}.onnx")
    if not path.exists():
        images = np.random.default_rng(0).standard_normal((INT8_CALIBRATION_IMAGES, *shape[1:])).astype(np.float32)
        quantize_int8(onnx_path, images, path, meta={"calibration_source": "seeded random (profiling)"})
    return Artifact(path, sha256_file(path), "onnx", shape, read_sidecar(path))


def _executorch_artifact(space: Space, arch: str, shape: tuple[int, ...], cache_dir: Path, run: str | None,
                         weights: str, precision: str) -> Artifact:
    """The XNNPACK-delegated ExecuTorch program (``<hash>.pte``), checked against PyTorch when written; at
    ``precision: int8`` the PT2E INT8 program calibrated on the same seeded random set as the ONNX one
    (profiling measures speed, not accuracy)."""
    import numpy as np

    from modnas.exporters.executorch import export_executorch, quantize_executorch
    from modnas.exporters.result import read_sidecar, sha256_file

    kind = "executorch" if precision == "fp32" else f"executorch_{precision}"
    path = cache_dir / f"{cache_key(space.name, arch, kind, None, weights)}.pte"
    if not path.exists():
        meta = {"space": space.name, "arch": arch, "weights": weights}
        model = build_model(space, arch, run)
        if precision == "int8":
            images = np.random.default_rng(0).standard_normal((INT8_CALIBRATION_IMAGES, *shape[1:])).astype(np.float32)
            quantize_executorch(model, shape, images, path,
                                meta={**meta, "calibration_source": "seeded random (profiling)"})
        else:
            export_executorch(model, shape, path, meta=meta)
    return Artifact(path, sha256_file(path), "executorch", shape, read_sidecar(path))


GRAPH_MEMBERS = {"decode": "decode.onnx", "prefill": "prefill.onnx"}


def _graphs_artifact(space: Space, arch: str, runtime: str, cache_dir: Path, run: str | None, weights: str,
                     precision: str, export: Any) -> Artifact:
    """A language model's artifact: its decode graph (timed for ``latency``) and its prefill companion
    (``prefill``) in one uncompressed tar (``<hash>.tar``, members :data:`GRAPH_MEMBERS`, fixed headers so
    equal graphs hash equal); ``meta["graphs"]`` names the members for the board's runtime. Weights are
    seeded (or the run's): latency does not depend on their values. ``precision: int8`` quantises both
    graphs dynamically (:func:`modnas.exporters.lm_onnx.quantize_lm_int8`)."""
    import tarfile
    import tempfile

    from modnas.exporters.result import read_sidecar, sha256_file, write_sidecar
    from modnas.toolkit.errors import BadInput

    if runtime != "onnxruntime":
        raise BadInput(f"`runtime`: the {space.name} space's decode and prefill graphs are profiled with "
                       f"onnxruntime, not {runtime}", param="runtime")
    if precision not in ("fp32", "int8"):
        raise BadInput(f"`precision`: the {space.name} space is profiled at fp32 or int8, not {precision}",
                       param="precision")
    kind = "onnx_graphs" if precision == "fp32" else f"onnx_graphs_{precision}"
    path = cache_dir / f"{cache_key(space.name, arch, kind, None, weights)}.tar"
    if not path.exists():
        with tempfile.TemporaryDirectory(prefix=".graphs-", dir=cache_dir) as tmp:
            # timed, not checked: the exporter's agreement with PyTorch is what `modnas export` reports and the
            # exporter's tests hold; checking every profiled graph tripled a language model's onboarding
            files = export(build_model(space, arch, run), tmp, "graph", greedy_tokens=0, check=False,
                           meta={"space": space.name, "arch": arch, "weights": weights})
            graphs = {"decode": Path(files["onnx"].path), "prefill": Path(files["onnx_prefill"].path)}
            info = dict(files["onnx"].meta)
            if precision == "int8":
                from modnas.exporters.lm_onnx import quantize_lm_int8

                graphs = {g: Path(quantize_lm_int8(p, Path(tmp) / f"{g}-int8.onnx").path) for g, p in graphs.items()}
            staged = Path(tmp) / "graphs.tar"
            with tarfile.open(staged, "w", format=tarfile.USTAR_FORMAT) as tar:
                for graph, member in GRAPH_MEMBERS.items():
                    entry = tar.gettarinfo(str(graphs[graph]), arcname=member)
                    entry.mtime, entry.uid, entry.gid, entry.uname, entry.gname, entry.mode = 0, 0, 0, "", "", 0o644
                    with open(graphs[graph], "rb") as fh:
                        tar.addfile(entry, fh)
            meta = {"space": space.name, "arch": arch, "weights": weights, "format": "onnx", "precision": precision,
                    "graphs": dict(GRAPH_MEMBERS), "vocab_size": info.get("vocab_size"),
                    "positions": info.get("context"), "layers": info.get("layers"), "opset": info.get("opset")}
            write_sidecar(staged, meta)
            Path(str(staged) + ".json").replace(Path(str(path) + ".json"))  # the sidecar first: the tar marks done
            staged.replace(path)
    return Artifact(path, sha256_file(path), "onnx_graphs", (1, 1), read_sidecar(path))


def _run_tag(run: str | None) -> str:
    """Which weights an artifact carries: 'untrained', or the run's supernet file hash."""
    if run is None:
        return "untrained"
    weights = Path(run) / "supernet.safetensors"
    if not weights.exists():
        return "untrained"
    from modnas.exporters.result import sha256_file

    return "run-" + sha256_file(weights)[:16]
