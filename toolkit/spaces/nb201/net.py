"""The standalone NB201 network (C=16, N=5): stem, 3 stages of cells, residual reductions."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from modnas.toolkit.spaces.nb201.cell import EDGES, OPS


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


def make_op(op: str, channels: int) -> nn.Module:
    """One NB201 op at stride 1 (``none`` is handled by the cell, not as a module)."""
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if op == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"no module for op {op!r}")


class Cell(nn.Module):
    """Node j is the sum of op(node i) over its incoming edges; ``none`` edges are left out."""

    def __init__(self, indices: list[int], channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleDict()
        for (j, i), op in zip(EDGES, indices):
            if OPS[op] != "none":
                self.edges[f"{j}_{i}"] = make_op(OPS[op], channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in (1, 2, 3):
            terms = [self.edges[f"{j}_{i}"](nodes[i]) for i in range(j) if f"{j}_{i}" in self.edges]
            nodes.append(sum(terms[1:], terms[0]) if terms else x * 0.0)  # keeps the input in the graph
        return nodes[3]


class ResidualReduction(nn.Module):
    """Stride-2 basic residual block that doubles the channels between stages."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


def build_macro(module: nn.Module, make_cell: Callable[[int], nn.Module], channels: int, cells: int,
                in_channels: int) -> int:
    """Give ``module`` the NB201 macro skeleton (stem, 3 stages of cells, reductions, head); the width at the end."""
    module.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
    layers: list[nn.Module] = []
    c = channels
    for stage in range(3):
        if stage > 0:
            layers.append(ResidualReduction(c, 2 * c))
            c *= 2
        layers.extend(make_cell(c) for _ in range(cells))
    module.layers = nn.Sequential(*layers)
    module.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
    return c


class NB201Network(nn.Module):
    def __init__(self, indices: list[int], num_classes: int = 10, channels: int = 16, cells: int = 5,
                 in_channels: int = 3) -> None:
        super().__init__()
        c = build_macro(self, lambda width: Cell(indices, width), channels, cells, in_channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.layers(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))
