"""ExecuTorch programs (``.pte``): PyTorch's own edge runtime.

``torch.export`` captures the network, ``to_edge_transform_and_lower`` hands every operator XNNPACK
supports to the XNNPACK delegate (Arm and x86 CPUs), and the program is checked against PyTorch in
ExecuTorch's own runtime (``executorch.runtime``), as every format is. INT8 goes through PT2E with
the XNNPACK quantizer: int8 activations (per tensor, MinMax ranges from the calibration images, as
the ONNX INT8 path takes them) and int8 weights per output channel.

ExecuTorch is an optional extra (``pip install 'modnas[executorch]'``); without it every entry point
raises ``NotAvailable`` with one line that says how to install it.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from modnas.exporters.result import ExportMismatch, ExportResult, sha256_file, write_sidecar
from modnas.profilers.errors import BadInput, NotAvailable

PINNED = "1.5.1"  # the version the extra installs (pyproject.toml); the one the figures were taken with
INSTALL = f"pip install 'modnas[executorch]' (executorch=={PINNED})"
TOLERANCE = 1e-4
MAX_CALIBRATION = 256
METHOD = "forward"


def executorch_version() -> str | None:
    """The installed ExecuTorch version, or None when it is not installed."""
    try:
        from executorch.version import __version__
    except Exception:
        return None
    return str(__version__)


def require_executorch() -> str:
    """The installed version; ``NotAvailable`` (one line, how to install it) when ExecuTorch is absent."""
    found = executorch_version()
    if found is None:
        raise NotAvailable(f"ExecuTorch is not installed here: {INSTALL}")
    return found


@contextmanager
def _quiet() -> Iterator[None]:
    """ExecuTorch and torchao warn about experimental APIs on every import and call; keep stderr readable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def fold_batch_norms(model: Any) -> Any:
    """The network with every eval-mode BatchNorm folded away: into the convolution before it where there
    is one (``torch.fx``'s conv-bn fusion), else into an equivalent depthwise 1x1 convolution. Without
    batch-norm nodes, PT2E's convert skips its QAT conv-bn folding (tens of seconds of pattern tracing
    per call). A network ``torch.fx`` cannot trace is returned unchanged."""
    import torch
    from torch.fx.experimental.optimization import fuse

    try:
        folded = fuse(model.eval(), inplace=False)
    except Exception:
        return model
    for name, module in list(folded.named_modules()):
        if isinstance(module, torch.nn.BatchNorm2d) and not module.training and module.track_running_stats:
            _replace(folded, name, _bn_as_conv(module))
    return folded.eval()


def _bn_as_conv(bn: Any) -> Any:
    """An eval BatchNorm2d as the depthwise 1x1 convolution that computes the same affine map."""
    import torch

    channels = bn.num_features
    scale = bn.running_var.detach().double().add(bn.eps).rsqrt()
    shift = -bn.running_mean.detach().double() * scale
    if bn.affine:
        shift = shift * bn.weight.detach().double() + bn.bias.detach().double()
        scale = scale * bn.weight.detach().double()
    conv = torch.nn.Conv2d(channels, channels, 1, groups=channels, bias=True)
    with torch.no_grad():
        conv.weight.copy_(scale.float().view(channels, 1, 1, 1))
        conv.bias.copy_(shift.float())
    return conv.eval()


def _replace(root: Any, name: str, new: Any) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


