"""The gpt space's search run: the shipped run's read-out on a setting it never trained on (loss, not error),
``build_gpt_run`` end to end on a tiny supernet (inherited losses, loss surrogate, fp16 supernet, the carried
held-out text), ``select --verify`` on a gpt replay board, the CLI's loss/prefill shapes, and the quickstart's
language-model report. Nothing here reads the shipped run's numbers, so a rebuilt run passes as well."""
from __future__ import annotations

import functools
import json
import math
import random
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from modnas.toolkit.cli import main
from modnas.toolkit.errors import BadInput
from modnas.toolkit.pareto import nondominated_mask
from modnas.toolkit.search import api
from modnas.toolkit.search.run import load_run
from modnas.toolkit.spaces import get_space
from modnas.toolkit.threads import torch_threads

SPACE = get_space("gpt")
TRAIN_PAIR = ("modnas:cpu-th1-fp32", "modnas:cpu-th2-int8")  # two settings of the gpt tables

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, Any, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() and out.lstrip()[0] in "[{" else out), err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def shipped():
    return load_run(None, "gpt")


@pytest.fixture(scope="module")
def held_out(shipped) -> str:
    """A setting of the gpt tables the shipped run left out of its search (the long-context one when it is)."""
    held = shipped.meta["held_out"]["devices"]
    assert held and not set(held) & set(shipped.config.devices)
    return "modnas:cpu-th1-fp32-long" if "modnas:cpu-th1-fp32-long" in held else held[0]


@pytest.fixture(scope="module")
def held_cost(held_out: str):
    return api.resolve_device(held_out, space="gpt")  # the gpt tables ship with the package: no data_dir


# -- 1. the shipped run's read-out on a held-out setting -------------------------------------------------------
def test_readout_moves_with_preference_on_a_held_out_setting(shipped, held_cost) -> None:
    from modnas.toolkit.search.readout import candidates, pareto

    assert shipped.config.space == "gpt" and shipped.config.accuracy == "surrogate"
    assert shipped.surrogate.predicts == "error"  # it predicts the loss itself
    emb = held_cost.embedding
    loss_heavy, latency_heavy = shipped.archs(np.array([[0.95, 0.05], [0.05, 0.95]]), emb)
    loss = shipped.predict_error([loss_heavy, latency_heavy])
    lat = held_cost.predict([loss_heavy, latency_heavy])
    assert loss[0] < loss[1] and lat[0] > lat[1], (loss_heavy, latency_heavy, loss, lat)
    archs, _ = candidates(shipped, emb, 24)
    assert len(archs) >= 2 and all(SPACE.canonical(a) == a for a in archs)

    rows = pareto(shipped, held_cost)
    assert len(rows) >= 2
    assert all(set(r["predicted"]) == {"loss", "latency_ms"} for r in rows)  # the quality is a loss, no "error"
    lat = [r["predicted"]["latency_ms"] for r in rows]
    assert lat == sorted(lat)
    points = np.array([[r["predicted"]["loss"], r["predicted"]["latency_ms"]] for r in rows])
    assert nondominated_mask(points).all()
    front = [r["arch"] for r in rows]
    assert np.allclose(points[:, 0], shipped.predict_error(front)) and np.allclose(points[:, 1], held_cost.predict(front))


def test_predictor_only_readout_on_a_space_too_large_to_list(shipped, held_cost) -> None:
    from modnas.toolkit.search.readout import pareto

    rows = pareto(shipped, held_cost, 8, predictor_only=True)  # a pool of samples, not every architecture
    assert 1 <= len(rows) <= 8 and all(set(r["predicted"]) == {"loss", "latency_ms"} for r in rows)
    assert nondominated_mask(np.array([[r["predicted"]["loss"], r["predicted"]["latency_ms"]] for r in rows])).all()


