"""The hypernetwork's own distribution as a read-out: for each preference, the ``k`` most probable
architectures under the product of its per-decision categoricals (exact k-best, not sampling)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from modnas.toolkit.errors import BadInput

# chosen on NB201's held-out devices (benchmarks/search_eval.py, seed 0): HV/exhaustive of the 24
# picks rises with k towards the predictors' own front (2 objectives, shipped run: k 8 0.981, 128
# 0.988, 512 0.991, 1024 0.9915; 3 objectives: k 512 0.983, 2048 0.994); more preferences than 48
# changed nothing measurable, so the read-out stays at one to a few seconds
TOP_K = 1024
TOP_K_MANY_OBJECTIVES = 2048   # three or more objectives: a larger front needs a larger pool
TOPK_PREFERENCES = 48


def default_top_k(n_objectives: int) -> int:
    """The read-out's default k for a run with this many objectives."""
    return TOP_K if n_objectives <= 2 else TOP_K_MANY_OBJECTIVES


def kbest(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most probable joint choices of independent categoricals ``logits [P, n, c]``:
    ``(choices [P, k', n] long, log-probabilities [P, k'] float)``, most probable first, with
    ``k' = min(k, c ** n)``. Exact: a beam of ``k`` prefixes over the decisions loses nothing, as a
    prefix outside the ``k`` best has ``k`` better prefixes that each beat it with any suffix."""
    if k < 1:
        raise BadInput("k must be at least 1")
    if logits.ndim != 3:
        raise BadInput("logits must be [preferences, decisions, choices]")
    logp = torch.log_softmax(logits.double(), dim=-1)
    n_pref, n_dec, n_ch = logp.shape
    score = torch.zeros(n_pref, 1, dtype=logp.dtype)
    choices = torch.zeros(n_pref, 1, 0, dtype=torch.long)
    for j in range(n_dec):
        cand = (score[:, :, None] + logp[:, j][:, None, :]).reshape(n_pref, -1)    # [P, B * c]
        keep = min(k, cand.shape[1])
        score, flat = torch.topk(cand, keep, dim=1)                                # sorted descending
        beam, op = flat // n_ch, flat % n_ch
        prev = torch.gather(choices, 1, beam[:, :, None].expand(-1, -1, choices.shape[2]))
        choices = torch.cat([prev, op[:, :, None]], dim=2)
    return choices, score


def topk_candidates(run: Any, embedding: np.ndarray, prefs: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
    """Distinct architectures among the ``k`` most probable of each preference row of ``prefs``
    (valid choices only: masked ones have probability 0), each with the first preference that
    produced it, in order of (preference, rank)."""
    logits = run.logits(prefs, embedding)
    choices, logp = kbest(logits, k)
    codes = choices.numpy().reshape(-1, choices.shape[2])              # rows in (preference, rank) order
    ok = np.flatnonzero(logp.numpy().reshape(-1) > -1e3)              # a masked choice has log p ~ -1e4
    ids = codes[ok] @ (logits.shape[2] ** np.arange(codes.shape[1], dtype=np.int64))
    _, first = np.unique(ids, return_index=True)
    rows = ok[np.sort(first)]
    space = run.space
    archs = [space.from_indices(codes[i].tolist()) for i in rows]
    return archs, np.asarray(prefs)[rows // choices.shape[1]]


__all__ = ["TOPK_PREFERENCES", "TOP_K", "TOP_K_MANY_OBJECTIVES", "default_top_k", "kbest", "topk_candidates"]
