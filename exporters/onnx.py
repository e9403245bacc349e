"""Single-file ONNX export (opset 17), checked by onnx.checker and against PyTorch in onnxruntime."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from modnas.exporters.result import ExportMismatch, ExportResult, sha256_file, write_sidecar

OPSET = 17
TOLERANCE = 1e-4


def export_onnx(model: Any, input_shape: tuple[int, ...] | list[int], path: str | Path, *, check: bool = True,
                seed: int = 0, tolerance: float = TOLERANCE, meta: dict[str, Any] | None = None) -> ExportResult:
    """Export ``model`` in eval mode to one ONNX file; compare onnxruntime with PyTorch when ``check``."""
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    shape = tuple(int(s) for s in input_shape)
    example = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    fd, tmp_name = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with torch.no_grad():
            torch.onnx.export(model, (example,), str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=["input"], output_names=["output"], do_constant_folding=True)
        proto = onnx.load(str(tmp), load_external_data=False)
        onnx.checker.check_model(proto, full_check=True)
        diff = None
        if check:
            diff, scale = max_abs_diff_onnx(tmp, model, example)
            # float32 cannot hold 1e-4 absolute on outputs in the hundreds: scale the bound with them
            if diff > tolerance * max(1.0, scale):
                raise ExportMismatch(f"{path.name}: onnxruntime differs from PyTorch by {diff:.3g} "
                                     f"(> {tolerance:g} x max(1, |output| = {scale:.3g}))")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    info = {"format": "onnx", "opset": OPSET, "input_name": "input", "input_shape": list(shape),
            "onnx_version": onnx.__version__, "torch_version": torch.__version__, **(meta or {})}
    write_sidecar(path, info)
    return ExportResult(path=path, sha256=sha256_file(path), max_abs_diff=diff, meta=info)


def max_abs_diff_onnx(onnx_path: str | Path, model: Any, example: Any) -> tuple[float, float]:
    """Largest absolute difference between onnxruntime on CPU and PyTorch, and the largest |output|."""
    import numpy as np
    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
    with torch.no_grad():
        want = model(example).numpy()
    return float(np.max(np.abs(got - want))), float(np.max(np.abs(want)))
