"""The new-board workflow through the loopback sshd board: onboard, pareto, select, export, validate."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modnas.toolkit.cli import main
from modnas.toolkit.store import Store

PNG = b"\x89PNG\r\n\x1a\n"


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, object, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


@pytest.mark.slow  # onboard, pareto, select, export, validate over SSH end to end (about a minute)
def test_board_workflow(sshd_board, modnas_home, tmp_path, capsys) -> None:
    dev = sshd_board.device_yaml(tmp_path, name="wf-board")
    code, doc, err = run(capsys, "onboard", str(dev), "--extra", "2", "--json", "--quiet")
    assert code == 0, err
    assert doc["device"] == "wf-board" and len(doc["references"]) == 10 and doc["extra"] == 2
    assert doc["fingerprint"]["cores"] >= 1
    cal = doc["calibration"]
    assert cal and len(cal["residuals"]) == 12
    store = Store(modnas_home / "modnas.db")
    assert len(store.get_embedding("wf-board", "nb201")) == 10

    code, front, err = run(capsys, "pareto", "--device", "wf-board", "--json")
    assert code == 0, err
    assert len(front) >= 2
    lat = [r["predicted"]["latency_ms"] for r in front]
    err_pct = [r["predicted"]["error"] for r in front]
    assert lat == sorted(lat) and all(x > 0 for x in lat)
    assert all(a >= b - 1e-9 for a, b in zip(err_pct, err_pct[1:]))  # non-dominated: slower means more accurate

    budget = sorted(lat)[len(lat) // 2] * 1.3
    code, pick, err = run(capsys, "select", "--device", "wf-board", "--budget-ms", f"{budget:.6f}", "--json")
    assert code == 0, err
    assert pick["predicted"]["latency_ms"] * (1 + pick["margin"]) <= budget
    code, _, err = run(capsys, "select", "--device", "wf-board", "--budget-ms", "0.000001")
    assert code == 2 and "fastest" in err

    code, exp, err = run(capsys, "export", pick["arch"], "--format", "onnx,tvm", "--device", str(dev),
                         "--out", str(tmp_path / "exp"), "--json")
    assert code == 0, err
    assert Path(exp["onnx"]).stat().st_size > 0 and Path(exp["tvm"]).stat().st_size > 0
    assert exp["max_abs_diff"]["onnx"] <= 1e-4 and exp["max_abs_diff"]["tvm"] <= 1e-4

    archs = tmp_path / "val.txt"
    archs.write_text("\n".join(r["arch"] for r in front[:3]) + "\n")
    campaigns = len(store.campaigns("wf-board"))
    code, val, err = run(capsys, "validate", str(dev), "--archs", str(archs), "--out", str(tmp_path / "val"),
                         "--rounds", "2", "--json", "--quiet")
    assert code == 0, err
    assert val["device"] == "wf-board" and len(val["rows"]) == 3
    assert -1 <= val["spearman"] <= 1 and val["mape"] >= 0 and 0 <= val["within_10pct"] <= 1
    for key in ("plot", "front_plot"):
        assert Path(val[key]).read_bytes()[:8] == PNG and Path(val[key]).stat().st_size > 2000
    # interleaved rounds: each a campaign that measures every architecture afresh; measured = median of rounds
    new = store.campaigns("wf-board")[campaigns:]
    assert len(new) == 2 and all(c["settings"]["archs"] == 3 and c["status"] == "done" for c in new)
    assert val["rounds"] == 2 and val["measured_as"] == "median of rounds"
    for r in val["rows"]:
        assert len(r["rounds"]) == 2 and r["measured"] == pytest.approx(sum(r["rounds"]) / 2)  # median of two
    stored = store.values("wf-board", "nb201", "latency")  # stored once: the median of rounds, all samples
    samples = {r["arch"]: r["samples"] for r in store.measurement_rows("wf-board", "nb201", "latency")}
    for r in val["rows"]:
        assert stored[r["arch"]] == pytest.approx(r["measured"]) and len(samples[r["arch"]]) == 2 * 2
    pairs = [abs(a - b) / r["measured"] for r in val["rows"] for a, b in [r["rounds"]]]
    assert val["repeatability_mape"] == pytest.approx(100 * sum(pairs) / 3)
    assert val["repeatability"]["mape"] == val["repeatability_mape"] and "pairs of rounds" in \
        val["repeatability"]["definition"]
    saved = json.loads((tmp_path / "val" / "validation.json").read_text())
    assert [r["rounds"] for r in saved["rows"]] == [r["rounds"] for r in val["rows"]]
    report = Path(val["report"]).read_text()
    assert "Spearman" in report and f"vs the board's repeatability {val['repeatability_mape']:.1f} %" in report
    code, _, err = run(capsys, "validate", str(dev), "--archs", str(archs), "--rounds", "0")
    assert code == 2 and "--rounds" in err


def test_predict_needs_references(modnas_home, capsys) -> None:
    code, _, err = run(capsys, "predict", "--device", "nobody", "--archs", "refs")
    assert code == 2 and "onboard" in err


# The quickstart as a user runs it (the CLI, a fresh process, a fresh home), made small: shorter timing
# blocks and 6 architectures beside the references instead of 20 (about a third of the full run's time).
SMALL_QUICKSTART = """
import sys
from modnas.toolkit.cli import main
from modnas.toolkit.workflow import new_board

full = new_board.local_device
quick = {"warmup_s": 0.1, "min_runs": 20, "min_time_s": 0.15, "cooldown_s": 0.05}
new_board.local_device = lambda out, space=None: (lambda cfg: cfg.model_copy(update={
    "measurement": cfg.measurement.model_copy(update=quick)}))(full(out, space))
new_board.QUICKSTART_EXTRA = 6
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.timeout(960)  # above the subprocess's own 900 s, so that one fails first, with its stderr
def test_quickstart_in_a_fresh_home(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), MODNAS_HOME=str(home / ".modnas"))
    try:
        proc = subprocess.run([sys.executable, "-c", SMALL_QUICKSTART, "quickstart", "--out", str(tmp_path / "qs"),
                               "--json"],
                              env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    except subprocess.TimeoutExpired as err:
        pytest.fail("quickstart still running after 900 s: " + (err.stderr or b"").decode(errors="replace")[-2000:])
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["device"] == "local" and len(doc["front"]) >= 3 and 1 <= len(doc["picks"]) <= 3
    picked = [p for p in doc["picks"] if p["arch"] is not None]
    assert picked, [p["reason"] for p in doc["picks"]]
    for p in picked:  # every pick measured on this machine to meet its budget
        assert p["verified"] and p["measured"]["latency_ms"] * (1 + p["verify_margin"]) <= p["budget_ms"]
    assert [e["arch"] for e in doc["exported"]] == list(dict.fromkeys(p["arch"] for p in picked))
    for e in doc["exported"]:
        assert Path(e["onnx"]).exists() and Path(e["tvm"]).exists()
    v = doc["validation"]
    assert Path(v["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(v["report"]).exists()
    assert v["rounds"] == 3 and v["repeatability_mape"] >= 0
    report = Path(v["report"]).read_text()
    assert "Verified picks" in report and "vs the board's repeatability" in report
    assert (home / ".modnas" / "modnas.db").exists()
