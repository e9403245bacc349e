"""Hypernetworks: output shapes for M objectives, near-uniform start, registry."""
from __future__ import annotations

import pytest
import torch

from modnas.toolkit.errors import BadInput
from modnas.toolkit.search.hypernet import build_hypernet


@pytest.mark.parametrize("kind", ["mlp", "experts"])
@pytest.mark.parametrize("m", [2, 3])
def test_shapes_and_near_uniform_start(kind: str, m: int) -> None:
    torch.manual_seed(0)
    h = build_hypernet(kind, n_objectives=m, emb_dim=10)
    r = torch.distributions.Dirichlet(torch.ones(m)).sample((7,))
    d = torch.rand(7, 10)
    logits = h(r, d)
    assert logits.shape == (7, 6, 5)
    probs = torch.softmax(logits, dim=-1)
    assert torch.allclose(probs, torch.full_like(probs, 0.2), atol=0.01)


@pytest.mark.parametrize("kind", ["mlp", "experts"])
def test_output_depends_on_preference_and_device_after_a_step(kind: str) -> None:
    torch.manual_seed(0)
    h = build_hypernet(kind, n_objectives=2, emb_dim=10)
    opt = torch.optim.Adam(h.parameters(), lr=0.05)
    r = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.rand(2, 10)
    for _ in range(20):
        logits = h(r, d)
        loss = -logits[0, :, 3].sum() - logits[1, :, 1].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = h(r, d).argmax(dim=-1)
    assert torch.all(out[0] == 3) and torch.all(out[1] == 1)


def test_unknown_hypernet() -> None:
    with pytest.raises(BadInput):
        build_hypernet("transformer", n_objectives=2)
