"""The gpt space's own measured tables: shipped with their metadata, replayed by boards (decode and prefill),
and what the predictors and the structural model make of a setting left out of training."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from modnas.toolkit.spaces import get_space
from modnas.toolkit.threads import torch_threads

SPACE = get_space("gpt")


def _meta() -> dict:
    return json.loads((resources.files("modnas.toolkit") / "assets" / "tables" / "gpt_tables.json").read_text())


@pytest.mark.parametrize("metric", ["latency", "prefill"])
def test_shipped_tables_cover_the_references_of_every_setting(metric: str) -> None:
    table = SPACE.load_table(None, metric)
    meta = _meta()
    assert sorted(table.keys) == sorted(meta["devices"]) and len(table.keys) >= 4
    assert len(table.archs) == meta["archs"] >= 100 and len(set(table.archs)) == len(table.archs)
    assert all(SPACE.canonical(a) == a for a in table.archs)
    assert SPACE.usable_table_keys(table) == table.keys  # every reference measured on every setting
    assert np.all(np.isfinite(table.values)) and np.all(table.values > 0)
    assert "benchmarks/gpt_tables.py" in meta["rebuild"] and set(meta["repeatability"]) == {
        k.split(":", 1)[1] for k in table.keys}
    # the settings really behave like different devices: not one column times a constant
    logs = np.log(table.values)
    ratios = logs - logs[0]
    assert np.max(np.std(ratios, axis=1)) > 0.05


def test_prefill_costs_more_than_decoding_one_token() -> None:
    decode, prefill = SPACE.load_table(None, "latency"), SPACE.load_table(None, "prefill")
    assert decode.archs == prefill.archs and decode.keys == prefill.keys
    assert np.mean(prefill.values > decode.values) > 0.95


def test_a_data_directory_overrides_the_shipped_tables(tmp_path: Path) -> None:
    (tmp_path / "gpt").mkdir()
    ref = SPACE.reference_archs()[0]
    (tmp_path / "gpt" / "gpt_latency.csv.gz").write_bytes(b"")  # unreadable: refused, not silently shipped
    import gzip

    (tmp_path / "gpt" / "gpt_latency.csv.gz").write_bytes(gzip.compress(f"arch,mine:x\n{ref},1.5\n".encode()))
    own = SPACE.load_table(tmp_path, "latency")
    assert own.keys == ["mine:x"] and own.values_by_arch("mine:x") == {SPACE.canonical(ref): 1.5}
    assert SPACE.load_table(tmp_path, "prefill").keys == SPACE.load_table(None, "prefill").keys


def test_replay_board_answers_decode_and_prefill_from_the_tables(tmp_path: Path, capsys, monkeypatch) -> None:
    from modnas.toolkit.cli import main
    from modnas.toolkit.data.replay_tables import main as replay_main

    monkeypatch.setenv("MODNAS_HOME", str(tmp_path / "home"))
    key = SPACE.load_table(None, "latency").keys[-1]
    assert replay_main(["--space", "gpt", "--device", key, "--noise", "0", "--out", str(tmp_path)]) == 0
    device = Path(capsys.readouterr().out.strip())
    assert "prefill:" in device.read_text()
    assert main(["profile", str(device), "--space", "gpt", "--archs", "refs", "--json", "--quiet"]) == 0
    rows = json.loads(capsys.readouterr().out)["measured"]
    lat, pre = SPACE.load_table(None, "latency"), SPACE.load_table(None, "prefill")
    assert len(rows) == len(SPACE.reference_archs())
    for row in rows:
        assert row["latency_ms"]["median"] == pytest.approx(lat.values_by_arch(key)[row["arch"]], rel=1e-6)
        assert row["prefill_ms"]["median"] == pytest.approx(pre.values_by_arch(key)[row["arch"]], rel=1e-6)


@pytest.mark.parametrize("metric", ["latency", "prefill"])
def test_a_held_out_setting_from_its_references(metric: str) -> None:
    """A predictor trained without a setting's hardware group, onboarded from its 12 references (zero-shot),
    then from 12 + 20 measurements with the device model (structural model included)."""
    from modnas.toolkit.prediction import predictors
    from modnas.toolkit.prediction.device_cost import device_cost
    from modnas.toolkit.prediction.evaluation import scores

    table = SPACE.load_table(None, metric)
    held = next(k for k in table.keys if "th2" in k)
    with torch_threads(1):
        fitted = predictors.fit_predictor(None, metric=metric, space="gpt", held_out=[held],
                                          config={"epochs": 60, "min_points": 50})
        pred = fitted["predictor"]
        assert held not in fitted["devices"] and fitted["devices"]
        row = table.row(held)
        refs = [SPACE.canonical(r) for r in SPACE.reference_archs()]
        pos = {a: i for i, a in enumerate(table.archs)}
        zero = device_cost(held, {r: row[pos[r]] for r in refs}, SPACE, metric, pred)
        rest = [a for a in table.archs if a not in refs]
        truth = np.array([row[pos[a]] for a in rest])
        z = scores(zero.predict(rest), truth)
        extra = rest[:20]
        both = device_cost(held, {a: row[pos[a]] for a in refs + extra}, SPACE, metric, pred)
        later = rest[20:]
        more = scores(both.predict(later), np.array([row[pos[a]] for a in later]))
    # the tables repeat to 21-30 % between sessions (gpt_tables.json): ranks, not percents, are what they teach;
    # a MAC count calibrated on the same references is the baseline the predictor has to beat
    flops = np.array([SPACE.flops(a) for a in table.archs])
    ref_idx = [pos[r] for r in refs]
    scale = np.exp(np.median(np.log(row[ref_idx]) - np.log(flops[ref_idx])))
    base = scores(flops[[pos[a] for a in rest]] * scale, truth)
    assert z["spearman"] > 0.75 and z["spearman"] > base["spearman"] - 0.02, (z, base)
    assert more["spearman"] > 0.75 and more["mdape"] < 1.5 * z["mdape"] + 2.0, (z, more)