def test_search_defaults_to_the_shipped_loss_surrogate_and_tables(monkeypatch) -> None:
    from modnas.toolkit.search.plan import plan_search
    from modnas.toolkit.search.surrogate import SURROGATE_FILES

    monkeypatch.delenv("MODNAS_DATA", raising=False)
    cfg = plan_search(space="gpt").config
    assert cfg.accuracy == "surrogate" and cfg.data_dir is None
    assert sorted(cfg.devices) == sorted(SPACE.load_table(None, "latency").keys)
    info = json.loads((Path(cfg.benchmark.surrogate_dir) / SURROGATE_FILES[1]).read_text())
    assert Path(cfg.benchmark.surrogate_dir) == SPACE.shipped_run() / "surrogate"
    assert info["predicts"] == "error" and info["in_dim"] == SPACE.onehot_dim
    assert cfg.benchmark.accuracy_column == SPACE.quality == "loss"


# -- 2. build_gpt_run on a tiny supernet ------------------------------------------------------------------------
def words_text(n_lines: int = 150, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ["the", "king", "queen", "and", "of", "to", "my", "lord", "thou", "art", "good", "night"]
    return "\n".join(" ".join(rng.choice(words) for _ in range(8)) for _ in range(n_lines)) + "\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A supernet trained 10 steps on a small text (context 16), and a 20-evaluation, 1-epoch gpt run over two
    settings of the gpt tables built from it."""
    from modnas.toolkit.search.lm_run import SupernetLosses, build_gpt_run
    from modnas.toolkit.spaces.gpt.supernet import train_supernet
    from modnas.toolkit.spaces.gpt.train import LMRecipe

    root = tmp_path_factory.mktemp("gpt-run")
    text = root / "corpus.txt"
    text.write_text(words_text(), encoding="utf-8")
    with torch_threads(1):
        _, trained = train_supernet(text, context=16, batch=4, steps=10, out=root / "sup", random_subnets=1,
                                    quiet=True, save_every=1000, recipe=LMRecipe(warmup=0, lr=3e-3))
        devices, _ = api.resolve_devices(list(TRAIN_PAIR), None, space="gpt")
        out = root / "run"
        doc = build_gpt_run(trained["checkpoint"], out, evaluations=20, epochs=1, devices=devices, steps_per_epoch=3)
    return {"root": root, "text": text, "trained": trained, "out": out, "doc": doc, "devices": devices,
            "losses": SupernetLosses(trained["checkpoint"])}


def test_build_gpt_run_end_to_end(built: dict[str, Any]) -> None:
    from modnas.toolkit.search.lm_run import LOSSES_FILE, SupernetLosses, read_losses
    from modnas.toolkit.search.surrogate import load_surrogate
    from modnas.toolkit.spaces.gpt.arch import LARGEST, SMALLEST, format_arch

    out, doc = built["out"], built["doc"]
    run_obj = load_run(out, "gpt")
    assert run_obj.config.accuracy == "surrogate" and run_obj.config.devices == list(TRAIN_PAIR)
    assert run_obj.config.benchmark.surrogate_dir is None  # the run carries its surrogate
    assert doc["loss_surrogate"]["evaluations"] == 20 and doc["devices"] == list(TRAIN_PAIR)
    # the evaluated losses: 20 distinct canonical architectures, the largest and the smallest among them,
    # each the supernet's inherited held-out loss
    assert len((out / LOSSES_FILE).read_text().splitlines()) == 1 + 20  # a header, then one row per evaluation
    saved = read_losses(out / LOSSES_FILE)
    archs = list(saved)
    assert len(archs) == 20 and all(SPACE.canonical(a) == a for a in archs)
    assert {format_arch(LARGEST), format_arch(SMALLEST)} <= set(archs)
    losses = SupernetLosses(built["trained"]["checkpoint"])
    inherited = losses.loss(archs)
    assert np.allclose([saved[a] for a in archs], inherited, atol=1e-5)
    assert losses.evaluations == 20 and np.all(np.isfinite(inherited))
    assert np.array_equal(losses.loss(archs[:3]), inherited[:3]) and losses.evaluations == 20  # seen: not again
    # the largest subnet's loss is what training reported for it (the same held-out windows)
    assert saved[format_arch(LARGEST)] == pytest.approx(built["trained"]["loss"]["heldout"], abs=1e-4)
    # the run's loss term is its surrogate's, fitted to those losses
    surrogate = load_surrogate(out / "surrogate")
    assert surrogate.predicts == "error"
    predicted = run_obj.predict_error(archs)
    with torch.no_grad():
        direct = surrogate.error(torch.as_tensor(SPACE.encode(archs))).numpy()
    assert np.allclose(predicted, direct)
    assert spearmanr(predicted, inherited).statistic > 0.8
    fresh = SPACE.sample(5, seed=99)
    assert np.all(np.isfinite(run_obj.predict_error(fresh)))  # any architecture of the space, not only the 20


def test_the_run_ships_the_supernet_in_fp16(built: dict[str, Any]) -> None:
    from safetensors import safe_open

    from modnas.toolkit.search.lm_run import read_losses
    from modnas.toolkit.spaces.gpt.supernet import inherited_loss, load_supernet_checkpoint
    from modnas.toolkit.spaces.gpt.train import CHECKPOINT_NAME

    path = built["out"] / CHECKPOINT_NAME
    with safe_open(str(path), framework="pt") as fh:
        assert {fh.get_slice(k).get_dtype() for k in fh.keys()} == {"F16"} and not any(
            k.startswith("optim.") for k in fh.keys())
    shipped, vocab, meta = load_supernet_checkpoint(path)
    losses = built["losses"]
    assert vocab == losses.vocab and meta["context"] == losses.context
    original = losses.supernet.state_dict()
    for name, tensor in shipped.state_dict().items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, original[name].half().float()), name
    saved = read_losses(built["out"] / "inherited_losses.csv")
    for arch in list(saved)[:4]:
        value = inherited_loss(shipped, arch, losses.held, losses.context, losses.windows)
        assert abs(value - saved[arch]) <= 1e-2, arch


def test_export_from_the_run_takes_its_loss_on_the_carried_heldout_text(built: dict[str, Any], capsys, monkeypatch,
                                                                        tmp_path: Path) -> None:
    from modnas.toolkit.spaces.gpt.arch import SMALLEST, format_arch
    from modnas.toolkit.spaces.gpt.supernet import inherited_loss, load_supernet_checkpoint
    from modnas.toolkit.spaces.gpt.text import HELDOUT_TEXT
    from modnas.toolkit.workflow.lm import carried_heldout

    monkeypatch.delenv("MODNAS_DATA", raising=False)
    out, losses = built["out"], built["losses"]
    assert torch.equal(carried_heldout(out / HELDOUT_TEXT, losses.vocab), losses.held)
    arch = format_arch(SMALLEST)
    shipped, _, _ = load_supernet_checkpoint(out / "checkpoint.safetensors")
    want = inherited_loss(shipped, arch, losses.held, losses.context)  # every window, the fp16 weights
    text, original = built["text"], built["text"].read_text(encoding="utf-8")
    docs = []
    try:
        for case in ("gone", "changed"):  # the text the supernet was trained on is not there, then another one
            if case == "gone":
                text.unlink()
            else:
                text.write_text(words_text(seed=7), encoding="utf-8")
            code, doc, err = run(capsys, "export", arch, "--space", "gpt", "--run", str(out), "--format", "onnx",
                                 "--quantize", "int8", "--out", str(tmp_path / case), "--json")
            assert code == 0, err
            docs.append(doc)
    finally:
        text.write_text(original, encoding="utf-8")
    for doc in docs:
        loss = doc["loss"]
        assert set(loss) == {"pytorch", "onnx", "onnx_int8"} and all(math.isfinite(v) for v in loss.values())
        assert loss["pytorch"] == pytest.approx(want, abs=1e-4)
        assert abs(loss["onnx"] - loss["pytorch"]) <= 1e-3 and abs(loss["onnx_int8"] - loss["onnx"]) <= 0.05
        assert Path(doc["onnx_int8"]).is_file() and Path(doc["onnx_prefill_int8"]).is_file()
    assert docs[0]["loss"] == docs[1]["loss"]


def test_heldout_windows_without_text_or_copy_give_no_loss(built: dict[str, Any], tmp_path: Path) -> None:
    from modnas.toolkit.workflow.lm import heldout_windows

    losses = built["losses"]
    meta = {**losses.meta, "text": str(tmp_path / "nowhere.txt"), "carried": str(tmp_path / "nowhere.txt.gz")}
    assert heldout_windows(meta, losses.vocab) is None


def test_build_gpt_run_bad_input(built: dict[str, Any], tmp_path: Path) -> None:
    from modnas.toolkit.search.lm_run import build_gpt_run

    with pytest.raises(BadInput) as err:
        build_gpt_run(built["trained"]["checkpoint"], tmp_path / "few", evaluations=19, losses=built["losses"])
    assert "evaluations" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "few").exists()
    with pytest.raises(BadInput) as err:
        api.run_search(built["devices"], accuracy="surrogate", space="gpt", epochs=1, out=tmp_path / "nosurrogate")
    assert "surrogate_dir" in str(err.value) and "\n" not in str(err.value)


# -- 3. select --verify on a gpt replay board -----------------------------------------------------------------
def test_verified_select_on_a_gpt_replay_board(shipped, held_out: str, tmp_path: Path, capsys, monkeypatch) -> None:
    """A replay board of a held-out setting: its table's references onboard it; the read-out's candidates (not
    among the table's networks) are given latencies of their own, the device model's times a fixed per-network
    factor, so the board is not the model. The verified pick is measured (replayed) within the budget."""
    from modnas.toolkit.data.replay_tables import device_name_for, table_values, write_device
    from modnas.toolkit.store import Store
    from modnas.toolkit.workflow.verify import candidate_pool

    monkeypatch.setenv("MODNAS_HOME", str(tmp_path / "home"))
    name = device_name_for(held_out)
    latency = table_values(None, held_out, "latency", "gpt")
    prefill = table_values(None, held_out, "prefill", "gpt")
    quick = {"min_runs": 5, "repeats": 2}
    dev = write_device(tmp_path / "boards", name, latency, noise=0.0, prefill=prefill, measurement=quick)
    code, _, err = run(capsys, "onboard", str(dev), "--space", "gpt", "--quiet")
    assert code == 0, err
    with Store(tmp_path / "home" / "modnas.db") as store:
        assert set(store.values(name, "gpt", "latency")) == set(SPACE.reference_archs())
        cost = api.resolve_device(name, "gpt", store=store)
    archs, _ = candidate_pool(shipped, cost)
    assert len(archs) >= 2

    def factor(arch: str) -> float:
        return 0.85 + 0.4 * (zlib.crc32(arch.encode()) % 1000) / 1000

    board = dict(latency)
    board.update({a: float(p) * factor(a) for a, p in zip(archs, cost.predict(archs)) if a not in latency})
    dev = write_device(tmp_path / "boards", name, board, noise=0.0, prefill=prefill, measurement=quick)

    def check(doc: dict[str, Any], budget: float) -> None:
        assert doc["verified"] is True and doc["replayed"] is True and doc["budget_ms"] == pytest.approx(budget)
        for c in doc["candidates"]:
            assert set(c["predicted"]) == {"loss", "latency_ms"}
            if c["measured"] is not None:
                assert c["measured"]["latency_ms"] == pytest.approx(board[c["arch"]], rel=1e-6)
                assert c["meets"] == (c["measured"]["latency_ms"] * (1 + c["verify_margin"]) <= budget)
        if doc["arch"] is not None:
            assert set(doc["predicted"]) == {"loss", "latency_ms"}
            assert doc["measured"]["latency_ms"] == pytest.approx(board[doc["arch"]], rel=1e-6)
            assert doc["measured"]["latency_ms"] * (1 + doc["verify_margin"]) <= budget
            assert doc["candidates"][-1]["arch"] == doc["arch"] and not any(c["meets"] for c in doc["candidates"][:-1])

    budget = round(float(np.median([board[a] for a in archs])), 6)
    code, doc, err = run(capsys, "select", "--space", "gpt", "--device", str(dev), "--budget-ms", f"{budget:.6f}",
                         "--verify", "--json", "--quiet")
    assert code == 0, err
    assert doc["arch"] is not None, doc.get("reason")
    check(doc, budget)
    # just under what that pick needs: it no longer qualifies, and whatever comes back was measured to fit
    tight = round(doc["measured"]["latency_ms"] * (1 + doc["verify_margin"]) * 0.999, 8)
    code, again, err = run(capsys, "select", "--space", "gpt", "--device", name, "--budget-ms", f"{tight:.8f}",
                           "--verify", "--json", "--quiet")
    assert code == 0, err
    assert again["arch"] != doc["arch"] and (again["arch"] is not None or again["reason"])
    check(again, tight)
    code, text, err = run(capsys, "select", "--space", "gpt", "--device", name, "--budget-ms", f"{budget:.6f}",
                          "--verify", "--quiet")
    assert code == 0 and "nats loss" in text and "% error" not in text, err


# -- 4. the CLI's shapes for a language model -----------------------------------------------------------------
def test_pareto_and_select_on_prefill(capsys) -> None:
    device = TRAIN_PAIR[0]
    code, rows, err = run(capsys, "pareto", "--space", "gpt", "--device", device, "--metric", "prefill", "--json")
    assert code == 0, err
    assert len(rows) >= 2 and all(set(r["predicted"]) == {"loss", "prefill_ms"} for r in rows)
    pre = [r["predicted"]["prefill_ms"] for r in rows]
    assert pre == sorted(pre)
    assert nondominated_mask(np.array([[r["predicted"]["loss"], r["predicted"]["prefill_ms"]] for r in rows])).all()
    prefill_cost = api.resolve_device(device, "gpt", "prefill")
    assert np.allclose(pre, prefill_cost.predict([r["arch"] for r in rows]))  # the prefill model, not decode's
    budget = float(np.median(pre))
    code, pick, err = run(capsys, "select", "--space", "gpt", "--device", device, "--budget-ms", f"{budget:.6f}",
                          "--metric", "prefill", "--json")
    assert code == 0, err
    assert set(pick["predicted"]) == {"loss", "prefill_ms"}
    assert pick["predicted"]["prefill_ms"] * (1 + pick["margin"]) <= budget
    code, text, err = run(capsys, "pareto", "--space", "gpt", "--device", device, "--metric", "prefill")
    assert code == 0 and "loss nats" in text.splitlines()[0] and "prefill ms" in text.splitlines()[0], err


def test_loss_and_prefill_bad_input_is_one_line(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MODNAS_HOME", str(tmp_path / "home"))
    code, out, err = run(capsys, "pareto", "--space", "nb201", "--device", "somewhere", "--metric", "prefill")
    assert code == 2 and not out and "prefill" in one_line(err)
    code, out, err = run(capsys, "select", "--space", "gpt", "--device", TRAIN_PAIR[0], "--budget-ms", "5",
                         "--metric", "prefill", "--verify")
    assert code == 2 and not out and "--metric" in one_line(err)
    code, out, err = run(capsys, "predict", "--space", "gpt", "--metric", "latency", "--archs", "refs")
    assert code == 2 and not out and "--device" in one_line(err)
    code, out, err = run(capsys, "predict", "--space", "nb201", "--metric", "loss", "--archs", "refs")
    assert code == 2 and not out and "loss" in one_line(err)


def test_predict_loss_needs_no_device(shipped, capsys) -> None:
    code, rows, err = run(capsys, "predict", "--space", "gpt", "--metric", "loss", "--archs", "refs", "--json")
    assert code == 0, err
    refs = [SPACE.canonical(a) for a in SPACE.reference_archs()]
    assert [r["arch"] for r in rows] == refs
    assert [r["value"] for r in rows] == [float(v) for v in shipped.predict_error(refs)]


# -- 5. the quickstart's language-model report --------------------------------------------------------------
@pytest.mark.slow  # this machine onboarded on the gpt references, validated, verified, exported and sampled
def test_quickstart_gpt_report(modnas_home: Path, tmp_path: Path, monkeypatch) -> None:
    from modnas.toolkit.store import Store
    from modnas.toolkit.workflow import new_board

    monkeypatch.delenv("MODNAS_DATA", raising=False)  # the exports' losses come from the run's carried text
    monkeypatch.setattr(new_board, "LM_QUICK_TIMING",
                        {"warmup_s": 0.0, "min_runs": 3, "min_time_s": 0.0, "repeats": 2, "cooldown_s": 0.0})
    monkeypatch.setattr(new_board, "QUICKSTART_EXTRA_LM", 0)
    monkeypatch.setattr(new_board, "READOUT_PREFERENCES", 2)
    monkeypatch.setattr(new_board, "VALIDATE_ROUNDS", 2)
    monkeypatch.setattr(new_board, "validate", functools.partial(new_board.validate, rounds=2))
    with Store(modnas_home / "modnas.db") as store:
        res = new_board.quickstart(store, tmp_path / "qs", space_name="gpt", quiet=True)
    doc = res.to_json()
    json.dumps(doc, allow_nan=False)
    assert res.validation.rounds == 2
    assert all(set(r.predicted) == {"loss", "latency_ms"} for r in res.front.rows)
    picked = [p for p in res.picks if p.arch is not None]
    assert picked, [p.reason for p in res.picks]
    exported = {e.arch: e for e in res.exported}
    assert list(exported) == list(dict.fromkeys(p.arch for p in picked))
    for p in picked:
        assert "loss" in p.predicted and "error" not in p.predicted
        assert p.measured.latency_ms * (1 + p.verify_margin) <= p.budget_ms
        assert p.loss is not None and {"pytorch", "onnx", "onnx_int8"} <= set(p.loss)
        assert all(math.isfinite(v) for v in p.loss.values())
        assert abs(p.loss["onnx"] - p.loss["pytorch"]) <= 1e-3 and abs(p.loss["onnx_int8"] - p.loss["onnx"]) <= 0.05
        assert p.loss == exported[p.arch].export.loss
        assert len(p.sample["text"]) == new_board.QUICKSTART_SAMPLE_CHARS and p.sample["tokens_per_s"] > 0
        files = exported[p.arch].export.files
        assert {"onnx", "onnx_prefill", "onnx_int8", "onnx_prefill_int8"} <= set(files)
        assert all(Path(f).is_file() and Path(f).parent == (tmp_path / "qs" / "exports").resolve()
                   for f in files.values())
    report = Path(res.validation.report).read_text()
    assert "## The picks' files and text" in report
    for p in picked:
        assert p.sample["text"] in report and f"`{p.arch}`" in report
        assert f"onnx_int8 {p.loss['onnx_int8']:.4f}" in report
    saved = json.loads((Path(res.validation.report).parent / "picks.json").read_text())
    assert [s["sample"]["text"] for s in saved if s["arch"]] == [p.sample["text"] for p in picked]


def test_a_search_on_the_shipped_surrogate_carries_its_supernet(tmp_path: Path) -> None:
    """``search --space gpt`` reuses the shipped loss surrogate; the new run gets the supernet it was fitted to."""
    from modnas.toolkit.workflow.lm import supernet_checkpoint

    shipped = SPACE.shipped_run()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    with pytest.raises(BadInput, match="without a supernet checkpoint"):
        supernet_checkpoint(run_dir)
    assert api.carry_run_files(shipped, run_dir, SPACE.run_carries) == list(SPACE.run_carries)
    assert supernet_checkpoint(run_dir) == run_dir / "checkpoint.safetensors"
    assert (run_dir / "heldout.txt.gz").read_bytes() == (shipped / "heldout.txt.gz").read_bytes()
    assert api.carry_run_files(shipped, shipped, SPACE.run_carries) == []  # never onto itself
    assert api.carry_run_files(shipped, run_dir, get_space("nb201").run_carries) == []


def test_search_space_gpt_wires_the_shipped_surrogate_and_carries_its_supernet(tmp_path: Path, monkeypatch) -> None:
    """``api.search`` of ``plan_search(space="gpt")``: the run is searched on the shipped loss surrogate and gets
    the supernet it was fitted to (the training itself stubbed: it is tested elsewhere)."""
    from modnas.toolkit.search.plan import plan_search

    seen: dict[str, Any] = {}

    def fake_run_search(devices, objectives, accuracy, data_dir, epochs, out, seed, **kw):
        seen.update(accuracy=accuracy, surrogate_dir=kw["benchmark"]["surrogate_dir"], devices=[d.name for d in devices])
        Path(out).mkdir(parents=True)
        return {"run": str(out), "devices": seen["devices"], "objectives": list(objectives), "task": None,
                "epochs": epochs, "seconds": 0.0, "rank": 0, "world_size": 1}

    monkeypatch.setattr(api, "run_search", fake_run_search)
    plan = plan_search(space="gpt", devices=["modnas:cpu-th1-fp32"], epochs=1)
    out = tmp_path / "run"
    api.search(plan.config, out)
    assert seen["accuracy"] == "surrogate" and Path(seen["surrogate_dir"]) == SPACE.shipped_run() / "surrogate"
    assert seen["devices"] == ["modnas:cpu-th1-fp32"]
    assert sorted(p.name for p in out.iterdir()) == sorted(SPACE.run_carries)
    with pytest.raises(BadInput, match="surrogate is for spaces"):
        plan_search(space="nb201", accuracy="surrogate", devices=["x"])



def test_validating_reference_architectures_keeps_them_in_the_fit(held_out: str, tmp_path: Path, capsys,
                                                                  monkeypatch) -> None:
    """A validated set that holds references (a read-out front may start at the smallest network): they stay
    in the device model (its embedding), are marked ``in_fit`` and left out of the figures."""
    from modnas.toolkit.data.replay_tables import device_name_for, table_values, write_device

    monkeypatch.setenv("MODNAS_HOME", str(tmp_path / "home"))
    name = device_name_for(held_out)
    latency = table_values(None, held_out, "latency", "gpt")
    dev = write_device(tmp_path / "boards", name, latency, noise=0.0, prefill=table_values(None, held_out, "prefill",
                                                                                            "gpt"),
                       measurement={"min_runs": 5, "repeats": 2})
    code, _, err = run(capsys, "onboard", str(dev), "--space", "gpt", "--quiet")
    assert code == 0, err
    refs = [SPACE.canonical(a) for a in SPACE.reference_archs()]
    others = [a for a in latency if a not in refs][:3]
    archs = tmp_path / "archs.txt"
    archs.write_text("\n".join(refs[:2] + others) + "\n")
    code, doc, err = run(capsys, "validate", str(dev), "--space", "gpt", "--archs", str(archs), "--rounds", "1",
                         "--out", str(tmp_path / "val"), "--json", "--quiet")
    assert code == 0, err
    marked = {r["arch"] for r in doc["rows"] if r.get("in_fit")}
    assert marked == set(refs[:2]) and doc["n"] == len(others)
    rows = {r["arch"]: r for r in doc["rows"]}
    apes = [abs(rows[a]["predicted"] - rows[a]["measured"]) / rows[a]["measured"] * 100 for a in others]
    assert doc["mape"] == pytest.approx(float(np.mean(apes)), rel=1e-6)
    assert "2 of them reference architectures" in (tmp_path / "val" / "report.md").read_text()
