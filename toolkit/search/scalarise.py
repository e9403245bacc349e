"""Scalarisations of normalised objectives under a preference ``r`` on the simplex.

Every objective is minimised and already scaled to about [0, 1] with fixed statistics; ``ideal`` is
the fixed ideal point z (the same for every objective, 0 or slightly below).

- ``weighted_sum``: ``sum_i r_i f_i`` (the paper's; reaches only the convex hull of a front);
- ``tchebycheff``: ``max_i r_i (f_i - z)`` (reaches every Pareto-optimal point);
- ``smooth_tchebycheff``: ``mu * logsumexp(r * (f - z) / mu)`` (Lin et al., ICML 2024), a smooth
  upper bound of Tchebycheff within ``mu * log(M)``, with a gradient through every objective.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch

Scalarisation = Literal["weighted_sum", "tchebycheff", "smooth_tchebycheff"]
SCALARISATIONS: tuple[str, ...] = ("weighted_sum", "tchebycheff", "smooth_tchebycheff")


def scalarise(objs: torch.Tensor, prefs: torch.Tensor, kind: str = "weighted_sum", mu: float = 0.02,
              ideal: float = 0.0) -> torch.Tensor:
    """Scalarised objectives ``[...]`` of ``objs`` and ``prefs`` (both ``[..., M]``, broadcast)."""
    if kind == "weighted_sum":
        return (prefs * objs).sum(dim=-1)
    gap = prefs * (objs - ideal)
    if kind == "tchebycheff":
        return gap.max(dim=-1).values
    if kind == "smooth_tchebycheff":
        if not mu > 0:
            raise ValueError("smooth Tchebycheff needs mu > 0")
        return mu * torch.logsumexp(gap / mu, dim=-1)
    raise ValueError(f"unknown scalarisation {kind!r}; known: {', '.join(SCALARISATIONS)}")


def scalarise_np(objs: np.ndarray, prefs: np.ndarray, kind: str = "weighted_sum", mu: float = 0.02,
                 ideal: float = 0.0) -> np.ndarray:
    """NumPy front end of :func:`scalarise` (float64)."""
    out = scalarise(torch.as_tensor(np.asarray(objs, dtype=np.float64)),
                    torch.as_tensor(np.asarray(prefs, dtype=np.float64)), kind, mu, ideal)
    return out.numpy()


def minimisers(objs: np.ndarray, prefs: np.ndarray, kind: str = "weighted_sum", mu: float = 0.02,
               ideal: float = 0.0) -> np.ndarray:
    """For each preference row, the index of the candidate (row of ``objs`` ``[N, M]``) with the
    smallest scalarised value; ties go to the lowest index."""
    f = np.asarray(objs, dtype=np.float64)
    r = np.asarray(prefs, dtype=np.float64)
    out = np.empty(len(r), dtype=np.int64)
    for s in range(0, len(r), 64):   # [P, N] blocks keep memory small for 15,625 candidates
        vals = scalarise_np(f[None, :, :], r[s:s + 64, None, :], kind, mu, ideal)
        out[s:s + 64] = np.argmin(vals, axis=1)
    return out


__all__ = ["SCALARISATIONS", "Scalarisation", "minimisers", "scalarise", "scalarise_np"]
