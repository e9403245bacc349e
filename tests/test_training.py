"""`modnas train` and `modnas export --weights`: resume, bad input, trained weights in every exporter,
accuracy on the held-back images. Tiny settings: the cheapest NB201 cell, a few dozen digits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from modnas.toolkit.cli import main

TINY = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
OTHER = "|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|"
IMAGES = ["--images", "digits", "--max-images", "40"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main([*argv, "--json", "--quiet"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and out.strip() else {}), err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch on 40 digits, then resumed to two (shared by the export tests)."""
    torch.set_num_threads(1)
    from modnas.toolkit.workflow.training import train_arch

    out = tmp_path_factory.mktemp("ckpt")
    train_arch(TINY, space_name="nb201", images="digits", out=out, epochs=2, max_images=40, quiet=True)
    return out / "checkpoint.safetensors"


def test_resume_adds_epochs(tmp_path: Path, capsys: pytest.CaptureFixture[str], modnas_home: Path) -> None:
    out = tmp_path / "run"
    code, first, _ = run_cli(capsys, "train", TINY, *IMAGES, "--epochs", "1", "--out", str(out))
    assert code == 0 and first["epochs"] == 1 and first["checkpoint"] == str(out / "checkpoint.safetensors")
    assert set(first["accuracy"]) == {"train", "heldout"} and 0 <= first["accuracy"]["heldout"] <= 1
    from modnas.toolkit.workflow.training import read_checkpoint

    tensors1, meta1 = read_checkpoint(out / "checkpoint.safetensors")
    assert meta1["epochs"] == 1 and meta1["arch"] == TINY and any(k.startswith("optim.") for k in tensors1)
    code, second, err = run_cli(capsys, "train", TINY, *IMAGES, "--epochs", "2", "--out", str(out))
    assert code == 0 and second["epochs"] == 2, err
    tensors2, meta2 = read_checkpoint(out / "checkpoint.safetensors")
    # the second call trained one more epoch from the saved weights: the history grows by one
    assert [h["epoch"] for h in meta2["history"]] == [1, 2] and meta2["history"][0] == meta1["history"][0]
    changed = [k for k in tensors1 if k.startswith("model.") and tensors1[k].is_floating_point()
               and not torch.equal(tensors1[k], tensors2[k])]
    assert changed
    before = snapshot(out)
    code, third, _ = run_cli(capsys, "train", TINY, *IMAGES, "--epochs", "2", "--out", str(out))
    assert code == 0 and third["epochs"] == 2 and snapshot(out) == before  # nothing left to train


