"""Static INT8 quantisation of an exported ONNX file with onnxruntime's quantisation tools.

QDQ format (QuantizeLinear/DequantizeLinear pairs around each quantised operator, which
onnxruntime's CPU provider fuses into integer kernels and TensorRT reads as explicit quantisation),
signed 8-bit weights per output channel (both runtimes support it), activation ranges from MinMax
calibration on the images given, which should be training images. Activations are unsigned 8-bit
for onnxruntime (``target="onnxruntime"``: its CPU kernels left some NB201 convolutions unfused with
signed activations, up to 20x slower than fp32 on this machine) and signed, symmetric for TensorRT
(``target="tensorrt"``: TensorRT takes only zero-point-0 int8).
The float model is first run through onnxruntime's pre-processing (shape inference, graph
optimisation), as its documentation advises.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from modnas.exporters.result import ExportResult, read_sidecar, sha256_file, write_sidecar
from modnas.profilers.errors import BadInput

MAX_CALIBRATION = 256
# only the compute-heavy operators: with Add, pooling and ReLU quantised too, onnxruntime 1.32 ran NB201
# cells with pooling 3-6x slower than fp32 on this machine (benchmarks/int8_speedup.py --all-ops)
QUANTIZED_OPS: tuple[str, ...] = ("Conv", "Gemm", "MatMul")


class ArrayCalibrationReader:
    """A ``CalibrationDataReader`` over a numpy array ``[N, C, H, W]``, one batch-1 feed at a time."""

    def __init__(self, input_name: str, images: np.ndarray) -> None:
        self.input_name = input_name
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def _feeds(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(len(self.images)):
            yield {self.input_name: self.images[i:i + 1]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = self._feeds()
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None

    def __len__(self) -> int:
        return len(self.images)


def _reader_class() -> type:
    """The reader as a subclass of onnxruntime's ``CalibrationDataReader`` (imported lazily)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(ArrayCalibrationReader, CalibrationDataReader):  # type: ignore[misc]
        pass

    return Reader


def quantize_int8(onnx_path: str | Path, calibration: np.ndarray, out_path: str | Path | None = None, *,
                  per_channel: bool = True, op_types: tuple[str, ...] | None = QUANTIZED_OPS,
                  target: str = "onnxruntime", meta: dict[str, Any] | None = None) -> ExportResult:
    """Write the static INT8 (QDQ) model of ``onnx_path`` calibrated on ``calibration`` images
    (batch-1 feeds; at most 256 are used); ``op_types`` are the operators quantised (None: every one
    onnxruntime can). Returns the file with its hash and sidecar metadata."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from modnas.exporters.tvm import onnx_input

    onnx_path = Path(onnx_path)
    input_name, input_shape = onnx_input(onnx_path)
    images = np.asarray(calibration, dtype=np.float32)
    if images.ndim != 4 or list(images.shape[1:]) != list(input_shape[1:]):
        raise BadInput(f"calibration images must be [N, {', '.join(map(str, input_shape[1:]))}], "
                       f"got {list(images.shape)}")
    if len(images) == 0:
        raise BadInput("calibration needs at least one image")
    if target not in ("onnxruntime", "tensorrt"):
        raise BadInput(f"quantisation target: onnxruntime or tensorrt, got {target!r}")
    activations = QuantType.QUInt8 if target == "onnxruntime" else QuantType.QInt8
    images = images[:MAX_CALIBRATION]
    out = Path(out_path) if out_path else onnx_path.with_name(onnx_path.stem + "-int8.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=out.parent) as tmpdir:
        pre = Path(tmpdir) / "pre.onnx"
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
        staged = Path(tmpdir) / "int8.onnx"
        quantize_static(str(pre), str(staged), _reader_class()(input_name, images), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=activations, weight_type=QuantType.QInt8,
                        op_types_to_quantize=list(op_types) if op_types else None,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": target == "tensorrt", "WeightSymmetric": True})
        onnx.checker.check_model(onnx.load(str(staged)), full_check=True)
        os.replace(staged, out)
    base = read_sidecar(onnx_path)
    info = {**base, "format": "onnx", "precision": "int8", "quant_format": "QDQ", "for": target,
            "activations": "uint8" if target == "onnxruntime" else "int8 symmetric",
            "weight_quant": "int8 per-channel" if per_channel else "int8 per-tensor", "calibration": "MinMax",
            "quantized_ops": list(op_types) if op_types else "all",
            "calibration_images": int(len(images)), "fp32_sha256": sha256_file(onnx_path), **(meta or {})}
    write_sidecar(out, info)
    return ExportResult(path=out, sha256=sha256_file(out), max_abs_diff=None, meta=info)


def is_qdq(onnx_path: str | Path) -> bool:
    """Whether the graph carries QuantizeLinear/DequantizeLinear nodes."""
    import onnx

    ops = {n.op_type for n in onnx.load(str(onnx_path), load_external_data=False).graph.node}
    return {"QuantizeLinear", "DequantizeLinear"} <= ops


__all__ = ["ArrayCalibrationReader", "MAX_CALIBRATION", "is_qdq", "quantize_int8"]
