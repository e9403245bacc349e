"""Supernet: subnet extraction into NB201Network (strict), and a short search on digits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from modnas.toolkit.search.costs import LinearCost
from modnas.toolkit.spaces.nb201.supernet import NB201Supernet, extract_subnet, save_subnet
from modnas.toolkit.spaces import get_space
from modnas.toolkit.spaces.nb201.net import NB201Network


def _archs() -> list[str]:
    space = get_space("nb201")
    return space.sample(3, seed=1) + [space.arch_at(0), space.reference_archs()[1]]


def test_extracted_subnet_loads_strict_and_matches_the_supernet(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    space = get_space("nb201")
    net = NB201Supernet(channels=16, cells=5)
    # make running statistics non-trivial so the comparison covers them
    net.train()
    with torch.no_grad():
        for arch in _archs():
            net(torch.randn(8, 3, 32, 32), torch.tensor(space.encode([arch])[0]).reshape(6, 5))
    net.eval()
    x = torch.randn(2, 3, 32, 32)
    for arch in _archs():
        sub = extract_subnet(net, arch)
        sub.eval()
        onehot = torch.tensor(space.encode([arch])[0]).reshape(6, 5)
        with torch.no_grad():
            assert torch.allclose(net(x, onehot), sub(x), atol=1e-5)
    arch = _archs()[0]
    path = save_subnet(net, arch, tmp_path / "sub.safetensors")
    from safetensors.torch import load_file

    fresh = NB201Network(space.to_indices(arch))
    fresh.load_state_dict(load_file(str(path)), strict=True)
    fresh.eval()
    with torch.no_grad():
        assert torch.allclose(fresh(x), extract_subnet(net, arch).eval()(x), atol=1e-6)


def test_straight_through_weight_reaches_the_sample() -> None:
    torch.manual_seed(0)
    net = NB201Supernet(channels=4, cells=1)
    logits = torch.zeros(6, 5)
    logits[:, 3] = 4.0  # a connected cell (mostly 3x3 convolutions), so the output depends on it
    logits.requires_grad_(True)
    from modnas.toolkit.search.samplers import get_sampler

    a = get_sampler("reinmax")(logits, torch.Generator().manual_seed(3))
    out = net(torch.randn(4, 3, 32, 32), a)
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1, 2, 3])).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def _toy_costs(n: int, seed: int) -> list[LinearCost]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        w = np.abs(rng.normal(size=30)) * np.tile([0.0, 0.1, 0.5, 1.0, 0.3], 6)
        emb = rng.random(10).astype(np.float32)
        out.append(LinearCost(f"toy{i}", w, 0.5, emb, 0.05))
    return out


def test_two_epoch_supernet_search_on_digits_lowers_the_loss(tmp_path: Path) -> None:
    from modnas.toolkit.search.api import run_search
    from modnas.toolkit.search.readout import pareto, select
    from modnas.toolkit.search.run import extract_subnet_weights, load_run, read_metrics

    res = run_search(_toy_costs(2, 0), accuracy="supernet", data_dir="digits", epochs=2, out=tmp_path / "run",
                     seed=0, channels=4, cells=1, batch_size=32, max_images=400, w_lr=0.05)
    rows = read_metrics(res["run"])
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["ce_train"] < rows[0]["ce_train"]
    run_dir = Path(res["run"])
    for name in ("config.json", "hypernet.safetensors", "supernet.safetensors", "loss.png", "fronts.png"):
        assert (run_dir / name).exists(), name
    meta = json.loads((run_dir / "config.json").read_text())
    assert meta["config"]["accuracy"] == "supernet" and meta["config"]["supernet"]["cells"] == 1
    run = load_run(run_dir)
    front = pareto(run, _toy_costs(3, 0)[2])
    assert front and all(0.0 <= r["predicted"]["error"] <= 100.0 for r in front)
    pick = select(run, _toy_costs(3, 0)[2], budget_ms=1e6)
    state = extract_subnet_weights(run_dir, "nb201", pick["arch"])
    assert state is not None
    net = NB201Network(get_space("nb201").to_indices(pick["arch"]), channels=4, cells=1)
    net.load_state_dict(state, strict=True)
