"""Min-norm solver (Frank-Wolfe, Sener & Koltun) against closed-form cases."""
from __future__ import annotations

import numpy as np
import torch

from modnas.toolkit.search.mgd import mgd_combine, min_norm_weights


def _gram(vectors: list[list[float]]) -> np.ndarray:
    g = np.asarray(vectors, dtype=np.float64)
    return g @ g.T


def test_two_vectors_closed_form() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        a, b = rng.normal(size=5), rng.normal(size=5)
        gamma = min_norm_weights(_gram([a.tolist(), b.tolist()]))
        # analytic minimiser of ||c a + (1 - c) b||^2 over c in [0, 1]
        c = np.clip(np.dot(b - a, b) / np.dot(a - b, a - b), 0.0, 1.0)
        assert np.allclose(gamma, [c, 1 - c], atol=1e-9)
        assert np.isclose(gamma.sum(), 1.0)


def test_orthogonal_unit_vectors_share_equally() -> None:
    for t in (2, 3, 5):
        gamma = min_norm_weights(np.eye(t), max_iter=2000, tol=1e-10)
        assert np.allclose(gamma, np.full(t, 1.0 / t), atol=1e-3)


def test_one_vector_dominating() -> None:
    # a is the min-norm point of the hull of {a, b, c}: every other vertex has a.v >= a.a
    a, b, c = [1.0, 0.0, 0.0], [2.0, 1.0, 0.0], [1.5, -1.0, 0.5]
    gamma = min_norm_weights(_gram([a, b, c]))
    assert np.allclose(gamma, [1.0, 0.0, 0.0], atol=1e-8)


def test_iteration_cap_is_honoured_and_result_on_simplex() -> None:
    rng = np.random.default_rng(0)
    g = rng.normal(size=(8, 20))
    gamma1 = min_norm_weights(g @ g.T, max_iter=1, tol=0.0)
    gamma_full = min_norm_weights(g @ g.T, max_iter=5000, tol=1e-12)
    for gamma in (gamma1, gamma_full):
        assert np.all(gamma >= -1e-12) and np.isclose(gamma.sum(), 1.0)
    value = lambda w: float(w @ (g @ g.T) @ w)  # noqa: E731
    assert value(gamma_full) <= value(gamma1) + 1e-12
    # no vertex direction improves the converged point (first-order optimality on the simplex)
    grad = (g @ g.T) @ gamma_full
    assert grad.min() >= value(gamma_full) - 1e-4


def test_mgd_combine_normalises_each_gradient() -> None:
    grads = torch.tensor([[10.0, 0.0], [0.0, 0.1]])
    direction, gamma = mgd_combine(grads)
    assert np.allclose(gamma, [0.5, 0.5])
    assert torch.allclose(direction, torch.tensor([0.5, 0.5]))
    # a common descent direction: positive inner product with every task gradient
    assert torch.all(grads @ direction > 0)
