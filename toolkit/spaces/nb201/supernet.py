"""Weight-sharing NB201 supernet that runs only the sampled op per edge (GDAS style).

Module names mirror ``modnas.toolkit.spaces.nb201.net.NB201Network`` with one extra level per edge:
``layers.<l>.edges.<j_i>.<op>.<rest>`` in the supernet is ``layers.<l>.edges.<j_i>.<rest>`` in
the standalone network, so extracting a subnet is a key mapping.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from modnas.toolkit.spaces.nb201.cell import EDGES, OPS
from modnas.toolkit.spaces.nb201.net import NB201Network, build_macro, make_op


class SuperCell(nn.Module):
    """Every non-``none`` op on every edge; the forward pass runs the op the one-hot selects and
    multiplies its output by the selected (straight-through) weight."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleDict()
        for j, i in EDGES:
            self.edges[f"{j}_{i}"] = nn.ModuleDict({op: make_op(op, channels) for op in OPS if op != "none"})

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        choice = weights.detach().argmax(dim=-1).tolist()
        edge = {e: k for k, e in enumerate(EDGES)}
        for j in (1, 2, 3):
            terms = []
            for i in range(j):
                k = edge[(j, i)]
                op = OPS[choice[k]]
                if op == "none":
                    continue
                terms.append(self.edges[f"{j}_{i}"][op](nodes[i]) * weights[k, choice[k]])
            nodes.append(sum(terms[1:], terms[0]) if terms else torch.zeros_like(x))
        return nodes[3]


class NB201Supernet(nn.Module):
    """Stem, 3 stages of ``cells`` shared-architecture cells with residual reductions, head."""

    def __init__(self, num_classes: int = 10, channels: int = 16, cells: int = 5, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes, self.channels, self.cells, self.in_channels = num_classes, channels, cells, in_channels
        c = build_macro(self, SuperCell, channels, cells, in_channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``weights``: ``[6, 5]`` one-hot (possibly straight-through) for the shared cell."""
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x, weights) if isinstance(layer, SuperCell) else layer(x)
        x = self.head(x)
        return self.classifier(torch.flatten(self.pool(x), 1))

    def config(self) -> dict[str, int]:
        return {"num_classes": self.num_classes, "channels": self.channels, "cells": self.cells,
                "in_channels": self.in_channels}


def extract_state(super_state: dict[str, torch.Tensor], indices: list[int]) -> dict[str, torch.Tensor]:
    """The standalone network's state dict for the cell ``indices`` (op code per edge)."""
    chosen = {f"{j}_{i}": OPS[k] for (j, i), k in zip(EDGES, indices)}
    out: dict[str, torch.Tensor] = {}
    for key, value in super_state.items():
        parts = key.split(".")
        if len(parts) > 4 and parts[0] == "layers" and parts[2] == "edges":
            edge, op = parts[3], parts[4]
            if chosen[edge] != op:
                continue
            key = ".".join(parts[:4] + parts[5:])
        out[key] = value.detach().clone()
    return out


def extract_subnet(supernet: NB201Supernet, arch: str) -> NB201Network:
    """A standalone ``NB201Network`` with the weights the supernet shares with ``arch``."""
    from modnas.toolkit.spaces import get_space

    indices = get_space("nb201").to_indices(arch)
    net = NB201Network(indices, **supernet.config())
    net.load_state_dict(extract_state(supernet.state_dict(), indices), strict=True)
    return net


def save_subnet(supernet: NB201Supernet, arch: str, path: str | Path) -> Path:
    """Write the inherited subnet weights as safetensors (the exporters' input)."""
    from safetensors.torch import save_file

    from modnas.toolkit.spaces import get_space

    space = get_space("nb201")
    state = extract_state(supernet.state_dict(), space.to_indices(arch))
    meta = {"space": "nb201", "arch": space.canonical(arch), **{k: str(v) for k, v in supernet.config().items()}}
    path = Path(path)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=meta)
    return path


__all__ = ["NB201Supernet", "SuperCell", "extract_state", "extract_subnet", "save_subnet"]
