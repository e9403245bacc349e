"""Hypernetworks ``H(r, d)``: preference vector and hardware embedding -> architecture logits.

Registered by name:
* ``mlp``: an MLP on the concatenation ``[r, d]``.
* ``experts``: learned device keys; the softmax similarity of ``d`` to the keys mixes the
  outputs of per-expert MLPs on ``r`` (an M-objective form of the paper's expert tables).
Both start with a near-zero last layer, so the first logits are almost uniform. With
``choice_counts`` (decisions with different numbers of choices) the logits are padded to
``n_choices`` and the choices a decision lacks are held at ``MASKED`` (probability 0).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

MASKED = -1e4  # a logit whose softmax probability is exactly 0 in float32


def _small_last(layer: nn.Linear, std: float) -> None:
    nn.init.normal_(layer.weight, std=std)
    nn.init.zeros_(layer.bias)


class _Masked(nn.Module):
    """The padded-logit layout shared by the hypernetworks."""

    def _layout(self, n_decisions: int, n_choices: int, choice_counts: list[int] | None) -> None:
        from modnas.toolkit.search.layout import choice_mask

        self.n_decisions, self.n_choices = n_decisions, n_choices
        self.choice_counts = list(choice_counts) if choice_counts is not None else None
        valid = choice_mask(n_decisions, n_choices, self.choice_counts)
        self.valid: torch.Tensor | None
        self.register_buffer("valid", valid, persistent=False)

    def _mask(self, logits: torch.Tensor) -> torch.Tensor:
        return logits if self.valid is None else logits.masked_fill(~self.valid, MASKED)

    def flatten(self, onehot: torch.Tensor) -> torch.Tensor:
        """A padded (straight-through) one-hot ``[..., n, k]`` in the space's flat encoding."""
        from modnas.toolkit.search.layout import flatten

        return flatten(onehot, self.valid)


class MLPHypernet(_Masked):
    """``[r, d] -> hidden -> ... -> logits [n_decisions, n_choices]``."""

    kind = "mlp"

    def __init__(self, n_objectives: int, emb_dim: int = 10, n_decisions: int = 6, n_choices: int = 5,
                 hidden: int = 64, depth: int = 2, init_std: float = 1e-3,
                 choice_counts: list[int] | None = None) -> None:
        super().__init__()
        self.n_objectives, self.emb_dim = n_objectives, emb_dim
        self._layout(n_decisions, n_choices, choice_counts)
        layers: list[nn.Module] = []
        width = n_objectives + emb_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.Tanh()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, n_decisions * n_choices)
        _small_last(self.out, init_std)

    def forward(self, r: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        h = self.body(torch.cat([r, d], dim=-1))
        return self._mask(self.out(h).reshape(*r.shape[:-1], self.n_decisions, self.n_choices))


class ExpertHypernet(_Masked):
    """Mixture of per-expert MLPs on ``r``, weighted by ``softmax(d K^T / sqrt(E))``."""

    kind = "experts"

    def __init__(self, n_objectives: int, emb_dim: int = 10, n_decisions: int = 6, n_choices: int = 5,
                 hidden: int = 32, experts: int = 8, init_std: float = 1e-3,
                 choice_counts: list[int] | None = None) -> None:
        super().__init__()
        self.n_objectives, self.emb_dim = n_objectives, emb_dim
        self._layout(n_decisions, n_choices, choice_counts)
        out = n_decisions * n_choices
        self.keys = nn.Parameter(torch.randn(experts, emb_dim) * 0.5)
        self.w1 = nn.Parameter(torch.randn(experts, n_objectives, hidden) / math.sqrt(n_objectives))
        self.b1 = nn.Parameter(torch.zeros(experts, hidden))
        self.w2 = nn.Parameter(torch.randn(experts, hidden, out) * init_std)
        self.b2 = nn.Parameter(torch.zeros(experts, out))

    def forward(self, r: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        lead = r.shape[:-1]
        r2, d2 = r.reshape(-1, r.shape[-1]), d.reshape(-1, d.shape[-1])
        sim = torch.softmax(d2 @ self.keys.T / math.sqrt(self.emb_dim), dim=-1)   # [B, X]
        h = torch.tanh(torch.einsum("bm,xmh->bxh", r2, self.w1) + self.b1)        # [B, X, H]
        y = torch.einsum("bxh,xho->bxo", h, self.w2) + self.b2                    # [B, X, O]
        mixed = torch.einsum("bx,bxo->bo", sim, y)
        return self._mask(mixed.reshape(*lead, self.n_decisions, self.n_choices))


HYPERNETS: dict[str, Callable[..., nn.Module]] = {"mlp": MLPHypernet, "experts": ExpertHypernet}


def build_hypernet(kind: str, **kwargs: Any) -> nn.Module:
    """A hypernetwork by registry name."""
    from modnas.toolkit.errors import BadInput

    if kind not in HYPERNETS:
        raise BadInput(f"unknown hypernetwork {kind!r}; known: {', '.join(sorted(HYPERNETS))}")
    return HYPERNETS[kind](**kwargs)


def flat_params(module: nn.Module) -> torch.Tensor:
    """All parameters of ``module`` as one detached vector (for comparisons and tests)."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


__all__ = ["ExpertHypernet", "HYPERNETS", "MLPHypernet", "build_hypernet", "flat_params"]
