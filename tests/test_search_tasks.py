"""Benchmark tasks (``--task``), table device names in pareto/select, and the three-objective path."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from modnas.toolkit.cli import main
from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces.nb201.tasks import TASK_COLUMNS

PI5 = "hw_nas_bench_360:raspberrypi5:onnx_cifar100"


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tables(data_dir: Path) -> Path:
    if not (data_dir / "combined" / "nb201_wide.csv.gz").exists():
        pytest.skip(f"benchmark tables not found under {data_dir}")
    return data_dir


def test_task_picks_the_accuracy_column() -> None:
    from modnas.toolkit.search.run import make_config

    for task, column in TASK_COLUMNS.items():
        cfg = make_config({"task": task})
        assert cfg.benchmark.task == task and cfg.benchmark.accuracy_column == column
    assert make_config({}).benchmark.task == "cifar10"                        # runs saved before the field: cifar10
    assert make_config({"accuracy_column": "imagenet16_120_test_12ep"}).benchmark.task == "imagenet16-120"
    assert make_config({"benchmark": {"task": "cifar100"}}).benchmark.accuracy_column == TASK_COLUMNS["cifar100"]
    with pytest.raises(BadInput, match="not a column of the cifar100 task"):
        make_config({"task": "cifar100", "accuracy_column": "cifar10_test_200ep"})
    assert make_config({"space": "ofa_mbv3", "accuracy": "supernet"}).benchmark.task is None


def test_a_run_records_its_task_and_searches_that_column(tables: Path, tmp_path: Path) -> None:
    """A cifar100 run reads the cifar100 column's surrogate, records the task, and only that task loads it."""
    import torch

    from modnas.toolkit.spaces.nb201.tables import load_accuracy
    from modnas.toolkit.search.api import run_search
    from modnas.toolkit.search.costs import linear_costs_from_table
    from modnas.toolkit.search.run import load_run
    from modnas.toolkit.search.surrogate import fit_surrogate, save_surrogate
    from modnas.toolkit.spaces import get_space

    space = get_space("nb201")
    acc = load_accuracy(tables)
    onehot = space.encode(space.all_archs())
    torch.set_num_threads(1)
    model, stats = fit_surrogate(onehot, acc["cifar100_test_200ep"].to_numpy(float), epochs=3, hidden=32, depth=1)
    save_surrogate(model, tmp_path / "sur", {"column": "cifar100_test_200ep", "fit": stats})
    costs = linear_costs_from_table(tables, ["help:1080ti_1", "help:pixel3"])
    res = run_search(costs, data_dir=None, epochs=1, out=tmp_path / "run", steps_per_epoch=2, prefs_per_step=4,
                     task="cifar100", surrogate_dir=str(tmp_path / "sur"), plots=False)
    assert res["task"] == "cifar100"
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    bench = meta["config"]["benchmark"]
    assert bench["task"] == "cifar100" and bench["accuracy_column"] == "cifar100_test_200ep"
    run = load_run(tmp_path / "run", task="cifar100")
    with torch.no_grad():
        err = run.surrogate.error(torch.as_tensor(onehot)).numpy()
    # the cifar100 surrogate: errors on CIFAR-100's scale (mean error about 39 %; CIFAR-10's about 12 %)
    assert 25.0 < float(err.mean()) < 60.0
    with pytest.raises(BadInput, match="not cifar10"):
        load_run(tmp_path / "run", task="cifar10")


@pytest.mark.parametrize("task", sorted(TASK_COLUMNS))
def test_the_shipped_run_of_each_task(task: str) -> None:
    from modnas.toolkit.search.run import default_run_path, load_run

    run = load_run(None, "nb201", task)
    assert run.config.benchmark.task == task and run.config.benchmark.accuracy_column == TASK_COLUMNS[task]
    assert run.path == default_run_path("nb201", task)
    assert (run.path / "surrogate" / "accuracy_surrogate.safetensors").exists()
    assert "Rebuild" in run.config.note and (task == "cifar10" or f"--task {task}" in run.config.note)


def test_task_flag_on_the_commands(capsys: pytest.CaptureFixture, modnas_home: Path, tables: Path) -> None:
    code, out, err = run_cli(capsys, "pareto", "--device", "help:2080ti_1", "--data", str(tables), "--task",
                             "cifar10", "--json")
    assert code == 0, err
    assert len(json.loads(out)) >= 3
    code, _, err = run_cli(capsys, "search", "--task", "cifar100", "--space", "ofa_mbv3", "--out", "x")
    assert code == 2 and "--task" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "pareto", "--device", "help:2080ti_1", "--task", "mnist")
    assert code == 2 and "mnist" in err


