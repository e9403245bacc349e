"""The NB201 space: string round trips, the benchmark's index order, networks."""
from __future__ import annotations

import csv
import gzip

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces import SPACES, get_space
from modnas.toolkit.spaces.nb201.cell import OPS
from modnas.toolkit.spaces.nb201.space import NB201Space


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return get_space("nb201")


def test_every_cell_round_trips(space: NB201Space) -> None:
    archs = space.all_archs()
    assert len(archs) == len(set(archs)) == 15625
    for i, arch in enumerate(archs):
        assert space.canonical(arch) == arch
        assert space.index(arch) == i
        assert space.from_indices(space.to_indices(arch)) == arch


def test_index_order_matches_benchmark_table(space: NB201Space, data_dir) -> None:
    with gzip.open(data_dir / "nb201" / "nb201_accuracy.csv.gz", "rt") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15625
    for row in rows:
        assert space.arch_at(int(row["arch_index"])) == row["arch_str"]
        assert space.canonical(row["arch_vector"]) == row["arch_str"]
        assert space.is_connected(space.to_indices(row["arch_str"])) == (row["input_output_connected"] == "1")


def test_reference_set_is_helps(space: NB201Space) -> None:
    refs = space.reference_archs()
    assert refs[0] == "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
    assert [space.index(r) for r in refs] == [11982, 431, 55, 9, 14451, 8636, 9881, 13479, 6196, 1462]


@pytest.mark.parametrize("bad", [
    "", "nor_conv_3x3~0", "|nor_conv_3x3~0|+|nor_conv_3x3~0|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|",
    "|conv_5x5~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|nor_conv_3x3~1|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|; rm -rf /",
    "5-0-0-0-0-0",
])
def test_malformed_strings_give_one_line(space: NB201Space, bad: str) -> None:
    with pytest.raises(BadInput) as err:
        space.canonical(bad)
    assert "\n" not in str(err.value) and "nb201" in str(err.value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_parser_never_crashes_on_garbage(text: str) -> None:
    space = get_space("nb201")
    try:
        arch = space.canonical(text)
    except BadInput:
        return
    assert space.canonical(arch) == arch


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=6, max_size=6))
def test_encode_decode(idx: list[int]) -> None:
    space = get_space("nb201")
    arch = space.from_indices(idx)
    onehot = space.encode([arch])[0]
    assert onehot.sum() == 6 and space.decode(onehot) == arch


def test_sample_is_seeded_and_distinct(space: NB201Space) -> None:
    a, b, c = space.sample(20, 3), space.sample(20, 3), space.sample(20, 4)
    assert a == b and a != c and len(set(a)) == 20


@pytest.mark.parametrize("idx", [[3] * 6, [0] * 6, [4, 0, 1, 2, 0, 4], [1, 0, 0, 0, 0, 1]])
def test_network_shapes_and_cost(space: NB201Space, idx: list[int]) -> None:
    arch = space.from_indices(idx)
    net = space.build(arch).eval()
    out = net(torch.randn(2, *space.input_shape(arch)[1:]))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    convs = sum(1 for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert convs == 1 + 2 * 3 + 15 * sum(1 for i in idx if OPS[i].startswith("nor_conv"))
    assert space.flops(arch) > 0


def test_flops_order(space: NB201Space) -> None:
    small = space.flops(space.from_indices([1] * 6))
    mid = space.flops(space.from_indices([2] * 6))
    big = space.flops(space.from_indices([3] * 6))
    assert small < mid < big


def test_registry_names_resolve() -> None:
    for name in SPACES:
        try:
            space = get_space(name)
        except ModuleNotFoundError:
            continue  # a space whose module has not landed yet
        assert space.name == name and space.onehot_dim == sum(len(d.choices) for d in space.decisions)
    with pytest.raises(BadInput):
        get_space("no-such-space")
