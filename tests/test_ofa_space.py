"""The ofa_mbv3 space: strings, encodings, MACs, the standalone network and its ONNX export, data."""
from __future__ import annotations

import gzip
import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces import get_space
from modnas.toolkit.spaces.ofa_mbv3 import REFERENCE_IDS, OFAMobileNetV3Space
from modnas.toolkit.spaces.ofa_mbv3.blocks import make_divisible, widths

EXAMPLE = ("ks=7-5-5-5-7-7-5-7-5-7-3-7-5-3-7-3-5-3-5-3;e=6-4-4-6-6-3-4-3-3-6-3-3-3-6-3-4-6-4-3-6;"
           "d=2-2-2-2-3;r=204")
SMALLEST = "ks=" + "-".join(["3"] * 20) + ";e=" + "-".join(["3"] * 20) + ";d=2-2-2-2-2;r=128"
LARGEST = "ks=" + "-".join(["7"] * 20) + ";e=" + "-".join(["6"] * 20) + ";d=4-4-4-4-4;r=224"


@pytest.fixture(scope="module")
def space() -> OFAMobileNetV3Space:
    return get_space("ofa_mbv3")


def _archs_rows(data_dir: Path) -> list[dict[str, str]]:
    path = data_dir / "help_ofa" / "help_ofa_archs.csv.gz"
    if not path.exists():
        pytest.skip("shared/data/help_ofa is not here")
    with gzip.open(path, "rt") as f:
        return list(csv.DictReader(f))


def test_decisions_and_widths(space: OFAMobileNetV3Space) -> None:
    names = [d.name for d in space.decisions]
    assert len(names) == 46 and len(set(names)) == 46
    assert space.onehot_dim == 20 * 3 + 20 * 3 + 5 * 3 + 25
    w = widths(1.2)
    assert (w.stem, w.stages, w.final, w.mix) == (24, (32, 48, 96, 136, 192), 1152, 1536)
    assert make_divisible(16 * 1.2) == 24 and make_divisible(112 * 1.2) == 136


def test_unused_slots_do_not_matter(space: OFAMobileNetV3Space) -> None:
    canon = space.canonical(EXAMPLE)
    assert canon == space.canonical(canon)
    # stage 1 uses slots 0-1 only: change slots 2-3 (also to values outside the choices, as OFA writes 0)
    ks = EXAMPLE.split(";")[0][3:].split("-")
    ks[2], ks[3] = "0", "3"
    other = EXAMPLE.replace(EXAMPLE.split(";")[0], "ks=" + "-".join(ks))
    assert other != EXAMPLE and space.canonical(other) == canon
    assert np.array_equal(space.encode([other]), space.encode([EXAMPLE]))
    # ... but a used slot does
    ks[0] = "3"
    changed = EXAMPLE.replace(EXAMPLE.split(";")[0], "ks=" + "-".join(ks))
    assert space.canonical(changed) != canon
    # field order and spaces are free
    assert space.canonical(" r=204 ; " + ";".join(EXAMPLE.split(";")[:3])) == canon


def test_round_trips_and_encoding(space: OFAMobileNetV3Space) -> None:
    archs = space.sample(200, seed=3)
    assert len(set(archs)) == 200
    onehot = space.encode(archs)
    assert onehot.shape == (200, space.onehot_dim) and onehot.dtype == np.float32
    assert np.all(onehot.sum(1) == len(space.decisions))
    for arch, row in zip(archs, onehot):
        assert space.canonical(arch) == arch
        assert space.from_indices(space.to_indices(arch)) == arch
        assert space.decode(row) == arch
    cfg = space.config(archs[0])
    assert len(cfg.ks) == len(cfg.e) == sum(cfg.d)
    assert space.from_active(list(cfg.ks), list(cfg.e), list(cfg.d), cfg.r) == archs[0]


def test_sample_is_seeded(space: OFAMobileNetV3Space) -> None:
    assert space.sample(20, seed=7) == space.sample(20, seed=7)
    assert space.sample(20, seed=7) != space.sample(20, seed=8)
    depths = {space.config(a).d for a in space.sample(50, seed=1)}
    assert len(depths) > 10


