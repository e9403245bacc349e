"""NAS-Bench-201: a 4-node cell with 6 edges, each one of 5 ops (15,625 cells)."""
from __future__ import annotations

import gzip
import re
from functools import cached_property
from importlib import resources
from typing import Any

from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces.base import Decision, Space
from modnas.toolkit.spaces.nb201.cell import EDGES, OPS, is_connected


# The ten reference architectures of the hardware embedding (benchmark indices).
REFERENCE_INDICES: tuple[int, ...] = (11982, 431, 55, 9, 14451, 8636, 9881, 13479, 6196, 1462)

_TOKEN = re.compile(r"^([a-z_0-9]+)~(\d)$")
_VECTOR = re.compile(r"^[0-4](-?[0-4]){5}$")


class NB201Space(Space):
    """The benchmark's cell space; C=16, N=5 cells per stage, 32x32x3 input, 10 classes."""

    name = "nb201"
    enumerable = True
    table_metrics = ("latency", "energy")
    table_coverage = 15000 / 15625  # a usable table device has (nearly) every cell
    tasks = ("cifar10", "cifar100", "imagenet16-120")
    shipped_runs = {None: "default", "cifar10": "default", "cifar100": "nb201_cifar100",
                    "imagenet16-120": "nb201_imagenet16-120"}

    def __init__(self) -> None:
        self.decisions = [Decision(f"edge{j}<-{i}", OPS) for j, i in EDGES]

    # -- strings -----------------------------------------------------------------------------
    def to_indices(self, arch: str) -> list[int]:
        if not isinstance(arch, str):
            raise BadInput(f"architecture must be a string, got {type(arch).__name__}")
        text = arch.strip()
        if _VECTOR.match(text):  # the benchmark's op-code vector, e.g. 4-2-1-2-1-1
            return [int(c) for c in text.replace("-", "")]
        shown = text if len(text) <= 120 else text[:117] + "..."
        if not (text.startswith("|") and text.endswith("|")):
            raise BadInput(f"malformed nb201 architecture {shown!r}: must start and end with '|'")
        nodes = text.split("+")
        if len(nodes) != 3:
            raise BadInput(f"malformed nb201 architecture {shown!r}: expected 3 nodes joined by '+', got {len(nodes)}")
        indices: list[int] = []
        for j, node in enumerate(nodes, start=1):
            if not (node.startswith("|") and node.endswith("|")) or len(node) < 2:
                raise BadInput(f"malformed nb201 architecture {shown!r}: node {j} must be '|op~i|...|'")
            tokens = node[1:-1].split("|")
            if len(tokens) != j:
                raise BadInput(f"malformed nb201 architecture {shown!r}: node {j} needs {j} edges, got {len(tokens)}")
            for i, token in enumerate(tokens):
                m = _TOKEN.match(token)
                if not m:
                    raise BadInput(f"malformed nb201 architecture {shown!r}: bad edge {token!r}")
                op, src = m.group(1), int(m.group(2))
                if op not in OPS:
                    raise BadInput(f"malformed nb201 architecture {shown!r}: unknown op {op!r}")
                if src != i:
                    raise BadInput(f"malformed nb201 architecture {shown!r}: edge {token!r} of node {j} must come from node {i}")
                indices.append(OPS.index(op))
        return indices

    def from_indices(self, indices: Any) -> str:
        idx = [int(x) for x in indices]
        if len(idx) != 6 or any(not 0 <= x < len(OPS) for x in idx):
            raise BadInput(f"nb201 needs 6 op indices in 0..4, got {idx}")
        ops = [OPS[x] for x in idx]
        return (f"|{ops[0]}~0|+|{ops[1]}~0|{ops[2]}~1|+"
                f"|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|")

    # -- the benchmark's index order ---------------------------------------------------------
    @cached_property
    def _index_codes(self) -> list[str]:
        raw = resources.files("modnas.toolkit").joinpath("assets/nb201_index.txt.gz").read_bytes()
        codes = gzip.decompress(raw).decode().split()
        if len(codes) != 15625:
            raise RuntimeError("toolkit/assets/nb201_index.txt.gz is damaged: reinstall the package")
        return codes

    @cached_property
    def _code_to_index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self._index_codes)}

    def index(self, arch: str) -> int:
        """The architecture's index in the benchmark tables (0..15624)."""
        return self._code_to_index["".join(str(i) for i in self.to_indices(arch))]

    def arch_at(self, index: int) -> str:
        if not 0 <= int(index) < 15625:
            raise BadInput(f"nb201 index {index} is outside 0..15624")
        return self.from_indices([int(c) for c in self._index_codes[int(index)]])

    @cached_property
    def _all_archs(self) -> tuple[str, ...]:
        return tuple(self.from_indices([int(c) for c in code]) for code in self._index_codes)

    def all_archs(self) -> list[str]:
        """Every cell, in the benchmark's index order."""
        return list(self._all_archs)

    def usable(self, archs: Any) -> Any:
        """Connected cells only: a disconnected one (no path of non-``none`` ops) is chance level."""
        import numpy as np

        return np.array([is_connected(self.to_indices(a)) for a in archs], dtype=bool)

    def sample(self, n: int, seed: int = 0) -> list[str]:
        import numpy as np

        if not 0 <= n <= 15625:
            raise BadInput(f"cannot sample {n} nb201 architectures (the space has 15,625)")
        picks = np.random.default_rng(seed).permutation(15625)[:n]
        return [self.arch_at(int(i)) for i in picks]

    def reference_archs(self) -> list[str]:
        return [self.arch_at(i) for i in REFERENCE_INDICES]

    # -- properties of the network -------------------------------------------------------------
    def input_shape(self, arch: str) -> tuple[int, ...]:
        return (1, 3, 32, 32)

    is_connected = staticmethod(is_connected)

    def flops(self, arch: str) -> float:
        idx = self.to_indices(arch)
        total = 3 * 16 * 9 * 32 * 32  # stem
        for c, hw in ((16, 32), (32, 16), (64, 8)):
            per_cell = sum(c * c * (9 if op == 3 else 1) * hw * hw for op in idx if op in (2, 3))
            total += 5 * per_cell
        # two residual reduction blocks: conv3x3 stride 2, conv3x3, 1x1 shortcut
        for cin, cout, hw in ((16, 32, 16), (32, 64, 8)):
            total += (cin * cout * 9 + cout * cout * 9 + cin * cout) * hw * hw
        total += 64 * 10
        return total / 1e6

    def build(self, arch: str, num_classes: int = 10, channels: int = 16, cells: int = 5) -> Any:
        from modnas.toolkit.spaces.nb201.net import NB201Network

        return NB201Network(self.to_indices(arch), num_classes=num_classes, channels=channels, cells=cells)

    # -- kernels (the structural device model) ---------------------------------------------------
    def kernel_names(self) -> list[str]:
        from modnas.toolkit.spaces.nb201.kernels import kernel_names

        return kernel_names()

    def kernel_counts(self, archs: Any) -> Any:
        from modnas.toolkit.spaces.nb201.kernels import kernel_counts

        return kernel_counts(self, archs)

    def kernel_network(self, name: str) -> Any:
        from modnas.toolkit.spaces.nb201.kernels import kernel_network

        return kernel_network(name)

    # -- tables and tasks ------------------------------------------------------------------------
    def load_table(self, data_dir: Any, metric: str = "latency") -> Any:
        from modnas.toolkit.spaces.nb201.tables import load_table

        return load_table(data_dir, metric)

    def predictor_table(self, table: Any) -> Any:
        return table.connected_only()

    def task_column(self, task: str) -> str:
        from modnas.toolkit.spaces.nb201.tasks import task_column

        return task_column(task)

    def task_of_column(self, column: str) -> str | None:
        from modnas.toolkit.spaces.nb201.tasks import task_of_column

        return task_of_column(column)

    def accuracy_column(self, data_dir: Any, column: str) -> Any:
        import numpy as np

        from modnas.toolkit.spaces.nb201.tables import load_accuracy

        table = load_accuracy(data_dir)
        if column not in table.columns:
            raise BadInput(f"no accuracy column {column!r} in the accuracy table")
        return np.asarray(table.sort_index()[column], dtype=np.float64)

    def cell_graph(self) -> Any:
        from modnas.toolkit.spaces.nb201.cell import op_graph

        return op_graph()

    # -- the supernet ------------------------------------------------------------------------------
    def build_supernet(self, num_classes: int, cfg: Any) -> Any:
        from modnas.toolkit.spaces.nb201.supernet import NB201Supernet

        return NB201Supernet(num_classes=num_classes, channels=cfg.channels, cells=cfg.cells)

    def load_supernet(self, args: dict[str, Any]) -> Any:
        from modnas.toolkit.spaces.nb201.supernet import NB201Supernet

        return NB201Supernet(**args)

    def supernet_logits(self, supernet: Any, x: Any, onehot: Any) -> Any:
        return supernet(x, onehot.reshape(len(EDGES), len(OPS)))

    def subnet(self, supernet: Any, arch: str) -> Any:
        from modnas.toolkit.spaces.nb201.supernet import extract_subnet

        return extract_subnet(supernet, arch)

    def run_build_kwargs(self, config: Any, supernet_args: dict[str, Any] | None) -> dict[str, Any]:
        return {"channels": int(config.channels), "cells": int(config.cells)}
