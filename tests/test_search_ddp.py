"""The search under torch.distributed: 2 CPU processes on gloo end with identical hypernetworks,
equal (to float rounding) to a single-process run with the same seed."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from modnas.toolkit.search.costs import LinearCost


def _costs() -> list[LinearCost]:
    rng = np.random.default_rng(11)
    out = []
    for i in range(3):  # odd count: the ranks own different numbers of devices
        w = np.log1p(np.abs(rng.normal(size=30))) * np.tile([0.0, 0.05, 0.4, 1.0, 0.2], 6)
        out.append(LinearCost(f"dev{i}", w, 0.1 * i, rng.random(10).astype(np.float32), 0.05))
    return out


def _search(out: Path) -> dict:
    from modnas.toolkit.search.api import run_search

    return run_search(_costs(), epochs=2, out=out, seed=4, steps_per_epoch=4, prefs_per_step=4, plots=False,
                      h_lr=0.01)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                       "RANK": str(rank), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    res = _search(Path(out) / "run")
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(res))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow  # two spawned ranks plus a single-process run: end to end
def test_two_gloo_ranks_end_identical(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world_size"] == r1["world_size"] == 2 and {r0["rank"], r1["rank"]} == {0, 1}
    assert r0["hypernet_sha256"] == r1["hypernet_sha256"]
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["world_size"] == 2 and len(meta["devices"]) == 3
    single = _search(tmp_path / "single")
    a = load_file(str(tmp_path / "run" / "hypernet.safetensors"))
    b = load_file(str(tmp_path / "single" / "hypernet.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    # training moved the parameters (the comparison is not between two untouched inits)
    from modnas.toolkit.search.hypernet import build_hypernet

    torch.manual_seed(4)
    fresh = build_hypernet("mlp", n_objectives=2, emb_dim=10, hidden=64).state_dict()
    assert any(not torch.allclose(fresh[k], b[k]) for k in b)
    assert single["world_size"] == 1
