"""Straight-through samplers of one-hot architecture choices from logits.

Every sampler maps logits ``[..., K]`` to a tensor of the same shape whose forward value is an
exact one-hot sample and whose backward pass gives a gradient to the logits.

* ``reinmax``: the second-order straight-through estimator of Liu et al. (NeurIPS 2023).
  With ``pi0 = softmax(theta)`` and a sample ``D ~ Cat(pi0)``, the estimator builds
  ``pi1 = softmax(theta + sg(log((D + softmax(theta / tau)) / 2) - theta))`` (value of the
  average of ``D`` and the tempered softmax, gradient of a softmax at ``theta``) and
  ``pi2 = 2 pi1 - pi0 / 2``; the output is ``D + pi2 - sg(pi2)``.
* ``gdas``: Gumbel-softmax with a hard forward pass; ``tau`` is annealed by the caller.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def _categorical_onehot(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    flat = probs.reshape(-1, probs.shape[-1])
    idx = torch.multinomial(flat, 1, generator=generator).squeeze(-1)
    return F.one_hot(idx, probs.shape[-1]).to(probs.dtype).reshape(probs.shape)


class ReinMaxSampler:
    """ReinMax straight-through sampler (temperature 1 by default)."""

    name = "reinmax"

    def __init__(self, tau: float = 1.0) -> None:
        self.tau = float(tau)

    def set_progress(self, fraction: float) -> None:
        """ReinMax keeps a fixed temperature; present for a uniform sampler interface."""

    def __call__(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        pi0 = torch.softmax(logits, dim=-1)
        sample = _categorical_onehot(pi0.detach(), generator)
        mixed = 0.5 * (sample + torch.softmax(logits.detach() / self.tau, dim=-1))
        shift = (torch.log(mixed.clamp_min(1e-20)) - logits).detach()
        pi1 = torch.softmax(logits + shift, dim=-1)
        pi2 = 2.0 * pi1 - 0.5 * pi0
        return sample + (pi2 - pi2.detach())


class GDASSampler:
    """Hard Gumbel-softmax; ``tau`` goes linearly from ``tau_max`` to ``tau_min`` over training."""

    name = "gdas"

    def __init__(self, tau_max: float = 10.0, tau_min: float = 1.0) -> None:
        self.tau_max = float(tau_max)
        self.tau_min = float(tau_min)
        self.tau = float(tau_max)

    def set_progress(self, fraction: float) -> None:
        f = min(max(float(fraction), 0.0), 1.0)
        self.tau = self.tau_max - (self.tau_max - self.tau_min) * f

    def __call__(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).clamp(1e-10, 1.0 - 1e-10)
        gumbel = -torch.log(-torch.log(u))
        soft = torch.softmax((logits + gumbel) / self.tau, dim=-1)
        hard = F.one_hot(soft.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
        return hard + (soft - soft.detach())


def argmax_onehot(logits: torch.Tensor) -> torch.Tensor:
    """The read-out: one-hot of the arg-max per decision (no gradient)."""
    return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)


SAMPLERS: dict[str, Callable[..., object]] = {"reinmax": ReinMaxSampler, "gdas": GDASSampler}


def get_sampler(name: str, **kwargs: float) -> ReinMaxSampler | GDASSampler:
    """A sampler by registry name."""
    from modnas.toolkit.errors import BadInput

    if name not in SAMPLERS:
        raise BadInput(f"unknown sampler {name!r}; known: {', '.join(sorted(SAMPLERS))}")
    return SAMPLERS[name](**kwargs)  # type: ignore[return-value]


__all__ = ["GDASSampler", "ReinMaxSampler", "SAMPLERS", "argmax_onehot", "get_sampler"]
