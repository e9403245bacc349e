"""Hardware embeddings and the benchmark device tables they are built from."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modnas.toolkit.spaces.nb201 import tables as benchdata

from modnas.toolkit.data import groups as hwgroups
from modnas.toolkit.prediction.embedding import hardware_embedding, reference_values
from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces import get_space


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


@pytest.fixture(scope="module")
def latency(data_dir: Path) -> benchdata.DeviceTable:
    if not (data_dir / "help").is_dir():
        pytest.skip("benchmark data not available")
    return benchdata.load_table(data_dir, "latency")


def test_embedding_is_minmax_of_references(space) -> None:
    refs = space.reference_archs()
    raw = {a: 1.0 + 0.5 * i for i, a in enumerate(refs)}
    raw[space.arch_at(123)] = 1000.0  # extra architectures are ignored
    emb = hardware_embedding(raw, space)
    assert emb.shape == (10,) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, np.arange(10) / 9, rtol=1e-6)
    # the same values as a sequence in reference order give the same vector
    np.testing.assert_allclose(hardware_embedding([1.0 + 0.5 * i for i in range(10)], space), emb)


def test_embedding_is_scale_free_and_accepts_other_spellings(space) -> None:
    refs = space.reference_archs()
    vals = np.random.default_rng(0).uniform(1, 9, size=10)
    codes = ["-".join(str(i) for i in space.to_indices(a)) for a in refs]
    a = hardware_embedding(dict(zip(refs, vals)), space)
    b = hardware_embedding(dict(zip(codes, 7.5 * vals)), space)
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_missing_references_name_the_count(space) -> None:
    refs = space.reference_archs()
    with pytest.raises(BadInput, match=r"3 of 10 reference") as err:
        hardware_embedding({a: 1.0 + i for i, a in enumerate(refs[:7])}, space)
    assert "modnas onboard" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("bad", [-1.0, 0.0, float("nan"), float("inf"), "fast"])
def test_bad_values_are_one_line_errors(space, bad) -> None:
    vals: list = [1.0 + i for i in range(10)]
    vals[4] = bad
    with pytest.raises(BadInput) as err:
        hardware_embedding(vals, space)
    assert "\n" not in str(err.value)


def test_wrong_length_and_constant_vectors(space) -> None:
    with pytest.raises(BadInput, match="expected 10"):
        reference_values([1.0, 2.0], space)
    with pytest.raises(BadInput, match="equal"):
        hardware_embedding([3.0] * 10, space)
    with pytest.raises(BadInput):
        hardware_embedding({"|bogus~0|": 1.0}, space)


def test_table_devices_come_from_the_files(latency: benchdata.DeviceTable, space) -> None:
    keys = latency.keys
    assert latency.values.shape == (len(keys), 15625)
    sources = {k.split(":")[0] for k in keys}
    assert {"help", "eagle", "hw_nas_bench_360", "oneproxy"} <= sources
    assert all(np.nanmin(latency.values[i]) > 0 for i in range(len(keys)))
    # OneProxy copies of devices already loaded are dropped, not duplicated
    assert latency.duplicates and all(v in keys for v in latency.duplicates.values())
    assert not set(latency.duplicates) & set(keys)
    # every device whose references are measured gives a valid embedding
    ref_idx = [space.index(a) for a in space.reference_archs()]
    full = [k for k in keys if np.all(np.isfinite(latency.row(k)[ref_idx]))]
    assert len(full) >= 20
    emb = hardware_embedding(latency.row(full[0])[ref_idx], space)
    assert emb.min() == 0.0 and emb.max() == 1.0


def test_disconnected_cells_are_dropped_for_training(latency: benchdata.DeviceTable) -> None:
    mask = benchdata.connected_mask()
    assert mask.sum() == 15625 - 341
    conn = latency.connected_only()
    assert np.all(np.isnan(conn.values[:, ~mask]))
    np.testing.assert_array_equal(conn.values[:, mask], latency.values[:, mask])


def test_energy_table(data_dir: Path) -> None:
    if not (data_dir / "hw_nas_bench_360").is_dir():
        pytest.skip("benchmark data not available")
    energy = benchdata.load_table(data_dir, "energy")
    assert energy.metric == "energy" and energy.keys
    assert all(k.startswith("hw_nas_bench_360:") for k in energy.keys)


@pytest.mark.parametrize("a, b", [
    ("help:1080ti_1", "help:1080ti_256"),
    ("eagle:desktop-cpu-core-i7-7820x-fp32", "eagle:desktop-gpu-gtx-1080ti-fp32"),
    ("eagle:mobile-gpu-snapdragon-855-adreno-640-int8", "oneproxy:eagle_mobile-gpu-snapdragon-855-adreno-640-int8"),
    ("hw_nas_bench_360:raspberrypi5:onnx_cifar100", "hw_nas_bench_360:raspberrypi5:litert_darcy"),
    ("help:pixel3", "oneproxy:hwnasbench_pixel3"),
    ("eagle:embedded-tpu-edgetpu-int8", "oneproxy:hwnasbench_edgetpu"),
])
def test_same_hardware_shares_a_group(a: str, b: str) -> None:
    assert hwgroups.hardware_group(a) == hwgroups.hardware_group(b)


@pytest.mark.parametrize("a, b", [
    ("help:gold_6240", "help:silver_4114"),
    ("help:2080ti_1", "help:titanx_1"),
    ("hw_nas_bench_360:raspberrypi5:onnx_cifar100", "hw_nas_bench_360:pixel6a:litert_cifar100"),
])
def test_different_hardware_differs(a: str, b: str) -> None:
    assert hwgroups.hardware_group(a) != hwgroups.hardware_group(b)


def test_unknown_device_and_metric(latency: benchdata.DeviceTable, tmp_path: Path) -> None:
    with pytest.raises(BadInput):
        latency.row("nowhere:board")
    with pytest.raises(BadInput):
        benchdata.load_table(tmp_path, "power")
    with pytest.raises(BadInput):
        benchdata.load_table(tmp_path / "absent", "latency")
    with pytest.raises(BadInput, match="no NB201"):
        benchdata.load_table(tmp_path, "latency")


def test_accuracy_table(data_dir: Path) -> None:
    if not (data_dir / "nb201").is_dir():
        pytest.skip("benchmark data not available")
    acc = benchdata.load_accuracy(data_dir)
    assert len(acc) == 15625 and acc.index.name == "arch_index"
    assert list(acc.index[:3]) == [0, 1, 2]
    assert acc["cifar10_test_200ep"].max() > 94
    space = get_space("nb201")
    assert acc.loc[1, "arch_str"] == space.arch_at(1)