def test_table_device_names_in_pareto_and_select(capsys: pytest.CaptureFixture, modnas_home: Path,
                                                 tables: Path) -> None:
    code, out, err = run_cli(capsys, "pareto", "--device", PI5, "--data", str(tables), "--json")
    assert code == 0, err
    front = json.loads(out)
    lat = [r["predicted"]["latency_ms"] for r in front]
    assert lat == sorted(lat) and len({r["arch"] for r in front}) == len(front)
    code, out, err = run_cli(capsys, "select", "--device", PI5, "--data", str(tables), "--budget-ms",
                             str(float(np.median(lat))), "--json")
    assert code == 0, err
    pick = json.loads(out)
    assert pick["predicted"]["latency_ms"] * (1 + pick["margin"]) <= float(np.median(lat))
    for name, needle in (("help:nope", "unknown device"), ("help:x/../y", "invalid device name"),
                         ("a b", "invalid device name"), ("../etc", "invalid device name")):
        code, out, err = run_cli(capsys, "pareto", "--device", name, "--data", str(tables))
        assert code == 2 and needle in err and out == "", (name, err)
    code, _, err = run_cli(capsys, "select", "--device", PI5, "--budget-ms", "5")   # no --data, no MODNAS_DATA
    assert code == 2 and "--data" in err


@pytest.fixture(scope="module")
def energy_run(tables: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``modnas search --objectives error,latency,energy`` with the default devices, as a new user runs it."""
    import os

    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("MODNAS_HOME")
    os.environ["MODNAS_HOME"] = str(home)
    out = tmp_path_factory.mktemp("energy") / "run"
    try:
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["search", "--objectives", "error,latency,energy", "--accuracy", "benchmark", "--data",
                         str(tables), "--epochs", "1", "--out", str(out)])
    finally:
        if old is None:
            os.environ.pop("MODNAS_HOME", None)
        else:
            os.environ["MODNAS_HOME"] = old
    assert code == 0, err.getvalue()
    return out, err.getvalue()


def test_three_objectives_take_the_devices_with_energy(energy_run: tuple[Path, str], tables: Path) -> None:
    from modnas.toolkit.spaces.nb201.tables import load_table

    run_dir, stderr = energy_run
    meta = json.loads((run_dir / "config.json").read_text())
    energy_keys = set(load_table(tables, "energy").keys)
    assert meta["config"]["objectives"] == ["error", "latency", "energy"]
    assert meta["config"]["devices"] and set(meta["config"]["devices"]) <= energy_keys
    said = [line for line in stderr.splitlines() if "with latency, energy" in line]
    assert len(said) == 1 and all(d in said[0] for d in meta["config"]["devices"])


def test_three_objective_read_out_for_a_table_device(energy_run: tuple[Path, str], tables: Path,
                                                     capsys: pytest.CaptureFixture, modnas_home: Path) -> None:
    from modnas.toolkit.spaces.nb201.tables import load_accuracy, load_table
    from modnas.toolkit.pareto import hypervolume, nondominated, normalise

    run_dir, _ = energy_run
    code, out, err = run_cli(capsys, "pareto", "--run", str(run_dir), "--device", PI5, "--data", str(tables),
                             "--json")
    assert code == 0, err
    front = json.loads(out)
    assert front and all({"error", "latency_ms", "energy_mj"} <= set(r["predicted"]) for r in front)
    # scored on the true table values, 3-D hypervolume against the exhaustive front
    from modnas.toolkit.spaces import get_space

    idx = get_space("nb201").all_archs()
    pos = {a: i for i, a in enumerate(idx)}
    truth = np.column_stack([100 - load_accuracy(tables)["cifar10_test_200ep"].to_numpy(float),
                             load_table(tables, "latency").row(PI5), load_table(tables, "energy").row(PI5)])
    valid = np.all(np.isfinite(truth), axis=1) & (truth[:, 0] < 89.5)
    lo, hi = truth[valid].min(axis=0), truth[valid].max(axis=0)
    hv_all = hypervolume(normalise(nondominated(truth[valid]), lo, hi))
    picks = [pos[r["arch"]] for r in front if valid[pos[r["arch"]]]]
    ratio = hypervolume(normalise(truth[picks], lo, hi)) / hv_all
    assert 0.5 < ratio <= 1.0 + 1e-9


def _bench() -> object:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "search_eval.py"
    spec = importlib.util.spec_from_file_location("search_eval", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_holds_out_runtimes_when_every_energy_device_is_one_board() -> None:
    bench = _bench()
    keys = [f"hw_nas_bench_360:raspberrypi5:{rt}_{task}" for rt in ("litert", "onnx", "torchmobile")
            for task in ("cifar100", "darcy", "ninapro")]
    train, held, units, unit = bench.split_held_out(keys, 0, 0.25)  # type: ignore[attr-defined]
    assert len(units) == 1 and "runtime" in unit and len(held) == 3 and len(train) == 6
    rt = units[0].split("/")[1]
    assert all(f":{rt}_" in k for k in held) and not any(f":{rt}_" in k for k in train)
    assert bench.split_held_out(keys, 1, 0.25)[2] != units or bench.split_held_out(keys, 2, 0.25)[2] != units  # type: ignore[attr-defined]


def test_benchmark_spread_picks_cover_the_front() -> None:
    bench = _bench()
    t = np.linspace(0.0, 1.0, 40)
    front = np.column_stack([t, (1 - t) ** 2])                    # 40 non-dominated points
    dominated = front[::4] + 0.05
    pts = np.vstack([front, dominated])
    picks = bench.spread_picks(pts, 8)  # type: ignore[attr-defined]
    assert len(picks) == 8 and all(p < 40 for p in picks)        # never a dominated point
    assert t[min(picks)] < 0.25 and t[max(picks)] > 0.75          # spread along the front, not bunched
