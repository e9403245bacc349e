"""The language-model commands through the real CLI: ``train``, ``export`` and ``sample`` with ``--space gpt``
(a tiny network, a few steps on a slice of Tiny Shakespeare), and their bad input: one line, exit 2, nothing written."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from modnas.toolkit.cli import main

ARCH = "e=128;l=2;h=2-2;m=2-2"
OTHER = "e=128;l=3;h=2-2-2;m=2-2-2"


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """The first 20,000 characters of Tiny Shakespeare (or a generated text without the shared data)."""
    source = data_dir / "text" / "tinyshakespeare" / "input.txt"
    text = source.read_text(encoding="utf-8")[:20_000] if source.is_file() else (
        "First Citizen:\nBefore we proceed any further, hear me speak.\n\n" * 300)
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, text_file: Path) -> dict:
    """``train`` 10 steps, then resumed to 20 (stdout read by hand: module fixtures have no capsys)."""
    out = tmp_path_factory.mktemp("lm") / "ckpt"
    import contextlib
    import io

    docs = []
    for steps in ("10", "20"):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = main(["train", ARCH, "--space", "gpt", "--text", str(text_file), "--context", "32", "--batch",
                         "8", "--steps", steps, "--out", str(out), "--json", "--quiet"])
        assert code == 0
        docs.append(json.loads(buf.getvalue()))
    first, doc = docs
    assert first["steps"] == 10 and doc["steps"] == 20
    return doc


def test_train_json_and_resume(trained: dict) -> None:
    assert list(trained) == ["arch", "checkpoint", "steps", "seconds", "loss"]
    assert trained["arch"] == ARCH and Path(trained["checkpoint"]).is_file()
    assert set(trained["loss"]) == {"train", "heldout"} and all(math.isfinite(v) for v in trained["loss"].values())
    meta = json.loads(Path(trained["checkpoint"]).with_suffix(".json").read_text())
    assert meta["steps"] == 20 and [h["step"] for h in meta["history"]] == [10, 20]  # the second call resumed


def test_export_onnx_int8_with_losses(capsys, trained: dict, tmp_path: Path) -> None:
    out = tmp_path / "export"
    code, stdout, err = run(capsys, "export", ARCH, "--space", "gpt", "--weights", trained["checkpoint"],
                            "--format", "onnx", "--quantize", "int8", "--out", str(out), "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    for key in ("onnx", "onnx_prefill", "onnx_int8", "onnx_prefill_int8"):
        assert Path(doc[key]).is_file() and Path(doc[key]).parent == out
        assert key in doc["max_abs_diff"]
    assert "decode" in Path(doc["onnx"]).name and "prefill" in Path(doc["onnx_prefill"]).name
    loss = doc["loss"]
    assert set(loss) == {"pytorch", "onnx", "onnx_int8"}
    assert loss["pytorch"] == pytest.approx(trained["loss"]["heldout"], abs=1e-4)  # the same held-out windows
    assert abs(loss["onnx"] - loss["pytorch"]) <= 1e-3
    assert abs(loss["onnx_int8"] - loss["onnx"]) <= 0.05


def test_sample_pytorch_and_onnx_agree(capsys, trained: dict) -> None:
    docs = {}
    for fmt in ("pytorch", "onnx"):
        code, stdout, err = run(capsys, "sample", ARCH, "--space", "gpt", "--weights", trained["checkpoint"],
                                "--prompt", "ROMEO:", "--tokens", "48", "--format", fmt, "--json")
        assert code == 0, err
        docs[fmt] = json.loads(stdout)
        assert list(docs[fmt]) == ["text", "tokens", "tokens_per_s"]
        assert docs[fmt]["tokens"] == 48 and docs[fmt]["tokens_per_s"] > 0
    assert docs["pytorch"]["text"] == docs["onnx"]["text"]


def test_train_from_a_supernet_checkpoint(capsys, text_file: Path, tmp_path: Path) -> None:
    """``--run`` names a gpt supernet checkpoint: its slice starts the network, and sample reads it too."""
    from modnas.toolkit.spaces.gpt.supernet import train_supernet
    from modnas.toolkit.spaces.gpt.train import LMRecipe

    _, res = train_supernet(text_file, context=16, batch=2, steps=2, out=tmp_path / "sup", random_subnets=0,
                            quiet=True, recipe=LMRecipe(warmup=0))
    out = tmp_path / "from-run"
    code, stdout, err = run(capsys, "train", ARCH, "--space", "gpt", "--text", str(text_file), "--context", "16",
                            "--batch", "2", "--steps", "2", "--run", str(tmp_path / "sup"), "--out", str(out),
                            "--json", "--quiet")
    assert code == 0, err
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["initial_weights"].startswith("supernet:")
    code, stdout, err = run(capsys, "sample", ARCH, "--run", res["checkpoint"], "--tokens", "4", "--json")
    assert code == 0 and json.loads(stdout)["tokens"] == 4, err


@pytest.mark.slow
def test_export_tvm_loss(capsys, trained: dict, tmp_path: Path) -> None:
    code, stdout, err = run(capsys, "export", ARCH, "--space", "gpt", "--weights", trained["checkpoint"],
                            "--format", "onnx,tvm", "--out", str(tmp_path / "tvm"), "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    assert Path(doc["tvm"]).is_file() and Path(doc["tvm_prefill"]).is_file()
    assert abs(doc["loss"]["tvm"] - doc["loss"]["onnx"]) <= 1e-3


def _bad_inputs(text_file: Path, ckpt: str, tmp: Path) -> list[tuple[list[str], str]]:
    empty, binary = tmp / "empty.txt", tmp / "binary.txt"
    empty.write_text("")
    binary.write_bytes(b"abc\x00def" * 10)
    train = ["train", "--space", "gpt", "--steps", "1", "--out"]
    return [
        (train + ["OUT", "e=128;l=2;h=2;m=2-2", "--text", str(text_file)], "exactly l=2 entries"),
        (train + ["OUT", "e=128;l=2;h=3-2;m=2-2", "--text", str(text_file)], "heads 3"),
        (train + ["OUT", ARCH, "--text", str(text_file), "--context", "300"], "--context"),
        (train + ["OUT", ARCH, "--text", str(empty)], "--text"),
        (train + ["OUT", ARCH, "--text", str(binary)], "--text"),
        (train + ["OUT", ARCH], "--text"),
        (train + ["OUT", ARCH, "--text", str(text_file), "--epochs", "2"], "--epochs"),
        (train + ["OUT", ARCH, "--text", str(text_file), "--run", str(tmp)], "--run"),
        (["export", OTHER, "--space", "gpt", "--weights", ckpt, "--out", "OUT"], "--weights"),
        (["export", ARCH, "--space", "gpt", "--format", "tensorrt", "--out", "OUT"], "--format tensorrt: not yet"),
        (["export", ARCH, "--space", "gpt", "--format", "executorch", "--out", "OUT"], "not yet"),
        (["sample", OTHER, "--weights", ckpt], "--weights"),
        (["sample", ARCH], "--weights"),
        (["sample", ARCH, "--weights", ckpt, "--tokens", "0"], "--tokens"),
    ]


def test_bad_input_one_line_exit_2_nothing_written(capsys, trained: dict, text_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "never"
    for argv, needle in _bad_inputs(text_file, trained["checkpoint"], tmp_path):
        argv = [str(out) if a == "OUT" else a for a in argv]
        code, stdout, err = run(capsys, *argv)
        assert code == 2 and stdout == "", (argv, err)
        assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err, (argv, err)
        assert not out.exists(), argv


def test_image_options_and_spaces_stay_apart(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "train", "0", "--text", "x.txt", "--out", str(tmp_path / "o"))
    assert code == 2 and "--text is for language models" in err
    code, _, err = run(capsys, "sample", "0", "--space", "nb201", "--weights", "x")
    assert code == 2 and "--space nb201" in err and not (tmp_path / "o").exists()