def _lower(exported: Any) -> bytes:
    """An exported program lowered to the XNNPACK delegate, as the bytes of a ``.pte`` file."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    return bytes(edge.to_executorch().buffer)


def _example(shape: tuple[int, ...], seed: int) -> Any:
    import torch

    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _write(path: Path, program: bytes, check: Any) -> Any:
    """Write the program through a temporary file; ``check(tmp)`` runs before it takes ``path``'s place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".export-", suffix=".pte", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(program)
        result = check(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return result


def export_executorch(model: Any, input_shape: tuple[int, ...] | list[int], path: str | Path, *, check: bool = True,
                      seed: int = 0, tolerance: float = TOLERANCE, meta: dict[str, Any] | None = None) -> ExportResult:
    """Export ``model`` (eval mode) to an XNNPACK-delegated ExecuTorch program; with ``check``, run it in
    ExecuTorch's runtime and refuse it (``ExportMismatch``) when it differs from PyTorch by more than
    ``tolerance`` x max(1, |output|), the bound the ONNX export uses."""
    version = require_executorch()
    import torch

    path = Path(path)
    model = model.eval()
    shape = tuple(int(s) for s in input_shape)
    example = _example(shape, seed)
    with _quiet(), torch.no_grad():
        program = _lower(torch.export.export(model, (example,)))

    def verify(tmp: Path) -> float | None:
        if not check:
            return None
        diff, scale = max_abs_diff_executorch(tmp, model, example)
        if diff > tolerance * max(1.0, scale):
            raise ExportMismatch(f"{path.name}: ExecuTorch differs from PyTorch by {diff:.3g} "
                                 f"(> {tolerance:g} x max(1, |output| = {scale:.3g}))")
        return diff

    diff = _write(path, program, verify)
    info = {"format": "executorch", "backend": "xnnpack", "precision": "fp32", "method": METHOD,
            "input_shape": list(shape), "executorch_version": version, "torch_version": torch.__version__,
            **(meta or {})}
    write_sidecar(path, info)
    return ExportResult(path=path, sha256=sha256_file(path), max_abs_diff=diff, meta=info)


def quantize_executorch(model: Any, input_shape: tuple[int, ...] | list[int], calibration: np.ndarray,
                        path: str | Path, *, seed: int = 0, meta: dict[str, Any] | None = None) -> ExportResult:
    """The static INT8 program of ``model``: PT2E with the XNNPACK quantizer (int8 activations per tensor
    from MinMax ranges over the ``calibration`` images, batch-1, at most 256; int8 weights per output
    channel), lowered to XNNPACK. ``max_abs_diff`` is its distance to the float network in PyTorch on a
    seeded input: reported, not bounded (quantisation moves the outputs; accuracy is the check)."""
    version = require_executorch()
    import torch

    shape = tuple(int(s) for s in input_shape)
    images = np.asarray(calibration, dtype=np.float32)
    if images.ndim != len(shape) or list(images.shape[1:]) != list(shape[1:]):
        raise BadInput(f"calibration images must be [N, {', '.join(map(str, shape[1:]))}], got {list(images.shape)}")
    if len(images) == 0:
        raise BadInput("calibration needs at least one image")
    images = images[:MAX_CALIBRATION]
    path = Path(path)
    model = model.eval()
    example = _example(shape, seed)
    with _quiet(), torch.no_grad():
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        captured = torch.export.export(fold_batch_norms(model), (example,)).module()
        prepared = prepare_pt2e(captured, _xnnpack_quantizer())
        for i in range(len(images)):
            prepared(torch.from_numpy(np.ascontiguousarray(images[i:i + 1])))
        converted = convert_pt2e(prepared)
        program = _lower(torch.export.export(converted, (example,)))

    def verify(tmp: Path) -> float:
        return max_abs_diff_executorch(tmp, model, example)[0]

    diff = _write(path, program, verify)
    info = {"format": "executorch", "backend": "xnnpack", "precision": "int8", "method": METHOD,
            "input_shape": list(shape), "quantizer": "XNNPACKQuantizer (PT2E)", "activations": "int8 per-tensor",
            "weight_quant": "int8 per-channel symmetric", "calibration": "MinMax",
            "calibration_images": int(len(images)), "max_abs_diff_vs_fp32": diff,
            "executorch_version": version, "torch_version": torch.__version__, **(meta or {})}
    write_sidecar(path, info)
    return ExportResult(path=path, sha256=sha256_file(path), max_abs_diff=diff, meta=info)


def _xnnpack_quantizer() -> Any:
    """XNNPACK's symmetric static config with MinMax activation observers (its default is a histogram
    observer: several times slower to calibrate, and not what the ONNX INT8 path uses)."""
    import dataclasses

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e import MinMaxObserver

    config = get_symmetric_quantization_config(is_per_channel=True)
    act = config.input_activation
    act = dataclasses.replace(act, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2 ** -12))
    config = dataclasses.replace(config, input_activation=act, output_activation=act)
    return XNNPACKQuantizer().set_global(config)


class Program:
    """A ``.pte`` file loaded in this process's ExecuTorch runtime: ``run(x)`` takes and returns numpy."""

    def __init__(self, path: str | Path) -> None:
        require_executorch()
        with _quiet():
            from executorch.runtime import Runtime

            self._method = Runtime.get().load_program(Path(path)).load_method(METHOD)

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with _quiet():
            out = self._method.execute([torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))])
        return out[0].detach().numpy().copy()


def max_abs_diff_executorch(pte_path: str | Path, model: Any, example: Any) -> tuple[float, float]:
    """Largest absolute difference between the program in ExecuTorch and PyTorch, and the largest |output|."""
    import torch

    got = Program(pte_path).run(example.numpy())
    with torch.no_grad():
        want = model(example).numpy()
    return float(np.max(np.abs(got - want))), float(np.max(np.abs(want)))


def accuracy_executorch(path: str | Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a program in ExecuTorch's runtime, one image per call (programs take batch 1)."""
    program = Program(path)
    correct = 0
    for i in range(len(y)):
        correct += int(int(np.argmax(program.run(x[i:i + 1])[0])) == int(y[i]))
    return correct / max(1, len(y))


__all__ = ["INSTALL", "PINNED", "Program", "accuracy_executorch", "executorch_version", "export_executorch",
           "fold_batch_norms", "max_abs_diff_executorch", "quantize_executorch", "require_executorch"]
