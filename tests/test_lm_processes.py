"""A language model's blocks are timed in separate fresh worker processes (its timing depends on the process);
image networks keep every block in one worker. Real agent (zipapp) and worker processes, tiny ONNX graphs."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from modnas.profilers.campaign import Board, MeasureJob
from modnas.profilers.errors import BadInput
from modnas.profilers.stats import summarize
from sshd_fixture import leftover_processes, tiny_onnx

QUICK = {"warmup_s": 0.02, "min_runs": 4, "min_time_s": 0.02, "repeats": 3, "cooldown_s": 0.0}
GRAPHS = {"decode": "decode.onnx", "prefill": "prefill.onnx"}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[int], str]]:
    """An image network (one ONNX file) and a stand-in language model: a tar of a decode and a prefill graph."""
    root = tmp_path_factory.mktemp("models")
    image, shape = tiny_onnx(root / "tiny.onnx", channels=4)
    lm = root / "lm.tar"
    with tarfile.open(lm, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member in GRAPHS.values():
            tar.add(str(image), arcname=member)
    return {name: (path, shape, hashlib.sha256(path.read_bytes()).hexdigest())
            for name, path in (("image", image), ("lm", lm))}


def _job(model: tuple[Path, list[int], str], workdir: Path, **overrides: Any) -> dict:
    path, shape, sha = model
    lm = path.suffix == ".tar"
    doc = {"artifact": str(path), "sha256": sha, "runtime": "onnxruntime", "threads": 1, "input_shape": shape,
           "measurement": dict(QUICK, **({"context": 8, "prompt": 4} if lm else {})), "energy": {"sensor": "none"},
           "timeout_s": 60, "meta": {"graphs": dict(GRAPHS)} if lm else {}, "workdir": str(workdir)}
    doc.update(overrides)
    return doc


def _run(agent_file: Path, job: dict) -> dict:
    done = subprocess.run([sys.executable, str(agent_file), "run", "-"], input=json.dumps(job).encode(),
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()[-500:]
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1, done.stdout
    return json.loads(lines[0])


def test_lm_blocks_come_from_distinct_worker_processes(agent_file: Path, models: Any, tmp_path: Path) -> None:
    reply = _run(agent_file, _job(models["lm"], tmp_path))
    assert reply["ok"] is True, reply
    repeats = QUICK["repeats"]
    assert len(reply["blocks"]) == repeats and len(reply["prefill_blocks"]) == repeats
    assert all(len(b) >= QUICK["min_runs"] for b in reply["blocks"] + reply["prefill_blocks"])
    assert len(set(reply["block_pids"])) == repeats == reply["processes"]
    assert reply["peak_rss_mb"] > 0
    assert list(tmp_path.iterdir()) == [] and leftover_processes(str(tmp_path)) == []


def test_image_blocks_stay_in_one_worker(agent_file: Path, models: Any, tmp_path: Path) -> None:
    reply = _run(agent_file, _job(models["image"], tmp_path))
    assert reply["ok"] is True, reply
    assert len(reply["blocks"]) == QUICK["repeats"] and "prefill_blocks" not in reply
    assert len(set(reply["block_pids"])) == 1 and reply["processes"] == 1


def test_lm_processes_switch_and_uneven_split(agent_file: Path, models: Any, tmp_path: Path) -> None:
    one = _run(agent_file, _job(models["lm"], tmp_path, processes=1))  # the single-process protocol
    assert one["ok"] and one["processes"] == 1 and len(one["blocks"]) == QUICK["repeats"]
    two = _run(agent_file, _job(models["lm"], tmp_path, processes=2))  # 3 blocks: 2 in the first worker, 1 after
    assert two["ok"] and two["processes"] == 2
    pids = two["block_pids"]
    assert pids[0] == pids[1] != pids[2]
    bad = _run(agent_file, _job(models["lm"], tmp_path, processes=QUICK["repeats"] + 1))
    assert (bad["ok"], bad["error_code"]) == (False, "bad_job")


def test_a_failed_lm_worker_is_a_typed_error(agent_file: Path, models: Any, tmp_path: Path) -> None:
    reply = _run(agent_file, _job(models["lm"], tmp_path, input_shape=[1, 3, 8, 8]))  # the graph refuses it
    assert (reply["ok"], reply["error_code"]) == (False, "load_failed"), reply
    assert reply["error"].startswith("worker 1 of 3: ") and reply["blocks"] == []
    assert "pid" not in reply and list(tmp_path.iterdir()) == []


def test_campaign_summarises_lm_blocks_across_processes(models: Any, tmp_path: Path) -> None:
    cfg = SimpleNamespace(name="here", host="local", python=sys.executable, workdir=str(tmp_path / "work"))
    path, shape, sha = models["lm"]
    lm = {"artifact": path, "sha256": sha, "runtime": "onnxruntime", "threads": 1, "input_shape": shape,
          "measurement": dict(QUICK, context=8, prompt=4), "timeout_s": 60, "meta": {"graphs": dict(GRAPHS)}}
    with Board(cfg) as board:
        split = board.measure(MeasureJob(**lm))
        single = board.measure(MeasureJob(**lm, processes=1))
        image = board.measure(MeasureJob(models["image"][0], models["image"][2], "onnxruntime", 1, shape,
                                         dict(QUICK), timeout_s=60))
    assert split.ok and single.ok and image.ok, (split.error, single.error, image.error)
    assert split.processes == 3 and split.summary["processes"] == 3 and split.prefill_summary["processes"] == 3
    medians = sorted(split.summary["block_medians"])
    assert split.summary["median"] == medians[1]  # the median process, not the pooled samples
    assert single.processes == 1 and "processes" not in single.summary
    assert image.processes == 1 and "processes" not in image.summary
    with pytest.raises(BadInput, match="processes"):
        MeasureJob(**lm, processes=4)


def test_summary_across_blocks_takes_the_median_block() -> None:
    blocks = [[1.0] * 9, [2.0] * 3, [1.3] * 5]
    pooled, across = summarize(blocks), summarize(blocks, across_blocks=True)
    assert pooled["median"] == 1.0 and across["median"] == 1.3
    assert across["ci95"][0] <= 1.3 <= across["ci95"][1] and across["ci95"] != pooled["ci95"]
    assert across["n"] == pooled["n"] == 17 and across["blocks_disagree"] is True
