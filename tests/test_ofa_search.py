"""The MODNAS search over ofa_mbv3: masked hypernetwork logits, a supernet-mode run on the digits,
read-out, extraction for export, the distilled surrogate, and the commands with ``--space ofa_mbv3``
(the shipped run, a run of one's own, and a board onboarded and validated through the loopback sshd)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from modnas.toolkit.cli import main
from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces import get_space

SPACE = "ofa_mbv3"
TRAIN = ["help_ofa:2080ti_1", "help_ofa:v100_32"]
UNSEEN = "help_ofa:titan_xp_1"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object, str]:
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, ofa_table) -> tuple[Path, list]:
    """One epoch of supernet mode on 240 digits for two GPU settings (their shipped-predictor costs)."""
    from modnas.toolkit.search.api import resolve_devices, run_search

    devices, _ = resolve_devices(TRAIN, data_dir, table=ofa_table, space=SPACE)
    out = tmp_path_factory.mktemp("ofa-run") / "run"
    run_search(devices, accuracy="supernet", data_dir="digits", epochs=1, out=out, seed=0, space=SPACE,
               batch_size=32, max_images=240, plots=False)
    return out, devices


def test_hypernet_logits_never_pick_a_choice_the_decision_lacks() -> None:
    from modnas.toolkit.search.hypernet import MASKED, build_hypernet
    from modnas.toolkit.search.samplers import get_sampler
    from modnas.toolkit.search.layout import hypernet_layout

    space = get_space(SPACE)
    layout = hypernet_layout(space)
    assert layout["n_decisions"] == 46 and layout["n_choices"] == 25
    assert layout["choice_counts"] == [3] * 45 + [25]
    assert hypernet_layout(get_space("nb201")) == {"n_decisions": 6, "n_choices": 5}  # shipped runs load as before
    for kind in ("mlp", "experts"):
        torch.manual_seed(0)
        h = build_hypernet(kind, n_objectives=2, emb_dim=10, init_std=1.0, **layout)
        assert "valid" not in h.state_dict()  # the mask is rebuilt from choice_counts, not stored
        logits = h(torch.rand(64, 2), torch.rand(64, 10))
        assert torch.all(logits[:, :45, 3:] == MASKED) and torch.all(logits[:, 45, :] > MASKED)
        for name in ("reinmax", "gdas"):
            sample = get_sampler(name)(logits, torch.Generator().manual_seed(1))
            flat = h.flatten(sample)
            assert flat.shape == (64, space.onehot_dim)
            assert torch.allclose(flat.detach().sum(dim=1), torch.full((64,), 46.0))
            for row in flat.detach().numpy():  # a valid architecture for every row
                space.decode(row)
        archs = [space.from_indices(r) for r in logits.argmax(-1).tolist()]
        assert len(archs) == 64


def test_supernet_mode_search_reads_out_and_extracts(tiny_run, tmp_path: Path) -> None:
    from modnas.toolkit.workflow.artifacts import build_model
    from modnas.toolkit.search.readout import neighbours, pareto, select
    from modnas.toolkit.search.run import load_run, read_metrics

    run_dir, devices = tiny_run
    rows = read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1] and np.isfinite(rows[0]["ce_train"])
    meta = json.loads((run_dir / "config.json").read_text())
    assert meta["config"]["space"] == SPACE and meta["hypernet_args"]["choice_counts"][-1] == 25
    space = get_space(SPACE)
    run = load_run(run_dir, SPACE)
    with pytest.raises(BadInput, match="ofa_mbv3 space, not nb201"):
        load_run(run_dir, "nb201")
    front = pareto(run, devices[0], preferences=6)
    assert front and all(space.canonical(r["arch"]) == r["arch"] for r in front)
    assert all(0.0 <= r["predicted"]["error"] <= 100.0 and r["predicted"]["latency_ms"] > 0 for r in front)
    pick = select(run, devices[1], budget_ms=1e6, refine_rounds=0)
    # the supernet's error of the pick, measured again by hand, is what the read-out reported
    assert run.predict_error([pick["arch"]])[0] == pytest.approx(pick["predicted"]["error"])
    # neighbours differ in one decision (a depth change may also reset the slots it drops) and are canonical
    nbrs = neighbours(pick["arch"], space)
    assert nbrs and pick["arch"] not in nbrs and len(set(nbrs)) == len(nbrs)
    base = np.array(space.to_indices(pick["arch"]))
    for n in nbrs:
        assert space.canonical(n) == n
        diff = np.flatnonzero(np.array(space.to_indices(n)) != base).tolist()
        depth = [d for d in diff if 40 <= d < 45]
        if depth:  # the stage's dropped slots (kernel i, expand 20 + i) go back to the first choice
            stage = depth[0] - 40
            assert len(depth) == 1 and all(d % 20 // 4 == stage for d in diff if d < 40)
        else:
            assert len(diff) == 1
    # the exported network carries the supernet's weights: same logits as the supernet on its input
    net = build_model(space, pick["arch"], str(run_dir))
    x = torch.randn(2, *space.input_shape(pick["arch"])[1:])
    run.supernet.eval()
    with torch.no_grad():
        np.testing.assert_allclose(net(x).numpy(), run.supernet(x, pick["arch"]).numpy(), rtol=1e-4, atol=1e-4)
    assert net.head.classifier.out_features == 10  # digits, not ImageNet's 1000


@pytest.mark.slow  # distils a surrogate for 40 epochs: 16 s on a quiet machine, minutes under load
def test_distilled_surrogate_stands_in_for_the_supernet(tiny_run, tmp_path: Path) -> None:
    from modnas.toolkit.search.readout import pareto
    from modnas.toolkit.search.run import load_run
    from modnas.toolkit.search.surrogate import distil_surrogate

    run_dir, devices = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    run = load_run(copy)
    assert run.surrogate is None  # supernet weights present: they are the accuracy source
    stats = distil_surrogate(run, 40, seed=0, epochs=40)
    assert stats["archs"] >= 40 and stats["holdout"]["rows"] >= 8
    assert (copy / "surrogate" / "accuracy_surrogate.json").exists()
    archs = get_space(SPACE).sample(12, seed=5)
    by_supernet = run.predict_error(archs)
    (copy / "supernet.safetensors").unlink()
    shipped_like = load_run(copy)
    assert shipped_like.supernet is None and shipped_like.surrogate is not None
    by_surrogate = shipped_like.predict_error(archs)
    assert np.all(np.isfinite(by_surrogate))
    assert abs(float(np.mean(by_surrogate)) - float(np.mean(by_supernet))) < 15.0
    assert pareto(shipped_like, devices[0], preferences=4)
    with pytest.raises(BadInput, match="no supernet weights"):
        distil_surrogate(shipped_like, 40)


def test_benchmark_mode_needs_an_accuracy_table(data_dir: Path, ofa_table, tmp_path: Path) -> None:
    from modnas.toolkit.search.api import resolve_devices, run_search

    devices, _ = resolve_devices(TRAIN[:1], data_dir, table=ofa_table, space=SPACE)
    with pytest.raises(BadInput, match="`accuracy` supernet") as err:
        run_search(devices, accuracy="benchmark", epochs=1, out=tmp_path / "r", space=SPACE)
    assert "accuracy" in err.value.params  # the command line names it as --accuracy
    assert not (tmp_path / "r" / "config.json").exists()


def _import_refs(capsys: pytest.CaptureFixture[str], ofa_table, key: str, name: str, tmp_path: Path) -> None:
    space = get_space(SPACE)
    pos = {a: i for i, a in enumerate(ofa_table.archs)}
    path = tmp_path / f"{name}.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", "value"])
        for r in space.reference_archs():
            w.writerow([r, repr(float(ofa_table.row(key)[pos[r]]))])
    code, doc, err = _run(capsys, "import", str(path), "--device", name, "--space", SPACE)
    assert code == 0 and doc["imported"] == 10, err


def test_commands_take_space_ofa_mbv3(modnas_home: Path, tiny_run, ofa_table, data_dir: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, _ = tiny_run
    _import_refs(capsys, ofa_table, UNSEEN, "gpu-unseen", tmp_path)
    space = get_space(SPACE)
    # the shipped ofa_mbv3 run, on a device no search saw
    code, front, err = _run(capsys, "pareto", "--device", "gpu-unseen", "--space", SPACE)
    assert code == 0, err
    assert front and all(space.canonical(r["arch"]) == r["arch"] for r in front)
    lat = [r["predicted"]["latency_ms"] for r in front]
    errs = [r["predicted"]["error"] for r in front]
    assert lat == sorted(lat) and all(x > 0 for x in lat) and all(0 <= e <= 100 for e in errs)
    assert all(a >= b - 1e-9 for a, b in zip(errs, errs[1:]))  # non-dominated: slower means more accurate
    # the unseen GPU's predicted latencies are on its own scale: its references were imported in ms
    refs = get_space(SPACE).reference_archs()
    pos = {a: i for i, a in enumerate(ofa_table.archs)}
    ref_ms = ofa_table.row(UNSEEN)[[pos[r] for r in refs]]
    assert ref_ms.min() / 3 < lat[0] < ref_ms.max() * 3
    budget = lat[-1] * 1.5
    code, pick, err = _run(capsys, "select", "--device", "gpu-unseen", "--space", SPACE, "--budget-ms", f"{budget:.6f}")
    assert code == 0, err
    assert pick["predicted"]["latency_ms"] * (1 + pick["margin"]) <= budget
    assert pick["predicted"]["error"] <= min(errs) + 1e-9  # refinement only adds candidates
    code, _, err = _run(capsys, "select", "--device", "gpu-unseen", "--space", SPACE, "--budget-ms", "0.0001")
    assert code == 2 and "fastest" in err
    # a run of one's own: its space comes with it; naming another space is one line, exit 2
    code, own, err = _run(capsys, "pareto", "--device", "gpu-unseen", "--run", str(run_dir), "--preferences", "4")
    assert code == 0 and own, err
    code, _, err = _run(capsys, "pareto", "--device", "gpu-unseen", "--run", str(run_dir), "--space", "nb201")
    assert code == 2 and "ofa_mbv3 space, not nb201" in err and err.count("\n") == 1
    code, exp, err = _run(capsys, "export", own[0]["arch"], "--run", str(run_dir), "--format", "onnx",
                          "--out", str(tmp_path / "exp"))
    assert code == 0, err
    assert Path(exp["onnx"]).stat().st_size > 100_000 and exp["max_abs_diff"]["onnx"] <= 1e-4
    # benchmark mode is refused before anything is written
    code, _, err = _run(capsys, "search", "--space", SPACE, "--accuracy", "benchmark", "--devices", "gpu-unseen",
                        "--out", str(tmp_path / "never"))
    assert code == 2 and "--accuracy supernet" in err and not (tmp_path / "never").exists()


@pytest.mark.slow  # `modnas search` end to end, training the OFA supernet on digits (16-35 s)
def test_search_command_on_the_digits(modnas_home: Path, ofa_table, data_dir: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-run"
    code, doc, err = _run(capsys, "search", "--space", SPACE, "--devices", ",".join(TRAIN), "--data", str(data_dir),
                          "--images", "digits", "--max-images", "300", "--epochs", "1", "--out", str(out))
    assert code == 0, err
    assert doc["devices"] == TRAIN and doc["epochs"] == 1
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["accuracy"] == "supernet" and meta["config"]["space"] == SPACE  # the space's default
    assert (out / "supernet.safetensors").exists() and (out / "fronts.png").exists()
    assert meta["config"]["supernet"]["max_images"] == 300
    code, _, err = _run(capsys, "search", "--space", SPACE, "--devices", TRAIN[0], "--data", str(data_dir),
                        "--max-images", "3", "--out", str(tmp_path / "never"))
    assert code == 2 and "max_images" in err and not (tmp_path / "never").exists()


@pytest.mark.slow  # onboard and validate over SSH end to end (about a minute under load)
def test_board_onboarded_and_validated_in_ofa_mbv3(sshd_board, modnas_home: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    dev = sshd_board.device_yaml(tmp_path, name="ofa-board")
    code, doc, err = _run(capsys, "onboard", str(dev), "--space", SPACE, "--quiet")
    assert code == 0, err
    assert len(doc["references"]) == 10 and doc["calibration"]
    code, front, err = _run(capsys, "pareto", "--device", "ofa-board", "--space", SPACE)
    assert code == 0 and front, err
    from modnas.toolkit.spaces.ofa_mbv3.supernet import largest_arch

    largest = largest_arch(get_space(SPACE))
    archs = tmp_path / "val.txt"
    archs.write_text(f"{front[0]['arch']}\n{largest}\n")
    code, val, err = _run(capsys, "validate", str(dev), "--space", SPACE, "--archs", str(archs),
                          "--out", str(tmp_path / "val"), "--quiet")
    assert code == 0, err
    rows = {r["arch"]: r for r in val["rows"]}
    assert set(rows) == {front[0]["arch"], largest}
    assert all(r["measured"] > 0 and r["predicted"] > 0 for r in val["rows"])
    # predicted and measured agree on which is faster: the front's fastest pick against the largest subnet
    assert rows[front[0]["arch"]]["measured"] < rows[largest]["measured"]
    assert rows[front[0]["arch"]]["predicted"] < rows[largest]["predicted"]
