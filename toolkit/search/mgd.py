"""Multiple gradient descent: the min-norm point of the convex hull of per-task gradients.

The Frank-Wolfe solver follows Sener & Koltun (NeurIPS 2018): start from the best pair of
gradients (closed form on a segment), then repeatedly move toward the vertex with the smallest
inner product with the current point, using the exact line search on that segment. It stops when
the step changes ``gamma`` by less than ``tol`` in L1 norm or after ``max_iter`` iterations.
"""
from __future__ import annotations

import numpy as np
import torch


def _segment_min(aa: float, ab: float, bb: float) -> tuple[float, float]:
    """argmin over s in [0, 1] of ||(1 - s) a + s b||^2 given the inner products, and its value."""
    denom = aa + bb - 2.0 * ab
    if denom <= 1e-18:
        s = 0.0
    else:
        s = min(max((aa - ab) / denom, 0.0), 1.0)
    value = (1 - s) ** 2 * aa + 2 * s * (1 - s) * ab + s ** 2 * bb
    return s, value


def min_norm_weights(gram: np.ndarray, max_iter: int = 250, tol: float = 1e-5) -> np.ndarray:
    """Weights ``gamma`` on the simplex minimising ``gamma^T G gamma`` for a Gram matrix G."""
    g = np.asarray(gram, dtype=np.float64)
    t = g.shape[0]
    if t == 1:
        return np.ones(1)
    best = (np.inf, 0, 1, 0.0)
    for i in range(t):
        for j in range(i + 1, t):
            s, value = _segment_min(g[i, i], g[i, j], g[j, j])
            if value < best[0]:
                best = (value, i, j, s)
    _, i, j, s = best
    gamma = np.zeros(t)
    gamma[i], gamma[j] = 1.0 - s, s
    if t == 2:
        return gamma
    for _ in range(max_iter):
        g_gamma = g @ gamma
        k = int(np.argmin(g_gamma))
        s, _ = _segment_min(float(gamma @ g_gamma), float(g_gamma[k]), float(g[k, k]))
        new = (1.0 - s) * gamma
        new[k] += s
        change = float(np.abs(new - gamma).sum())
        gamma = new
        if change < tol:
            break
    return gamma


def mgd_combine(grads: torch.Tensor, normalise: bool = True, max_iter: int = 250,
                tol: float = 1e-5) -> tuple[torch.Tensor, np.ndarray]:
    """Combine per-task gradient rows ``[T, P]``: optionally scale each to unit norm, solve the
    min-norm problem, return ``(sum_t gamma_t g_t, gamma)``."""
    g = grads.detach().to(torch.float64)
    if normalise:
        g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
    gamma = min_norm_weights((g @ g.T).cpu().numpy(), max_iter=max_iter, tol=tol)
    direction = (torch.as_tensor(gamma, dtype=torch.float64)[:, None] * g).sum(dim=0)
    return direction.to(grads.dtype), gamma


__all__ = ["mgd_combine", "min_norm_weights"]