def test_bad_input_exit_2_nothing_written(tmp_path: Path, trained: Path, capsys: pytest.CaptureFixture[str],
                                          modnas_home: Path) -> None:
    ckpt_dir = trained.parent
    before = snapshot(ckpt_dir)
    # another architecture into a folder that holds a checkpoint
    code, _, err = run_cli(capsys, "train", OTHER, *IMAGES, "--epochs", "1", "--out", str(ckpt_dir))
    assert code == 2 and "another --out" in err and len(err.strip().splitlines()) == 1
    # the same architecture on other images
    code, _, err = run_cli(capsys, "train", TINY, "--images", "digits", "--max-images", "30", "--epochs", "3",
                           "--out", str(ckpt_dir))
    assert code == 2 and "digest" in err
    assert snapshot(ckpt_dir) == before
    # a checkpoint of another architecture given to export
    out = tmp_path / "exp"
    code, _, err = run_cli(capsys, "export", OTHER, "--weights", str(trained), "--out", str(out))
    assert code == 2 and "another architecture" in err and not out.exists()
    # a truncated checkpoint: for export and for resuming
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "checkpoint.safetensors").write_bytes(trained.read_bytes()[: trained.stat().st_size // 2])
    code, _, err = run_cli(capsys, "export", TINY, "--weights", str(cut / "checkpoint.safetensors"), "--out", str(out))
    assert code == 2 and "checkpoint" in err and not out.exists()
    cut_before = snapshot(cut)
    code, _, err = run_cli(capsys, "train", TINY, *IMAGES, "--epochs", "3", "--out", str(cut))
    assert code == 2 and snapshot(cut) == cut_before
    # images of the wrong shape, a truncated .npz, an empty directory
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((6, 5, 8, 8), np.float32), y=np.arange(6) % 2)
    short = tmp_path / "short.npz"
    np.savez(short, x=np.zeros((6, 8, 8), np.float32), y=np.arange(6) % 2)
    short.write_bytes(short.read_bytes()[:100])
    empty = tmp_path / "empty"
    empty.mkdir()
    for source, needle in ((bad, "channels"), (short, "npz"), (empty, "sub-folder")):
        target = tmp_path / f"out-{source.name}"
        code, _, err = run_cli(capsys, "train", TINY, "--images", str(source), "--out", str(target))
        assert code == 2 and needle in err and not target.exists(), err


@pytest.fixture(scope="module")
def exported(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    from modnas.toolkit.workflow.exporting import export_arch

    out = tmp_path_factory.mktemp("export")
    doc = export_arch(TINY, space_name="nb201", formats=["onnx", "tvm"], out=out, weights=str(trained),
                      target_preset="x86").to_json()
    return doc, out


def test_trained_weights_reach_every_exporter(trained: Path, exported: tuple[dict, Path]) -> None:
    import onnxruntime as ort
    import tvm
    from tvm import relax

    from modnas.toolkit.workflow.artifacts import build_model
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.workflow.training import model_from_checkpoint

    doc, _ = exported
    model, _ = model_from_checkpoint(trained, "nb201", TINY)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model(x).numpy()
        untrained = build_model(get_space("nb201"), TINY).eval()(x).numpy()
    assert np.max(np.abs(want - untrained)) > 1e-3  # the trained network is not the seeded initial one
    session = ort.InferenceSession(doc["onnx"], providers=["CPUExecutionProvider"])
    got_onnx = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    vm = relax.VirtualMachine(tvm.runtime.load_module(doc["tvm"]), tvm.cpu())
    got_tvm = vm["main"](tvm.runtime.tensor(x.numpy(), tvm.cpu())).numpy()
    assert np.allclose(got_onnx, want, atol=1e-4) and np.allclose(got_tvm, want, atol=1e-4)


def test_accuracy_of_every_file_beside_it(trained: Path, exported: tuple[dict, Path]) -> None:
    from modnas.toolkit.workflow.accuracy import accuracy_path
    from modnas.toolkit.workflow.training import heldout_images, model_from_checkpoint, top1_accuracy

    doc, _ = exported
    acc = doc["accuracy"]
    assert set(acc) == {"pytorch", "onnx", "tvm"}
    model, meta = model_from_checkpoint(trained)
    data, _, held = heldout_images(meta)
    assert acc["pytorch"] == pytest.approx(top1_accuracy(model, data.x[held], data.y[held]))
    assert abs(acc["onnx"] - acc["pytorch"]) <= 0.005 and abs(acc["tvm"] - acc["pytorch"]) <= 0.005
    for key in ("onnx", "tvm"):
        record = json.loads(accuracy_path(doc[key]).read_text())
        assert record["accuracy"] == acc[key] and record["heldout_images"] == len(held) == meta["heldout_images"]
        assert record["data_digest"] == meta["data_digest"]
    sidecar = json.loads(Path(doc["onnx"] + ".json").read_text())
    assert sidecar["weights"].startswith("checkpoint-")


def test_heldout_split_is_fixed_and_disjoint() -> None:
    from modnas.toolkit.data.datasets import split_heldout

    a_train, a_held = split_heldout(100, seed=5, fraction=0.2)
    b_train, b_held = split_heldout(100, seed=5, fraction=0.2)
    assert torch.equal(a_held, b_held) and len(a_held) == 20
    assert not set(a_train.tolist()) & set(a_held.tolist()) and len(a_train) + len(a_held) == 100
    assert not torch.equal(split_heldout(100, seed=6)[1], a_held)


def test_augmentation_crops_and_flips() -> None:
    from modnas.toolkit.workflow.training import augment

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    same = augment(x, 0, False, torch.Generator().manual_seed(0))
    assert torch.equal(same, x)
    out = augment(x, 2, True, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and not torch.equal(out, x)
    flipped = augment(x, 0, True, torch.Generator().manual_seed(2))
    for i in range(2):  # each image is itself or its mirror
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))


def test_cosine_schedule_is_the_cosine_and_resumes_at_the_same_lr() -> None:
    import math

    from modnas.toolkit.workflow.training import cosine_schedule

    def sgd() -> torch.optim.SGD:
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)

    opt = sgd()
    sched = cosine_schedule(opt, 10, 0)
    lrs, states = [], []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        states.append(json.loads(json.dumps(sched.state_dict())))  # as the checkpoint's JSON header keeps it
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.05 * (1 + math.cos(math.pi * s / 10)) for s in range(10)], rel=1e-12, abs=1e-15)
    for start in (1, 4, 9):
        for saved in (states[start], None):  # the saved state, or a checkpoint written before it was kept
            opt = sgd()
            resumed = cosine_schedule(opt, 10, start, saved)
            got = []
            for _ in range(start, 10):
                got.append(opt.param_groups[0]["lr"])
                opt.step()
                resumed.step()
            assert got == lrs[start:]  # exactly the uninterrupted values
    opt = sgd()
    cosine_schedule(opt, 20, 4, states[4])  # resumed to more epochs: the cosine over the new total
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * (1 + math.cos(math.pi * 4 / 20)))


def test_an_interrupted_training_resumes_as_if_never_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modnas.toolkit.workflow import training

    kw = dict(space_name="nb201", images="digits", epochs=2, max_images=40, quiet=True, threads=1)
    training.train_arch(TINY, out=tmp_path / "straight", **kw)
    real_write = training.write_checkpoint

    def write_then_stop(path: Path, model: torch.nn.Module, momentum: dict, meta: dict) -> None:
        real_write(path, model, momentum, meta)
        if meta["epochs"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "write_checkpoint", write_then_stop)
    for name in ("stopped", "stopped-old"):
        with pytest.raises(KeyboardInterrupt):
            training.train_arch(TINY, out=tmp_path / name, **kw)
    monkeypatch.setattr(training, "write_checkpoint", real_write)
    ckpt = tmp_path / "stopped" / "checkpoint.safetensors"
    _, meta = training.read_checkpoint(ckpt)
    assert meta["epochs"] == 1 and meta["scheduler"]["last_epoch"] > 0 and meta["scheduler"]["T_max"] > 0
    old = tmp_path / "stopped-old" / "checkpoint.safetensors"  # as written before the scheduler state was kept
    tensors, old_meta = training.read_checkpoint(old)
    del old_meta["scheduler"]
    model, _ = training.model_from_checkpoint(old)
    training.write_checkpoint(old, model, {k[6:]: v for k, v in tensors.items() if k.startswith("optim.")}, old_meta)
    assert "scheduler" not in training.read_checkpoint(old)[1]
    straight, _ = training.read_checkpoint(tmp_path / "straight" / "checkpoint.safetensors")
    for name in ("stopped", "stopped-old"):
        training.train_arch(TINY, out=tmp_path / name, **kw)
        resumed, meta = training.read_checkpoint(tmp_path / name / "checkpoint.safetensors")
        assert meta["epochs"] == 2 and set(resumed) == set(straight)
        assert all(torch.equal(resumed[k], straight[k]) for k in straight), name