@pytest.mark.parametrize("bad", [
    "", "ks=3", EXAMPLE + ";r=204", EXAMPLE.replace("r=204", "r=206"), EXAMPLE.replace("r=204", "r=228"),
    EXAMPLE.replace("d=2-2-2-2-3", "d=2-2-2-5-3"), EXAMPLE.replace("d=2-2-2-2-3", "d=2-2-2-3"),
    EXAMPLE.replace("ks=7-5", "ks=9-5"), EXAMPLE.replace("e=6-4", "e=5-4"),
    EXAMPLE.replace("ks=7-5-5-5", "ks=7-5-5"), EXAMPLE.replace("r=", "res="),
    EXAMPLE.replace("e=6-4", "e=six-4"), EXAMPLE + "; rm -rf /", "ks=7-5\n;e=6", EXAMPLE.replace("r=204", "r=2 04"),
])
def test_malformed_strings_give_one_line(space: OFAMobileNetV3Space, bad: str) -> None:
    with pytest.raises(BadInput) as err:
        space.canonical(bad)
    assert "\n" not in str(err.value) and "ofa_mbv3" in str(err.value)


def test_non_string_is_bad_input(space: OFAMobileNetV3Space) -> None:
    with pytest.raises(BadInput):
        space.canonical(None)  # type: ignore[arg-type]
    with pytest.raises(BadInput):
        space.from_indices([0] * 45)


def test_reference_archs_are_helps(space: OFAMobileNetV3Space, data_dir: Path) -> None:
    refs = space.reference_archs()
    assert len(refs) == len(set(refs)) == 10
    rows = [r for r in _archs_rows(data_dir) if r["hw_embedding_ref"] == "1"]
    assert [int(r["ofa_arch_id"]) for r in rows] == list(REFERENCE_IDS)
    for row, ref in zip(rows, refs):
        assert space.canonical(f"ks={row['ks']};e={row['e']};d={row['d']};r={row['r']}") == ref
        assert abs(space.flops(ref) - float(row["macs_m_w12"])) < 0.5


def test_macs_match_the_data(space: OFAMobileNetV3Space, data_dir: Path) -> None:
    rows = _archs_rows(data_dir)
    for row in rows[::10]:
        arch = f"ks={row['ks']};e={row['e']};d={row['d']};r={row['r']}"
        assert abs(space.flops(arch) - float(row["macs_m_w12"])) < 0.5
        assert abs(space.flops(arch, width_mult=1.0) - float(row["macs_m_w10"])) < 0.5
    assert space.flops(SMALLEST) < space.flops(EXAMPLE) < space.flops(LARGEST)


def test_input_shape(space: OFAMobileNetV3Space) -> None:
    assert space.input_shape(EXAMPLE) == (1, 3, 204, 204)
    assert space.input_shape(SMALLEST) == (1, 3, 128, 128)


def _randomize_bn(net: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)


