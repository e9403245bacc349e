"""MetaSchedule tuning with a per-board database: bad input (fast), and one tiny tuning through the real
code path (slow: MetaSchedule's first tuning context imports every tensor intrinsic TVM ships, about
80 s of CPU before the first candidate, then a few seconds per kernel on a 2-core host)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modnas.exporters.tvm_tune import PROGRESS_FILE, RECORDS_FILE, WORKLOADS_FILE, TuneBudget, TuneProgressFile, tuning_dir
from modnas.toolkit.cli import main
from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces import get_space


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("extra, needle", [
    (["--format", "onnx", "--tune"], "add tvm to --format"),
    (["--format", "tvm", "--tune-trials", "4"], "go with --tune"),
    (["--format", "tvm", "--tune", "--tune-trials", "0"], "--tune-trials"),
    (["--format", "tvm", "--tune", "--tune-minutes", "-1"], "--tune-minutes"),
])
def test_export_tune_bad_input_exit_2_one_line(capsys, modnas_home: Path, tmp_path: Path, extra: list[str],
                                               needle: str) -> None:
    arch = get_space("nb201").reference_archs()[0]
    code, out, err = _run(capsys, "export", arch, "--out", str(tmp_path / "out"), *extra)
    assert code == 2 and needle in err and out == "", err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (modnas_home / "tune").exists()


def test_tuning_dir_is_per_board_and_target(tmp_path: Path) -> None:
    x86, other = {"kind": "llvm", "mcpu": "znver3"}, {"kind": "llvm", "mcpu": "skylake"}
    assert tuning_dir("rpi", x86, tmp_path) == tuning_dir("rpi", dict(reversed(list(x86.items()))), tmp_path)
    assert tuning_dir("rpi", x86, tmp_path) != tuning_dir("rpi", other, tmp_path)
    assert tuning_dir("rpi", x86, tmp_path).parent != tuning_dir("jetson", x86, tmp_path).parent
    with pytest.raises(BadInput):
        tuning_dir("../escape", x86, tmp_path)


def test_progress_file_round_trip_and_corrupt(tmp_path: Path) -> None:
    path = tmp_path / PROGRESS_FILE
    progress = TuneProgressFile(path)
    progress.add("k1", "conv", 3, exhausted=False)
    progress.save()
    again = TuneProgressFile(path)
    assert again.trials("k1") == 3 and not again.done("k1", 4) and again.done("k1", 3)
    again.add("k1", "conv", 0, exhausted=True)  # a search space with nothing left counts as done
    assert again.done("k1", 100)
    path.write_text("{truncated")
    with pytest.raises(BadInput):
        TuneProgressFile(path)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from torch import nn

    from modnas.exporters.onnx import export_onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    return export_onnx(model, (1, 3, 8, 8), tmp_path_factory.mktemp("tune") / "tiny.onnx").path


def _records(db_dir: Path) -> int:
    return sum(1 for line in (db_dir / RECORDS_FILE).read_text().splitlines() if line.strip())


@pytest.mark.slow
@pytest.mark.early  # before the rest of the suite has loaded its modules (see conftest)
def test_tiny_tuning_writes_reuses_and_resumes(tiny_onnx: Path, tmp_path: Path) -> None:
    import tvm

    from modnas.exporters.tvm_tune import prepare_module, tune_and_build, tune_module

    target = {"kind": "llvm", "num-cores": 1}
    budget = TuneBudget(trials=2, chunk=2)
    first = tune_and_build(tiny_onnx, target, tmp_path / "a", board="board1", home=tmp_path, budget=budget,
                           threads=1, log=None)
    tuning: dict[str, Any] = first.meta["tuning"]
    db_dir = Path(tuning["database"])
    assert db_dir == tuning_dir("board1", target, tmp_path)
    assert (db_dir / WORKLOADS_FILE).is_file() and _records(db_dir) >= tuning["tasks"] > 0
    assert tuning["reused"] == 0 and tuning["tuned_now"] == tuning["tasks"] and tuning["trials_now"] > 0
    assert first.meta["tuned"] is True and first.max_abs_diff is not None and first.max_abs_diff <= 1e-4
    kept = _records(db_dir)

    second = tune_and_build(tiny_onnx, target, tmp_path / "b", board="board1", home=tmp_path, budget=budget,
                            threads=1, log=None)
    assert second.meta["tuning"]["reused"] == tuning["tasks"]
    assert second.meta["tuning"]["tuned_now"] == 0 and second.meta["tuning"]["trials_now"] == 0
    assert _records(db_dir) == kept and second.max_abs_diff is not None and second.max_abs_diff <= 1e-4

    # a wall-clock limit hit after the first chunk: the rest waits for a later call, which resumes
    ticks = iter([0.0, 0.0])
    clock = lambda: next(ticks, 1e6)  # noqa: E731
    mod = prepare_module(tiny_onnx, tvm.target.Target(target))
    other = tuning_dir("board2", target, tmp_path)
    cut = tune_module(mod, tvm.target.Target(target), other, TuneBudget(trials=2, chunk=2, minutes=1),
                      threads=1, log=None, clock=clock)
    assert cut.stopped_by_clock and cut.tuned_now == 1 and cut.pending == cut.tasks - 1
    saved = json.loads((other / PROGRESS_FILE).read_text())["kernels"]
    assert len(saved) == 1
    rest = tune_module(mod, tvm.target.Target(target), other, budget, threads=1, log=None)
    assert rest.reused == 1 and rest.tuned_now == cut.tasks - 1 and rest.pending == 0 and not rest.stopped_by_clock
