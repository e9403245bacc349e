"""ReinMax and GDAS: exact one-hot forward, gradients reach the logits, registry by name."""
from __future__ import annotations

import pytest
import torch

from modnas.toolkit.errors import BadInput
from modnas.toolkit.search.samplers import GDASSampler, argmax_onehot, get_sampler


@pytest.mark.parametrize("name", ["reinmax", "gdas"])
def test_forward_is_one_hot_and_gradient_flows(name: str) -> None:
    torch.manual_seed(0)
    sampler = get_sampler(name)
    logits = torch.randn(4, 6, 5, requires_grad=True)
    y = sampler(logits, torch.Generator().manual_seed(1))
    assert y.shape == logits.shape
    values = y.detach()
    assert torch.all((values == 0) | (values == 1))
    assert torch.all(values.sum(dim=-1) == 1)
    (y * torch.randn(4, 6, 5)).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["reinmax", "gdas"])
def test_same_generator_same_sample(name: str) -> None:
    logits = torch.randn(6, 5)
    a = get_sampler(name)(logits, torch.Generator().manual_seed(7))
    b = get_sampler(name)(logits, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_reinmax_samples_follow_the_softmax() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5, 1.0]]).expand(4000, 5)
    y = get_sampler("reinmax")(logits, torch.Generator().manual_seed(0))
    freq = y.mean(dim=0)
    assert torch.allclose(freq, torch.softmax(logits[0], dim=-1), atol=0.03)


def test_reinmax_gradient_raises_the_logit_of_a_rewarded_choice() -> None:
    # loss = -y[k]: on average the gradient step must increase logit k
    logits = torch.zeros(2000, 5, requires_grad=True)
    y = get_sampler("reinmax")(logits, torch.Generator().manual_seed(0))
    (-y[:, 2]).sum().backward()
    mean_grad = logits.grad.mean(dim=0)
    assert mean_grad[2] < 0 and torch.all(mean_grad[[0, 1, 3, 4]] > 0)


def test_gdas_temperature_anneals_from_10_to_1() -> None:
    s = GDASSampler()
    s.set_progress(0.0)
    assert s.tau == pytest.approx(10.0)
    s.set_progress(0.5)
    assert s.tau == pytest.approx(5.5)
    s.set_progress(1.0)
    assert s.tau == pytest.approx(1.0)


def test_argmax_readout_and_unknown_name() -> None:
    logits = torch.tensor([[0.1, 3.0, 0.0], [5.0, 1.0, 2.0]])
    assert torch.equal(argmax_onehot(logits), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    with pytest.raises(BadInput):
        get_sampler("darts")