def test_network_shapes_and_size(space: OFAMobileNetV3Space) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    small, large = space.build(SMALLEST, num_classes=10), space.build(LARGEST, num_classes=10)
    assert len(small.blocks) == 10 and len(large.blocks) == 20
    n_small = sum(p.numel() for p in small.parameters())
    assert n_small < sum(p.numel() for p in large.parameters())
    with torch.no_grad():
        out = small.eval()(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10)
    kernels = [m.kernel_size[0] for m in large.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert kernels == [3] + [7] * 20  # first block, then every MBConv depthwise
    assert sum(isinstance(m, torch.nn.Hardsigmoid) for m in large.modules()) == 12  # SE in stages 2, 4, 5


def test_network_exports_to_onnx(space: OFAMobileNetV3Space, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(1)
    arch = space.reference_archs()[4]  # r = 136
    net = space.build(arch).eval()
    _randomize_bn(net, 1)
    shape = space.input_shape(arch)
    try:
        from modnas.exporters.onnx import export_onnx
    except ImportError:
        export_onnx = None
    if export_onnx is not None:
        res = export_onnx(net, shape, tmp_path / "ofa.onnx", check=True)
        assert res.max_abs_diff is not None and res.max_abs_diff < 1e-4
        path = res.path
    else:
        path = tmp_path / "ofa.onnx"
        torch.onnx.export(net, (torch.randn(*shape),), str(path), dynamo=False, opset_version=17)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(5))
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = net(x).numpy()
    assert got.shape == (1, 1000)
    assert np.abs(want).max() > 1e-2  # a meaningful comparison, not of near-zero outputs
    assert np.abs(got - want).max() < 1e-4


# -- data ----------------------------------------------------------------------------------------
def test_lut_latency_matches_readme(space: OFAMobileNetV3Space, data_dir: Path) -> None:
    from modnas.toolkit.spaces.ofa_mbv3 import tables as bd

    if not (data_dir / "ofa_official").exists():
        pytest.skip("shared/data/ofa_official is not here")
    lut = bd.load_lut(data_dir)
    spec = bd.load_specialized(data_dir)
    row = spec[spec["model_name"].str.startswith("note10_lat-30ms")].iloc[0]
    assert abs(bd.lut_latency(row["arch"], lut) - 29.97) < 0.01
    assert math.isnan(bd.lut_latency(EXAMPLE, lut))  # r = 204 is not tabulated
    small, large = SMALLEST.replace("r=128", "r=160"), LARGEST.replace("r=224", "r=160")
    assert abs(bd.lut_latency(small, lut) - 9.89) < 0.01 and abs(bd.lut_latency(large, lut) - 47.77) < 0.01
    rows = [r for r in _archs_rows(data_dir) if r["note10_lut_ms_est_w12"]][:100]
    for r in rows:
        arch = f"ks={r['ks']};e={r['e']};d={r['d']};r={r['r']}"
        assert abs(bd.lut_latency(arch, lut) - float(r["note10_lut_ms_est_w12"])) < 1e-4


def test_latency_table(space: OFAMobileNetV3Space, data_dir: Path) -> None:
    from modnas.toolkit.spaces.ofa_mbv3 import tables as bd

    if not (data_dir / "help_ofa").exists():
        pytest.skip("shared/data/help_ofa is not here")
    table = bd.load_latency(data_dir)
    archs = bd.load_archs(data_dir)
    assert table.keys and all(k.startswith("help_ofa:") for k in table.keys)
    assert table.values.shape == (len(table.keys), len(archs)) == (len(table.keys), len(set(table.archs)))
    assert np.all(np.isfinite(table.values) & (table.values > 0))
    # one raw row lands on the right device and architecture
    with gzip.open(data_dir / "help_ofa" / "help_ofa_latency.csv.gz", "rt") as f:
        raw = next(csv.DictReader(f))
    arch = space.canonical(f"ks={raw['ks']};e={raw['e']};d={raw['d']};r={raw['r']}")
    assert table.values_by_arch(f"help_ofa:{raw['device']}")[arch] == pytest.approx(float(raw["value"]))
    groups = {bd.gpu_group(k) for k in table.keys}
    assert len(groups) < len(table.keys) and all(":" not in g for g in groups)
    assert bd.batch_size("help_ofa:v100_64") == 64
    with pytest.raises(BadInput):
        table.row("help_ofa:nonexistent")


def _index_vectors() -> st.SearchStrategy[tuple[int, ...]]:
    sizes = [len(d.choices) for d in get_space("ofa_mbv3").decisions]
    return st.tuples(*[st.integers(0, n - 1) for n in sizes])


@settings(max_examples=150, deadline=None)
@given(idx=_index_vectors())
def test_any_choice_vector_round_trips(idx: tuple[int, ...]) -> None:
    space = get_space("ofa_mbv3")
    arch = space.from_indices(list(idx))
    assert space.canonical(arch) == arch
    again = space.to_indices(arch)
    assert space.from_indices(again) == arch
    cfg = space.config(arch)
    # a used slot keeps its choice; an unused one reads as the first choice
    for s in range(5):
        for b in range(4):
            i = s * 4 + b
            if b < cfg.d[s]:
                assert again[i] == idx[i] and again[20 + i] == idx[20 + i]
            else:
                assert again[i] == 0 and again[20 + i] == 0


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="kser=d;-0123456789 x", max_size=120))
def test_garbage_is_bad_input_or_parses(text: str) -> None:
    space = get_space("ofa_mbv3")
    try:
        arch = space.canonical(text)
    except BadInput as err:
        assert "\n" not in str(err)
    else:
        assert space.canonical(arch) == arch
