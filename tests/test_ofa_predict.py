"""The ofa_mbv3 latency predictor: HELP's OFA table through the NB201 code path, the shipped
predictor, and import-then-predict from the command line on a fresh install."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr


from modnas.toolkit.data import groups as hwgroups
from modnas.toolkit.prediction import predictors, evaluation
from modnas.toolkit.cli import main
from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces import get_space

SPACE = "ofa_mbv3"
DEVICE = "help_ofa:v100_32"  # onboarded from its 10 reference latencies only
TINY = dict(hidden=16, hw_hidden=8, head_hidden=16, epochs=1, per_device=32, batch=64)


def test_batch_sizes_of_one_gpu_share_a_hardware_group() -> None:
    assert hwgroups.hardware_group("help_ofa:v100_64") == hwgroups.hardware_group("help_ofa:v100_1") == "v100"
    assert hwgroups.hardware_group("help_ofa:titan_xp_32") == "titan_xp"
    assert hwgroups.hardware_group("help_ofa:2080ti_1") != hwgroups.hardware_group("help_ofa:v100_1")


def test_training_devices_read_the_ofa_table_and_hold_out_whole_gpus(data_dir: Path, ofa_table) -> None:
    cfg = predictors.PredictorConfig(**TINY)
    tables = {"latency": ofa_table}
    pool, devices, record = predictors.training_devices(data_dir, SPACE, "latency", cfg, tables=tables)
    space = get_space(SPACE)
    assert pool.shape == (len(ofa_table.archs), space.onehot_dim)
    assert sorted(d.key for d in devices) == sorted(ofa_table.keys)
    assert all(d.imputed == 0 and len(d.rows) == len(ofa_table.archs) for d in devices)
    # the standardised targets come from the device's own 10 reference latencies
    dev = next(d for d in devices if d.key == DEVICE)
    refs = ofa_table.row(DEVICE)[[ofa_table.archs.index(r) for r in space.reference_archs()]]
    np.testing.assert_allclose(dev.refs, refs)
    assert record["digest"]
    # one key holds out every batch size of its GPU
    _, kept, _ = predictors.training_devices(data_dir, SPACE, "latency", cfg, held_out=["help_ofa:v100_1"],
                                             tables=tables)
    assert kept and all(d.group != "v100" for d in kept)
    assert len(kept) == len(devices) - sum(d.group == "v100" for d in devices)
    with pytest.raises(BadInput):
        predictors.training_devices(data_dir, SPACE, "latency", cfg, held_out=["v100", "2080ti", "titan_xp"],
                                    tables=tables)


def test_leave_gpus_out_evaluation_runs_for_ofa(data_dir: Path, ofa_table) -> None:
    res = evaluation.leave_groups_out(data_dir, space=SPACE, folds=[["v100"]], config=TINY)
    assert sorted(e["device"] for e in res["rows"]) == sorted(k for k in ofa_table.keys if "v100" in k)
    for e in res["rows"]:
        assert hwgroups.hardware_group(e["nearest_device"]) != "v100"
        for method in ("predictor", "uncalibrated", "flops", "nearest"):
            assert -1 <= e[method]["spearman"] <= 1 and e[method]["n"] == len(ofa_table.archs) - 10
        assert e["predictor"]["spearman"] == pytest.approx(e["uncalibrated"]["spearman"])
    assert "help_ofa:v100_64" in res["markdown"]


def test_shipped_ofa_predictor_says_how_to_rebuild_it(ofa_table) -> None:
    pred = predictors.load_default(SPACE, "latency")
    assert pred.space_name == SPACE and pred.metric == "latency"
    assert pred.references == get_space(SPACE).reference_archs()
    assert "--space ofa_mbv3" in pred.meta["rebuild"]
    assert sorted(d["key"] for d in pred.meta["training_devices"]) == sorted(ofa_table.keys)
    assert pred.meta["data_digest"]


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", "value"])
        w.writerows(rows)


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, object, str]:
    code = main(argv + ["--json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else None), out.err


def test_import_references_then_predict_from_the_command_line(modnas_home: Path, ofa_table, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    space = get_space(SPACE)
    refs = space.reference_archs()
    pos = {a: i for i, a in enumerate(ofa_table.archs)}
    row = ofa_table.row(DEVICE)
    good = [(r, repr(float(row[pos[r]]))) for r in refs]
    # a non-canonical spelling of a reference: the unused slots of a depth-2 stage hold other values
    ks, e, d, res = refs[4].split(";")
    ks_list = ks.split("=")[1].split("-")
    ks_list[3] = "7"  # stage 1 of refs[4] has depth 2: slot 4 is ignored
    good[4] = (f"ks={'-'.join(ks_list)};{e};{d};{res}", good[4][1])
    bad = [(refs[0].replace("r=196", "r=230"), "10.0"),        # resolution outside the space
           (refs[1].replace("ks=7-3", "ks=9-3", 1), "10.0"),    # kernel 9
           ("ks=3-3-3;e=3-3-3;d=2-2-2-2-2;r=160", "10.0"),      # too few slots
           ("d=2-2-2-2-2;r=160", "10.0")]                       # missing fields
    csv_path = tmp_path / "refs.csv"
    _write_csv(csv_path, good[:5] + bad + good[5:])
    code, doc, err = _run(capsys, ["import", str(csv_path), "--device", "gpu-x", "--space", SPACE])
    assert code == 0, err
    assert doc["imported"] == 10
    assert [r["line"] for r in doc["rejected"]] == [7, 8, 9, 10]
    assert all("\n" not in r["error"] and "ofa_mbv3" in r["error"] for r in doc["rejected"])

    code, devs, err = _run(capsys, ["devices"])
    assert code == 0, err
    assert any(x["name"] == "gpu-x" and x["space"] == SPACE and x["embedding"] for x in devs)

    # architectures the device was not onboarded on: a seeded sample of the table
    pick = np.random.default_rng(0).choice(np.setdiff1d(np.arange(len(ofa_table.archs)),
                                                         [pos[r] for r in refs]), size=300, replace=False)
    archs_path = tmp_path / "archs.txt"
    archs_path.write_text("# OFA subnets\n" + "\n".join(ofa_table.archs[i] for i in pick) + "\n")
    code, preds, err = _run(capsys, ["predict", "--device", "gpu-x", "--space", SPACE, "--archs", str(archs_path)])
    assert code == 0, err
    assert [p["arch"] for p in preds] == [ofa_table.archs[i] for i in pick]
    values = np.array([p["value"] for p in preds])
    truth = row[pick]
    assert np.all(np.isfinite(values)) and np.all(values > 0)
    assert spearmanr(values, truth)[0] > 0.6
    ratio = np.median(values / truth)  # calibrated from the 10 references: right unit and scale
    assert 0.7 < ratio < 1.4

    # a bad architecture in the file is one line of error, exit 2
    bad_path = tmp_path / "bad.txt"
    bad_path.write_text(ofa_table.archs[0] + "\nks=3;e=3;d=2;r=160\n")
    code, _, err = _run(capsys, ["predict", "--device", "gpu-x", "--space", SPACE, "--archs", str(bad_path)])
    assert code == 2 and err.count("\n") == 1 and ":2:" in err


def test_predict_without_all_references_asks_for_them(modnas_home: Path, ofa_table, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    refs = get_space(SPACE).reference_archs()
    row = ofa_table.row(DEVICE)
    pos = {a: i for i, a in enumerate(ofa_table.archs)}
    csv_path = tmp_path / "few.csv"
    _write_csv(csv_path, [(r, repr(float(row[pos[r]]))) for r in refs[:9]])
    assert _run(capsys, ["import", str(csv_path), "--device", "gpu-y", "--space", SPACE])[0] == 0
    code, _, err = _run(capsys, ["predict", "--device", "gpu-y", "--space", SPACE, "--archs", "refs"])
    assert code == 2 and "reference" in err and err.count("\n") == 1


def test_device_from_table_onboards_an_ofa_setting(data_dir: Path, ofa_table) -> None:
    from modnas.toolkit.prediction.device_cost import device_from_table

    dev = device_from_table(data_dir, "help_ofa:titan_xp_64", SPACE, table=ofa_table)
    lo, hi = dev.minmax()
    assert 0 < lo < hi and np.isfinite(hi)
    sample = ofa_table.archs[:200]
    truth = ofa_table.row("help_ofa:titan_xp_64")[:200]
    assert spearmanr(dev.predict(sample), truth)[0] > 0.8
    with pytest.raises(BadInput):
        device_from_table(data_dir, "help_ofa:titan_xp_64", SPACE, metric="energy", table=ofa_table)
