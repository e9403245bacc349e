"""The hypernetwork's logit layout over any space, and the buffers of a supernet around a per-subnet
recalibration (what each space's supernet is and how a one-hot drives it is the space's own:
``modnas.toolkit.spaces.base.Space``).

The hypernetwork emits logits ``[n_decisions, n_choices]`` padded to the widest decision; the
choices a decision does not have are masked (``choice_counts``), and ``flatten`` turns a padded
(straight-through) one-hot into the flat layout of ``space.encode`` that the cost models,
accuracy surrogates and supernets take.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces import Space


def hypernet_layout(space: Space) -> dict[str, Any]:
    """Keyword arguments of a hypernetwork for ``space``: a plain grid when every decision has the
    same number of choices (NB201: 6 x 5), else the padded grid with the per-decision counts."""
    counts = [len(d.choices) for d in space.decisions]
    layout: dict[str, Any] = {"n_decisions": len(counts), "n_choices": max(counts)}
    if len(set(counts)) > 1:
        layout["choice_counts"] = counts
    return layout


def choice_mask(n_decisions: int, n_choices: int, counts: list[int] | None) -> torch.Tensor | None:
    """Boolean ``[n_decisions, n_choices]``: True where the decision has that choice (None: all)."""
    if counts is None:
        return None
    if len(counts) != n_decisions or max(counts) > n_choices or min(counts) < 1:
        raise BadInput(f"choice_counts must give 1..{n_choices} choices for each of {n_decisions} decisions")
    return torch.arange(n_choices).reshape(1, -1) < torch.tensor(counts).reshape(-1, 1)


def flatten(onehot: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """``[..., n_decisions, n_choices]`` -> ``[..., onehot_dim]`` in ``space.encode`` order."""
    if valid is None:
        return onehot.reshape(*onehot.shape[:-2], -1)
    return onehot[..., valid]


def bn_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every buffer (BN statistics), to restore after a per-subnet recalibration."""
    return {k: v.detach().clone() for k, v in module.named_buffers()}


def restore_buffers(module: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    for k, v in module.named_buffers():
        v.copy_(saved[k])


def encode_one(space: Space, arch: str) -> torch.Tensor:
    return torch.as_tensor(np.asarray(space.encode([arch])[0]))


__all__ = ["bn_state", "choice_mask", "encode_one", "flatten", "hypernet_layout", "restore_buffers"]
