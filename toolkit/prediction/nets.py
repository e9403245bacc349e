"""Torch modules of the hardware-conditioned predictor (imported only when a predictor is built).

Architecture branches are registered by name in ``ARCH_BRANCHES``: ``"mlp"`` (over the one-hot of
all decisions, any space) and ``"gcn"`` (over a cell graph, for spaces that have one: ``Space.cell_graph``).
Both read a (soft or straight-through) one-hot ``[B, D]`` and are differentiable w.r.t. it.
"""
from __future__ import annotations


import numpy as np
import torch
from torch import nn

from modnas.toolkit.errors import BadInput


class MLPBranch(nn.Module):
    """One-hot of every decision -> hidden -> hidden."""

    def __init__(self, onehot_dim: int, hidden: int, space_name: str) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(onehot_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU())
        self.out_dim = hidden

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.net(onehot)


class GCNBranch(nn.Module):
    """Graph convolutions over the cell's op-node DAG; node features are the edges' op one-hots."""

    def __init__(self, onehot_dim: int, hidden: int, space_name: str, layers: int = 3) -> None:
        super().__init__()
        from modnas.toolkit.spaces import get_space

        graph = get_space(space_name).cell_graph()
        if graph is None:
            raise BadInput(f"the gcn branch needs a cell graph; space {space_name!r} has none (use 'mlp')")
        adj, n_ops = graph
        if onehot_dim % n_ops:
            raise BadInput(f"one-hot width {onehot_dim} does not split over {n_ops} cell edges")
        self.n_ops, self.n_choices = n_ops, onehot_dim // n_ops
        n = adj.shape[0]
        a = adj + np.eye(n, dtype=np.float32)
        a = a / a.sum(axis=1, keepdims=True)  # mean over predecessors and self
        self.register_buffer("adj", torch.from_numpy(a))
        self.feat_dim = self.n_choices + 2  # op one-hot + (is input, is output)
        dims = [self.feat_dim] + [hidden] * layers
        self.weights = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(layers))
        self.out_dim = 2 * hidden

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        b = onehot.shape[0]
        ops = onehot.reshape(b, self.n_ops, self.n_choices)
        io = torch.zeros(b, self.n_ops, 2, dtype=onehot.dtype, device=onehot.device)
        op_nodes = torch.cat([ops, io], dim=-1)
        inp = torch.zeros(b, 1, self.feat_dim, dtype=onehot.dtype, device=onehot.device)
        inp[..., self.n_choices] = 1.0
        out = torch.zeros(b, 1, self.feat_dim, dtype=onehot.dtype, device=onehot.device)
        out[..., self.n_choices + 1] = 1.0
        h = torch.cat([inp, op_nodes, out], dim=1)
        for lin in self.weights:
            h = torch.relu(lin(torch.matmul(self.adj, h)))
        return torch.cat([h[:, -1], h.mean(dim=1)], dim=-1)


ARCH_BRANCHES: dict[str, type[nn.Module]] = {"mlp": MLPBranch, "gcn": GCNBranch}


class CostNet(nn.Module):
    """Architecture branch and hardware branch (emb -> h -> h), concatenated -> MLP -> 1."""

    def __init__(self, branch: str, onehot_dim: int, emb_dim: int, hidden: int, hw_hidden: int,
                 head_hidden: int, space_name: str, product: bool = False) -> None:
        super().__init__()
        if branch not in ARCH_BRANCHES:
            raise BadInput(f"unknown architecture branch {branch!r}; known: {', '.join(sorted(ARCH_BRANCHES))}")
        self.arch = ARCH_BRANCHES[branch](onehot_dim, hidden, space_name)
        self.hw = nn.Sequential(nn.Linear(emb_dim, hw_hidden), nn.ReLU(), nn.Linear(hw_hidden, hw_hidden), nn.ReLU())
        # optional multiplicative interaction: arch features projected to h, times the hardware features
        self.proj = nn.Linear(self.arch.out_dim, hw_hidden) if product else None
        width = self.arch.out_dim + hw_hidden * (2 if product else 1)
        self.head = nn.Sequential(nn.Linear(width, head_hidden), nn.ReLU(),
                                  nn.Linear(head_hidden, head_hidden), nn.ReLU(), nn.Linear(head_hidden, 1))

    def forward(self, onehot: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        a, h = self.arch(onehot), self.hw(emb)
        parts = [a, h] if self.proj is None else [a, h, self.proj(a) * h]
        return self.head(torch.cat(parts, dim=-1)).squeeze(-1)
