"""gpt architectures measured on the loopback sshd board through the ordinary campaign: the decode graph
(``latency``, a key/value cache of ``context`` tokens), its prefill companion (``prefill``, ``prompt``
tokens) and the worker's peak memory, stored under settings that include context and prompt."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from modnas.toolkit.config import read_device_file
from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces import get_space
from modnas.toolkit.store import Store
from modnas.toolkit.workflow.artifacts import build_artifact
from modnas.toolkit.workflow.profiling import profile_device


# the smallest reference and a deeper, wider one: decode latency differs clearly
ARCHS = ["e=128;l=2;h=2-2;m=2-2", "e=256;l=5;h=2-2-4-4-8;m=2-2-3-3-4"]
QUICK = {"warmup_s": 0.2, "min_runs": 5, "min_time_s": 0.1, "repeats": 2, "cooldown_s": 0.0, "timeout_s": 120.0}


def _device(sshd_board, tmp_path: Path, context: int):
    path = sshd_board.device_yaml(tmp_path, name="loop-gpt", threads=1,
                                  measurement=dict(QUICK, context=context, prompt=16))
    return read_device_file(path)


def test_gpt_profile_decode_prefill_memory_and_resume(sshd_board, modnas_home, tmp_path) -> None:
    space = get_space("gpt")
    store = Store(modnas_home / "modnas.db")
    result = profile_device(_device(sshd_board, tmp_path, 32), store, space, ARCHS, quiet=True)
    assert result.failed == [] and result.skipped == []
    doc = result.to_json()
    rows = {r["arch"]: r for r in doc["measured"]}
    assert list(rows) == ARCHS
    for row in rows.values():
        assert row["latency_ms"]["median"] > 0 and row["latency_ms"]["n"] >= 10
        assert set(row["prefill_ms"]) >= {"median", "p90", "iqr", "mean", "std", "n"}
        assert row["prefill_ms"]["median"] > row["latency_ms"]["median"]  # 16 tokens cost more than one
        assert row["peak_rss_mb"] > 10
    assert rows[ARCHS[1]]["latency_ms"]["median"] > rows[ARCHS[0]]["latency_ms"]["median"]
    json.dumps(doc, allow_nan=False)
    # stored as latency and prefill, with the settings they were taken at
    assert set(store.values("loop-gpt", "gpt", "prefill")) == set(ARCHS)
    lat = store.measurement_rows("loop-gpt", "gpt")
    assert all(r["settings_key"].endswith("-th1-x32-p16") for r in lat)
    assert all(r["summary"]["context"] == 32 and r["summary"]["prompt"] == 16 and r["summary"]["peak_rss_mb"] > 0
               for r in lat)
    pre = store.measurement_rows("loop-gpt", "gpt", "prefill")
    assert all(len(r["samples"]) == 2 and r["summary"]["prompt"] == 16 for r in pre)
    # the same settings again: stored, skipped; another context is another measurement
    again = profile_device(_device(sshd_board, tmp_path, 32), store, space, ARCHS[:1], quiet=True)
    assert again.skipped == ARCHS[:1] and again.measured == []
    longer = profile_device(_device(sshd_board, tmp_path, 64), store, space, ARCHS[:1], quiet=True)
    assert [r.arch for r in longer.measured] == ARCHS[:1] and longer.skipped == []
    assert len(store.measurement_rows("loop-gpt", "gpt")) == 3
    # image devices in the store's summary keep their two metrics; gpt counts its prefill
    summary = {(d.name, d.space): d.measurements for d in store.devices()}
    assert summary[("loop-gpt", "gpt")] == {"latency": 2, "energy": 0, "prefill": 2}
    store.close()


def test_gpt_artifact_is_both_graphs_by_hash(modnas_home, tmp_path) -> None:
    space = get_space("gpt")
    art = build_artifact(space, ARCHS[0], "onnxruntime", tmp_path / "cache")
    assert art.kind == "onnx_graphs" and art.path.suffix == ".tar" and art.input_shape == (1, 1)
    assert art.meta["graphs"] == {"decode": "decode.onnx", "prefill": "prefill.onnx"}
    assert art.meta["vocab_size"] > 0 and art.meta["positions"] == 256
    with tarfile.open(art.path) as tar:
        assert sorted(tar.getnames()) == ["decode.onnx", "prefill.onnx"]
    assert build_artifact(space, ARCHS[0], "onnxruntime", tmp_path / "cache").sha256 == art.sha256
    with pytest.raises(BadInput) as err:
        build_artifact(space, ARCHS[0], "tvm", tmp_path / "cache")
    assert err.value.param == "runtime"


def test_agent_builds_lm_inputs_from_declared_shapes(modnas_home, tmp_path) -> None:
    """In-process: decode at the context, prefill at the prompt; a context past the positions is refused."""
    from modnas.profilers.board.runtimes import onnxruntime as ort_runtime

    art = build_artifact(get_space("gpt"), ARCHS[0], "onnxruntime", tmp_path / "cache")
    run_once = ort_runtime.load(str(art.path), 1, [1, 1], dict(art.meta, dims={"past": 20, "prompt": 7}))
    run_once()
    run_once.prefill()
    with pytest.raises(ValueError, match="positions"):
        ort_runtime.load(str(art.path), 1, [1, 1], dict(art.meta, dims={"past": 256, "prompt": 7}))
