"""The command line is wiring: library errors name parameters and the CLI names the flags; commands get
typed results back whose ``to_json()`` is the documented JSON document; decisions live in the library."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from modnas.toolkit.cli import error_line, flag, main
from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces import get_space
from modnas.toolkit.store import Store

NB201 = get_space("nb201")
REFS = NB201.reference_archs()


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- errors: parameters in the library, flags on the command line ---------------------------------------------
def test_error_line_names_the_flag_of_each_parameter_at_fault() -> None:
    err = BadInput("`max_measurements` must not be negative, got -1", param="max_measurements")
    assert err.param == "max_measurements" and err.params == ("max_measurements",)
    assert error_line(err) == "--verify-max must not be negative, got -1"
    two = BadInput("give `weights` CKPT or `run` RUN, not both\nsecond line", param=("weights", "run"))
    assert error_line(two) == "give --weights CKPT or --run RUN, not both"
    # a name in backticks that is not a parameter at fault (a command to run) is left as it is
    other = BadInput("`data_dir` missing: run `modnas onboard x` first", param="data_dir")
    assert error_line(other) == "--data missing: run `modnas onboard x` first"
    assert flag("budget_ms") == "--budget-ms" and flag("n_extra") == "--extra" and flag("formats") == "--format"


def test_library_error_speaks_of_the_parameter(modnas_home: Path) -> None:
    from modnas.toolkit.search.api import open_run
    from modnas.toolkit.workflow.verify import verify_select

    with Store(modnas_home / "s.db") as store, pytest.raises(BadInput) as caught:
        verify_select("nowhere", store, open_run(None), 5.0, max_measurements=-1)
    assert caught.value.params == ("max_measurements",)
    assert "`max_measurements` must not be negative" in str(caught.value) and "--" not in str(caught.value)


@pytest.mark.parametrize("argv, line", [
    (["select", "--device", "nowhere", "--budget-ms", "5", "--verify", "--verify-max", "-1"],
     "modnas: --verify-max must not be negative, got -1"),
    (["pareto", "--device", "nowhere", "--preferences", "0"], "modnas: --preferences must be at least 1"),
    (["predictor", "eval", "--data", "/nonexistent-tables", "--folds", "1"],
     "modnas: --folds must be at least 2 and --extra not negative"),
    (["predictor", "fit", "--data", "/nonexistent-tables"], "modnas: --data '/nonexistent-tables': not a directory"),
])
def test_cli_maps_a_library_parameter_error_to_its_flag(capsys, modnas_home, argv, line) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err == line + "\n"


def test_train_epochs_error_names_the_flag(capsys, modnas_home, tmp_path: Path) -> None:
    code, _, err = run(capsys, "train", REFS[0], "--images", "digits", "--epochs", "0", "--out", str(tmp_path / "c"))
    assert code == 2 and err == "modnas: --epochs must be at least 1, got 0\n"


# -- typed results and their documents ----------------------------------------------------------------------------
def test_profile_result_serialises_to_the_interface_document() -> None:
    from modnas.toolkit.workflow.profiling import Failure, ProfileReport, ProfileResult, latency_row

    summary = {"median": 2.0, "p90": 2.5, "iqr": 0.2, "mean": 2.1, "std": 0.1, "n": 30, "ci95": [1.9, 2.1],
               "blocks_disagree": False, "agent_seconds": 3.0}
    energy = {"gross_mj": 9.0, "net_mj": 4.0, "idle_w": 1.5, "samples": 12}
    row = latency_row(REFS[0], summary, energy)
    bare = latency_row(REFS[1], {**{k: summary[k] for k in ("median", "p90", "iqr", "mean", "std", "n")},
                                 "replayed": True}, None)
    one = ProfileResult("pi", [row, bare], [REFS[2]], [Failure(REFS[3], "not_in_table: no row")])
    doc = ProfileReport([one]).to_json()
    assert doc == {
        "device": "pi",
        "measured": [{"arch": REFS[0], "latency_ms": {"median": 2.0, "p90": 2.5, "iqr": 0.2, "mean": 2.1, "std": 0.1,
                                                      "n": 30, "ci95": [1.9, 2.1], "blocks_disagree": False},
                      "energy_mj": {"gross": 9.0, "net": 4.0, "idle_w": 1.5, "samples": 12}},
                     {"arch": REFS[1], "latency_ms": {"median": 2.0, "p90": 2.5, "iqr": 0.2, "mean": 2.1, "std": 0.1,
                                                      "n": 30}, "energy_mj": None, "replayed": True}],
        "skipped": [REFS[2]],
        "failed": [{"arch": REFS[3], "error": "not_in_table: no row"}]}
    assert json.loads(json.dumps(doc)) == doc
    two = ProfileReport([one, ProfileResult("pj", [], [], [])]).to_json()  # several boards: the list
    assert [d["device"] for d in two] == ["pi", "pj"] and two[0] == doc


def test_verified_selection_document_keeps_optional_keys_out_until_set() -> None:
    from modnas.toolkit.workflow.verify import Candidate, MeasuredLatency, VerifiedSelection

    cand = Candidate(REFS[0], {"error": 6.0, "latency_ms": 4.0}, MeasuredLatency(4.2), "board", True,
                     verify_margin=0.02)
    failed = Candidate(REFS[1], {"error": 5.0, "latency_ms": 5.0}, None, "board", False, failed=True)
    pick = VerifiedSelection(REFS[0], {"error": 6.0, "latency_ms": 4.0}, 0.1, 0.0, 5.0, None, True,
                             MeasuredLatency(4.2, "board"), 0.02, 2, 0, 0, [failed, cand], None)
    doc = pick.to_json()
    assert list(doc) == ["arch", "predicted", "margin", "margin_ms", "budget_ms", "preference", "verified", "measured",
                         "verify_margin", "measurements", "skipped_by_estimate", "not_measured_verify_max",
                         "candidates", "unverified"]
    assert doc["measured"] == {"latency_ms": 4.2, "source": "board"}
    assert doc["candidates"] == [
        {"arch": REFS[1], "predicted": {"error": 5.0, "latency_ms": 5.0}, "measured": None, "source": "board",
         "meets": False, "failed": True},
        {"arch": REFS[0], "predicted": {"error": 6.0, "latency_ms": 4.0}, "measured": {"latency_ms": 4.2},
         "source": "board", "meets": True, "verify_margin": 0.02}]
    pick.reason, pick.replayed = "none fits", True
    assert list(pick.to_json())[-2:] == ["reason", "replayed"]


def test_export_report_document_names_each_file_and_keeps_the_order() -> None:
    from modnas.toolkit.workflow.exporting import ExportReport

    reply = {"arch": REFS[0], "max_abs_diff": {"onnx": 1e-7, "tvm": 2e-7}, "onnx": "/o/a.onnx",
             "onnx_int8": "/o/a-int8.onnx", "tvm_tuning": {"tuned": True, "tasks": 3}, "tvm": "/o/a-tvm.so",
             "accuracy": {"pytorch": 0.5, "onnx": 0.5}, "accuracy_note": "elsewhere"}
    report = ExportReport.of(reply)
    assert report.files == {"onnx": "/o/a.onnx", "onnx_int8": "/o/a-int8.onnx", "tvm": "/o/a-tvm.so"}
    assert report.to_json() == reply and list(report.to_json()) == list(reply)


def test_command_result_is_what_json_prints(capsys, modnas_home: Path, tmp_path: Path) -> None:
    """``import`` then ``devices``: --json prints the typed results' documents, in the interface's shape."""
    csv = tmp_path / "m.csv"
    csv.write_text("arch,value\n" + "".join(f"{a},{1.0 + i}\n" for i, a in enumerate(REFS)) + "nope,1\n")
    code, out, err = run(capsys, "import", str(csv), "--device", "pi-x", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert list(doc) == ["device", "imported", "rejected"] and doc["device"] == "pi-x" and doc["imported"] == 10
    assert [list(r) for r in doc["rejected"]] == [["line", "error"]] and doc["rejected"][0]["line"] == 12
    code, out, _ = run(capsys, "devices", "--json")
    with Store(modnas_home / "modnas.db") as store:
        typed = store.devices()
    assert json.loads(out) == [d.to_json() for d in typed]
    assert set(json.loads(out)[0]) >= {"name", "space", "measurements", "embedding"}


# -- decisions that moved out of the command line -----------------------------------------------------------------
def test_store_devices_join_predictor_training_at_one_threshold(tmp_path: Path) -> None:
    from modnas.toolkit.prediction.predictors import EXTRA_MIN_POINTS, store_training_values

    archs = NB201.sample(EXTRA_MIN_POINTS + 5, seed=1)
    with Store(tmp_path / "s.db") as store:
        store.import_values("enough", "nb201", "latency", {a: 1.0 + i for i, a in enumerate(archs[:EXTRA_MIN_POINTS])})
        store.import_values("short", "nb201", "latency",
                            {a: 1.0 + i for i, a in enumerate(archs[:EXTRA_MIN_POINTS - 1])})
        for i, a in enumerate(archs):
            store.add_measurement(device="copied", space="nb201", arch=a, metric="latency", value=1.0 + i,
                                  runtime="replay", source="replay")
        got = store_training_values(store, "nb201", "latency")
    assert sorted(got) == ["enough"] and len(got["enough"]) == EXTRA_MIN_POINTS


def test_search_plan_resolves_the_default_devices_and_says_which_were_left_out(data_dir: Path) -> None:
    from modnas.toolkit.search.default_run import objective_keys
    from modnas.toolkit.search.plan import plan_search

    if not (data_dir / "help").exists():
        pytest.skip(f"no shared tables under {data_dir}")
    plan = plan_search(objectives=["error", "latency", "energy"], data_dir=data_dir, epochs=2)
    kept, left = objective_keys(data_dir, ["error", "latency", "energy"])
    assert plan.devices == kept and plan.left_out == left and left
    assert plan.config.accuracy == "benchmark" and plan.config.epochs == 2
    named = plan_search(devices=["help:pixel3"], data_dir=data_dir)
    assert named.devices == ["help:pixel3"] and named.left_out == []
    with pytest.raises(BadInput) as caught:
        plan_search(devices=["help:pixel3"], data_dir=None)
    assert caught.value.params == ("data_dir",)
