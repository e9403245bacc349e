"""A third search space added through the one door: this file and one registry call.

``ToySpace`` (a few choices, a tiny network, a table of synthetic devices and an accuracy table in a
data directory of its own) goes through the commands a user runs on a new space: predictor fit on
its tables, profile on a replay board, predict, a short search, pareto, select and export.
Nothing outside this file knows the space.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces import Decision, Space, get_space, register_space, unregister_space

WIDTHS = (4, 8, 16)
KERNELS = (1, 3, 5)
POOLS = ("avg", "max")
_FORM = re.compile(r"^w=(\d+)-(\d+)-(\d+);k=(\d)-(\d);p=(avg|max)$")


@dataclass
class ToyTable:
    """Devices x every toy architecture for one metric."""

    metric: str
    keys: list[str]
    archs: list[str]
    values: np.ndarray
    digest: str

    def row(self, key: str) -> np.ndarray:
        if key not in self.keys:
            raise BadInput(f"unknown device {key!r} in the toy {self.metric} table")
        return self.values[self.keys.index(key)]

    def values_by_arch(self, key: str) -> dict[str, float]:
        return {a: float(v) for a, v in zip(self.archs, self.row(key)) if np.isfinite(v)}

    def subset(self, keys: list[str]) -> "ToyTable":
        return ToyTable(self.metric, list(keys), list(self.archs), self.values[[self.keys.index(k) for k in keys]],
                        self.digest)


class ToyNet(nn.Module):
    def __init__(self, widths: tuple[int, ...], kernels: tuple[int, ...], pool: str, num_classes: int = 10) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.body = nn.Sequential(
            nn.Conv2d(3, w1, kernels[0], padding=kernels[0] // 2), nn.ReLU(),
            nn.Conv2d(w1, w2, kernels[1], padding=kernels[1] // 2, stride=2), nn.ReLU(),
            nn.Conv2d(w2, w3, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1))
        self.head = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).flatten(1))


class ToySpace(Space):
    """Three conv widths, two kernel sizes and a pooling: 486 networks on 16x16 images."""

    name = "toy"
    enumerable = True
    table_metrics = ("latency",)
    table_coverage = 0.9
    tasks = ("toy",)

    def __init__(self) -> None:
        self.decisions = ([Decision(f"w{i}", tuple(map(str, WIDTHS))) for i in range(3)]
                          + [Decision(f"k{i}", tuple(map(str, KERNELS))) for i in range(2)]
                          + [Decision("pool", POOLS)])

    def to_indices(self, arch: str) -> list[int]:
        m = _FORM.match(arch.strip()) if isinstance(arch, str) else None
        if not m:
            raise BadInput(f"malformed toy architecture {arch!r}: expected w=A-B-C;k=X-Y;p=avg|max")
        w, k, p = [int(x) for x in m.groups()[:3]], [int(x) for x in m.groups()[3:5]], m.group(6)
        if any(x not in WIDTHS for x in w) or any(x not in KERNELS for x in k):
            raise BadInput(f"malformed toy architecture {arch!r}: widths in {WIDTHS}, kernels in {KERNELS}")
        return [WIDTHS.index(x) for x in w] + [KERNELS.index(x) for x in k] + [POOLS.index(p)]

    def from_indices(self, indices: Any) -> str:
        i = [int(x) for x in indices]
        return (f"w={WIDTHS[i[0]]}-{WIDTHS[i[1]]}-{WIDTHS[i[2]]};k={KERNELS[i[3]]}-{KERNELS[i[4]]};"
                f"p={POOLS[i[5]]}")

    def all_archs(self) -> list[str]:
        return [self.from_indices(c) for c in itertools.product(range(3), range(3), range(3), range(3), range(3),
                                                                 range(2))]

    def reference_archs(self) -> list[str]:
        return self.all_archs()[::49][:10]

    def build(self, arch: str, num_classes: int = 10, **_: Any) -> nn.Module:
        i = self.to_indices(arch)
        return ToyNet(tuple(WIDTHS[j] for j in i[:3]), tuple(KERNELS[j] for j in i[3:5]), POOLS[i[5]], num_classes)

    def input_shape(self, arch: str) -> tuple[int, ...]:
        return (1, 3, 16, 16)

    def flops(self, arch: str) -> float:
        i = self.to_indices(arch)
        w1, w2, w3 = (WIDTHS[j] for j in i[:3])
        k1, k2 = (KERNELS[j] for j in i[3:5])
        return (3 * w1 * k1 * k1 * 256 + w1 * w2 * k2 * k2 * 64 + w2 * w3 * 9 * 64) / 1e6

    def load_table(self, data_dir: Any, metric: str = "latency") -> ToyTable:
        path = Path(data_dir) / "toy" / f"{metric}.json"
        if metric not in self.table_metrics or not path.exists():
            raise BadInput(f"no {metric} table for the toy space under {data_dir}")
        doc = json.loads(path.read_text())
        return ToyTable(metric, doc["keys"], doc["archs"], np.asarray(doc["values"], dtype=np.float64),
                        hashlib.sha256(path.read_bytes()).hexdigest())

    def task_column(self, task: str) -> str:
        if task not in self.tasks:
            raise BadInput(f"unknown task {task!r}; known: toy")
        return "toy_acc"

    def task_of_column(self, column: str) -> str | None:
        return "toy" if column == "toy_acc" else None

    def accuracy_column(self, data_dir: Any, column: str) -> np.ndarray:
        doc = json.loads((Path(data_dir) / "toy" / "accuracy.json").read_text())
        return np.asarray(doc[column], dtype=np.float64)


def additive_latency(space: ToySpace, rng: np.random.Generator, scale: float) -> np.ndarray:
    """ms of every architecture on one synthetic device: a per-choice cost plus a constant, with a
    device-specific tilt, so devices agree on shape but not exactly."""
    base = np.array([0.02, 0.05, 0.15] * 3 + [0.01, 0.06, 0.18] * 2 + [0.0, 0.02])
    cost = base * scale * np.exp(rng.normal(0, 0.15, base.size))
    onehot = space.encode(space.all_archs())
    return onehot @ cost + 0.05 * scale


@pytest.fixture
def toy(tmp_path: Path) -> Iterator[tuple[ToySpace, Path, dict[str, float]]]:
    """The registered toy space, its data directory (12 training devices, accuracy) and a held-out device."""
    register_space("toy", ToySpace)  # the one registry line
    space = get_space("toy")
    archs = space.all_archs()
    rng = np.random.default_rng(0)
    keys = [f"toy:dev{i}" for i in range(12)]
    values = [additive_latency(space, rng, s) for s in np.geomspace(0.5, 8.0, len(keys))]
    data = tmp_path / "data"
    (data / "toy").mkdir(parents=True)
    (data / "toy" / "latency.json").write_text(json.dumps({"keys": keys, "archs": archs,
                                                           "values": [v.tolist() for v in values]}))
    onehot = space.encode(archs)
    acc = 60 + onehot @ np.array([0, 3, 5] * 3 + [0, 2, 3] * 2 + [0, 1.0]) + rng.normal(0, 0.3, len(archs))
    (data / "toy" / "accuracy.json").write_text(json.dumps({"toy_acc": acc.tolist()}))
    held = dict(zip(archs, additive_latency(space, rng, 2.5).tolist()))
    try:
        yield space, data, held
    finally:
        unregister_space("toy")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    from modnas.toolkit.cli import main

    code = main([*argv, "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_toy_space_goes_through_every_command(toy: tuple[ToySpace, Path, dict[str, float]], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from modnas.toolkit.data.replay_tables import write_device

    space, data, held = toy
    fit = _run(capsys, "predictor", "fit", "--space", "toy", "--data", str(data))
    assert len(fit["devices"]) == 12 and Path(fit["path"]).exists()

    board = write_device(tmp_path / "boards", "toyboard", held, noise=0.0)
    _run(capsys, "profile", str(board), "--space", "toy", "--archs", "refs")
    _run(capsys, "profile", str(board), "--space", "toy", "--archs", "random:20")

    predicted = _run(capsys, "predict", "--device", "toyboard", "--space", "toy", "--archs", "all")
    assert len(predicted) == len(space.all_archs())
    pred = np.array([r["value"] for r in predicted])
    truth = np.array([held[space.canonical(r["arch"])] for r in predicted])
    assert spearmanr(pred, truth)[0] > 0.9
    assert np.median(np.abs(pred / truth - 1)) < 0.15

    run = tmp_path / "run"
    result = _run(capsys, "search", "--space", "toy", "--devices", "toy:dev0,toy:dev5,toy:dev11", "--data", str(data),
                  "--epochs", "1", "--out", str(run))
    assert (run / "hypernet.safetensors").exists() and result["devices"] == ["toy:dev0", "toy:dev5", "toy:dev11"]
    assert json.loads((run / "config.json").read_text())["config"]["space"] == "toy"

    front = _run(capsys, "pareto", "--device", "toyboard", "--run", str(run), "--preferences", "6")
    assert front and all(space.canonical(r["arch"]) == r["arch"] for r in front)
    lat = sorted(r["predicted"]["latency_ms"] for r in front)
    budget = lat[len(lat) // 2] * 1.2
    pick = _run(capsys, "select", "--device", "toyboard", "--run", str(run), "--budget-ms", f"{budget:.6f}")
    assert pick["arch"] in space.all_archs()
    assert pick["predicted"]["latency_ms"] * (1 + pick["margin"]) <= budget

    out = tmp_path / "export"
    exported = _run(capsys, "export", pick["arch"], "--run", str(run), "--format", "onnx", "--out", str(out))
    onnx_files = list(out.rglob("*.onnx"))
    assert len(onnx_files) == 1
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_files[0]), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((1, 3, 16, 16), dtype=np.float32)
    torch.manual_seed(0)
    assert session.run(None, {session.get_inputs()[0].name: x})[0].shape == (1, 10)
    assert json.dumps(exported)  # a JSON document came back


def test_an_unregistered_space_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    from modnas.toolkit.cli import main

    from modnas.toolkit.spaces import space_names

    assert main(["space", "refs", "--space", "toy"]) == 2
    assert {"nb201", "ofa_mbv3"} <= set(space_names())
    assert f"unknown space 'toy'; known: {', '.join(space_names())}" in capsys.readouterr().err
