"""What an NB201 network runs, as kernels: operator x stage, counted over the cells that reach the output.

The exported graph keeps only what the output depends on: an edge whose target node never reaches
the cell's output is pruned, a node with no incoming op is ``input * 0`` (one ``Mul``), a node with
``k`` incoming ops costs ``k - 1`` ``Add``\\s, and identical operations on one tensor are one
operator (the ReLU in front of the convolutions that read one node, a pool read twice, equal sums).
Every stage repeats the cell ``cells`` times at its own width and resolution (16 channels at
32x32, 32 at 16x16, 64 at 8x8); the stem, the two reductions and the head are the same for every
cell and fall into the model's constant.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from modnas.toolkit.spaces.nb201.cell import EDGES, OPS

STAGES: tuple[tuple[int, int], ...] = ((16, 32), (32, 16), (64, 8))  # (channels, resolution)
CELL_KERNELS: tuple[str, ...] = ("conv3x3", "conv1x1", "relu", "avgpool", "identity", "add", "zero")
_OP_KERNEL = {"nor_conv_3x3": "conv3x3", "nor_conv_1x1": "conv1x1", "avg_pool_3x3": "avgpool",
              "skip_connect": "identity"}


def kernel_names() -> list[str]:
    """``<kernel>@<channels>x<resolution>`` for every cell kernel at every stage."""
    return [f"{k}@{c}x{hw}" for c, hw in STAGES for k in CELL_KERNELS]


def cell_kernels(indices: Sequence[int]) -> dict[str, int]:
    """How many of each kernel one cell's exported graph runs: dead edges pruned, and one operator for
    identical operations on one tensor (the exporter merges them: a ReLU or a pool read by several
    edges of one node, a node that is only a skip of another, every ``input * 0``, equal sums)."""
    ops = {(j, i): OPS[o] for (j, i), o in zip(EDGES, indices)}
    needed = {3: True}
    for j in (2, 1):  # a node is needed when a non-``none`` edge leads from it to a needed node
        needed[j] = any(ops[(k, j)] != "none" and needed[k] for k in range(j + 1, 4))
    value: dict[int, Any] = {0: "in"}  # each node's tensor as an expression (equal expressions: one tensor)
    relus: set[Any] = set()
    pools: set[Any] = set()
    adds: set[Any] = set()
    counts = dict.fromkeys(CELL_KERNELS, 0)
    zero = False
    for j in (1, 2, 3):
        if not needed[j]:
            continue
        terms = []
        for i in range(j):
            kernel = _OP_KERNEL.get(ops[(j, i)])
            if kernel is None:
                continue
            counts[kernel] += 1
            if kernel.startswith("conv"):
                relus.add(value[i])
                terms.append(("conv", j, i))  # its own weights: never equal to another
            elif kernel == "avgpool":
                pools.add(value[i])
                terms.append(("pool", value[i]))
            else:
                terms.append(value[i])
        if not terms:
            zero = True
            value[j] = ("zero",)
            continue
        acc = terms[0]
        for t in terms[1:]:  # sum(terms[1:], terms[0]): ((t0 + t1) + t2)
            acc = ("add", acc, t)
            adds.add(acc)
        value[j] = acc
    counts["relu"], counts["avgpool"], counts["add"], counts["zero"] = len(relus), len(pools), len(adds), int(zero)
    return counts


def kernel_counts(space: Any, archs: Sequence[str], cells: int = 5) -> np.ndarray:
    """``[len(archs), len(kernel_names())]``: the kernels each network runs (every stage has ``cells`` cells)."""
    out = np.zeros((len(archs), len(STAGES) * len(CELL_KERNELS)), np.float64)
    cache: dict[tuple[int, ...], np.ndarray] = {}
    for row, arch in enumerate(archs):
        idx = tuple(space.to_indices(arch))
        if idx not in cache:
            per_cell = cell_kernels(idx)
            cache[idx] = np.tile([cells * per_cell[k] for k in CELL_KERNELS], len(STAGES)).astype(np.float64)
        out[row] = cache[idx]
    return out


def kernel_network(name: str) -> tuple[Any, tuple[int, ...]]:
    """A network of the one kernel ``name`` (as :func:`kernel_names` spells it) and its input shape."""
    import torch
    from torch import nn

    from modnas.toolkit.spaces.nb201.net import make_op

    kernel, _, shape = name.partition("@")
    c, hw = (int(v) for v in shape.split("x"))
    if kernel not in CELL_KERNELS or (c, hw) not in STAGES:
        raise ValueError(f"no nb201 kernel {name!r}")

    class Kernel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if kernel in ("conv3x3", "conv1x1"):  # the convolution alone (its ReLU is a kernel of its own)
                size = 3 if kernel == "conv3x3" else 1
                self.op: nn.Module = nn.Sequential(nn.Conv2d(c, c, size, padding=size // 2, bias=False),
                                                   nn.BatchNorm2d(c))
            elif kernel == "relu":
                self.op = nn.ReLU()
            elif kernel == "avgpool":
                self.op = make_op("avg_pool_3x3", c)
            else:
                self.op = nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if kernel == "add":
                return x + x
            if kernel == "zero":
                return x * 0.0
            return self.op(x)

    return Kernel().eval(), (1, c, hw, hw)
