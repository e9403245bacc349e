"""ONNX export: one file, opset 17, numerically equal to PyTorch in onnxruntime."""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

from modnas.exporters.onnx import OPSET, export_onnx
from modnas.exporters.result import ExportMismatch, read_sidecar, sha256_file
from modnas.toolkit.workflow.artifacts import build_model
from modnas.toolkit.spaces import get_space

ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|avg_pool_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|avg_pool_3x3~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_3x3~2|",
]


@pytest.mark.parametrize("arch", ARCHS)
def test_export_matches_pytorch(arch: str, tmp_path: Path) -> None:
    space = get_space("nb201")
    res = export_onnx(build_model(space, arch), space.input_shape(arch), tmp_path / "net.onnx")
    assert res.max_abs_diff is not None and res.max_abs_diff <= 1e-4
    assert res.sha256 == sha256_file(res.path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["net.onnx", "net.onnx.json"]  # no external data, no temp files left
    proto = onnx.load(str(res.path))
    assert proto.opset_import[0].version == OPSET
    assert read_sidecar(res.path)["input_shape"] == [1, 3, 32, 32]


def test_same_arch_same_bytes(tmp_path: Path) -> None:
    space = get_space("nb201")
    a = export_onnx(build_model(space, ARCHS[0]), (1, 3, 32, 32), tmp_path / "a.onnx")
    b = export_onnx(build_model(space, ARCHS[0]), (1, 3, 32, 32), tmp_path / "b.onnx")
    c = export_onnx(build_model(space, ARCHS[3]), (1, 3, 32, 32), tmp_path / "c.onnx")
    assert a.sha256 == b.sha256 != c.sha256


class _Diverges(torch.nn.Module):
    """Different in PyTorch eval and in the exported graph: the check must catch it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            return x * 1.01
        return x


def test_mismatch_is_refused_and_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(ExportMismatch):
        export_onnx(_Diverges(), (1, 4), tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []
