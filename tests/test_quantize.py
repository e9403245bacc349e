"""Static INT8 (QDQ, per-channel) ONNX: `export --quantize int8`, calibration on training images only,
accuracy beside the file, TensorRT's build plan, and `precision: int8` boards keyed apart in the store."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from modnas.toolkit.cli import main
from modnas.toolkit.errors import BadInput

TINY = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """A tiny cell trained a little on 60 digits, exported with --quantize int8 through the CLI."""
    torch.set_num_threads(1)
    from modnas.toolkit.workflow.training import train_arch

    ckpt = tmp_path_factory.mktemp("q-ckpt")
    train_arch(TINY, space_name="nb201", images="digits", out=ckpt, epochs=2, max_images=60, quiet=True)
    out = tmp_path_factory.mktemp("q-export") / "files"
    code = main(["export", TINY, "--weights", str(ckpt / "checkpoint.safetensors"), "--quantize", "int8",
                 "--out", str(out), "--json", "--quiet"])
    assert code == 0
    return ckpt / "checkpoint.safetensors", out


def test_int8_model_is_qdq_per_channel_and_runs(int8_export: tuple[Path, Path], capsys) -> None:
    import onnxruntime as ort

    from modnas.exporters.quantize import is_qdq

    files = sorted(p.name for p in int8_export[1].iterdir())
    int8 = next(int8_export[1].glob("*-int8.onnx"))
    assert is_qdq(int8) and f"{int8.name}.accuracy.json" in files
    model = onnx.load(str(int8))
    scales = {i.name: i for i in model.graph.initializer}
    per_channel = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
                   and n.input[1] in scales and len(onnx.numpy_helper.to_array(scales[n.input[1]]).shape) == 1
                   and onnx.numpy_helper.to_array(scales[n.input[1]]).size > 1]
    assert per_channel  # conv weights carry one scale per output channel
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": np.zeros((1, 3, 32, 32), np.float32)})[0]
    assert out.shape == (1, 10) and np.isfinite(out).all()
    sidecar = json.loads(Path(str(int8) + ".json").read_text())
    assert sidecar["precision"] == "int8" and sidecar["quant_format"] == "QDQ" and sidecar["activations"] == "uint8"


def test_int8_accuracy_close_to_fp32(int8_export: tuple[Path, Path]) -> None:
    from modnas.toolkit.workflow.accuracy import accuracy_path
    from modnas.toolkit.workflow.training import heldout_images, model_from_checkpoint
    import onnxruntime as ort

    ckpt, out = int8_export
    fp32, int8 = next(out.glob("*[0-9].onnx")), next(out.glob("*-int8.onnx"))
    rec32 = json.loads(accuracy_path(fp32).read_text())
    rec8 = json.loads(accuracy_path(int8).read_text())
    assert rec8["format"] == "onnx_int8" and abs(rec8["accuracy"] - rec32["accuracy"]) <= 2 / rec8["heldout_images"]
    # the logits, not only the top-1: int8 stays within a few per cent of the float model's range
    _, meta = model_from_checkpoint(ckpt)
    data, _, held = heldout_images(meta)
    s32 = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    s8 = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    x = data.x[held].numpy()
    a = np.concatenate([s32.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    b = np.concatenate([s8.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    assert np.max(np.abs(a - b)) <= 0.1 * np.max(np.abs(a)) + 1e-3


def test_calibration_uses_training_images_only(int8_export: tuple[Path, Path]) -> None:
    from modnas.toolkit.workflow.exporting import _eval_data
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.workflow.training import model_from_checkpoint

    _, meta = model_from_checkpoint(int8_export[0])
    evald = _eval_data(get_space("nb201"), TINY, meta, None, "int8")
    assert evald.calibration is not None and evald.heldout is not None
    held = {row.tobytes() for row in evald.heldout[0]}
    assert len(evald.calibration) == meta["train_images"]  # fewer than 128: all of the training split
    assert not {row.tobytes() for row in evald.calibration} & held


def test_quantize_bad_input(tmp_path: Path, capsys, modnas_home: Path) -> None:
    from modnas.exporters.quantize import quantize_int8

    out = tmp_path / "x"
    assert main(["export", TINY, "--quantize", "int8", "--out", str(out)]) == 2
    assert "--images" in capsys.readouterr().err and not out.exists()
    assert main(["export", TINY, "--images", "digits", "--out", str(out)]) == 2 and not out.exists()
    assert main(["export", TINY, "--quantize", "int8", "--images", str(tmp_path / "missing"),
                 "--out", str(out)]) == 2 and not out.exists()
    onnx_file = tmp_path / "m.onnx"
    from modnas.exporters.onnx import export_onnx
    from modnas.toolkit.workflow.artifacts import build_model
    from modnas.toolkit.spaces import get_space

    export_onnx(build_model(get_space("nb201"), TINY), (1, 3, 32, 32), onnx_file)
    with pytest.raises(BadInput, match="calibration images"):
        quantize_int8(onnx_file, np.zeros((4, 3, 16, 16), np.float32))
    # TensorRT's copy: signed activations with zero point 0 (explicit quantisation)
    trt = quantize_int8(onnx_file, np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32),
                        tmp_path / "trt.onnx", target="tensorrt")
    graph = onnx.load(str(trt.path)).graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    zero_points = [inits[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)


def test_tensorrt_takes_the_calibrated_int8_model(capsys, tmp_path: Path, modnas_home: Path) -> None:
    from modnas.toolkit.workflow.exporting import tensorrt_build_plan

    assert tensorrt_build_plan("int8", "fp32") == ("onnx_int8_tensorrt", "int8")
    assert tensorrt_build_plan(None, "fp16") == ("onnx", "fp16")
    assert main(["export", TINY, "--format", "tensorrt", "--quantize", "int8", "--images", "digits",
                 "--out", str(tmp_path / "t")]) == 2
    assert "--device" in capsys.readouterr().err and not (tmp_path / "t").exists()


def test_precision_int8_keyed_apart_in_the_store(tmp_path: Path, modnas_home: Path) -> None:
    from modnas.exporters.quantize import is_qdq
    from modnas.toolkit.config import parse_device
    from modnas.toolkit.workflow.profiling import profile_device
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.store import Store

    quick = {"warmup_s": 0.0, "min_runs": 3, "min_time_s": 0.0, "repeats": 1, "cooldown_s": 0.0}
    with pytest.raises(BadInput, match="precision"):
        parse_device({"name": "p", "host": "local", "precision": "int4"})
    space = get_space("nb201")
    with Store(tmp_path / "m.db") as store:
        fp32 = parse_device({"name": "loc", "host": "local", "measurement": quick})
        int8 = parse_device({"name": "loc8", "host": "local", "measurement": quick, "precision": "int8"})
        profile_device(fp32, store, space, [TINY], quiet=True)
        profile_device(int8, store, space, [TINY], quiet=True)
        row32, = store.measurement_rows("loc", "nb201")
        row8, = store.measurement_rows("loc8", "nb201")
        assert row8["settings_key"] == row32["settings_key"] + "-int8"
        assert row8["artifact_sha"] != row32["artifact_sha"]
        int8_files = [p for p in (modnas_home / "artifacts" / "nb201").glob("*.onnx") if is_qdq(p)]
        assert len(int8_files) == 1
        # one device name, one precision: its predictor never mixes them
        mixed = parse_device({"name": "loc", "host": "local", "measurement": quick, "precision": "int8"})
        with pytest.raises(BadInput, match="another device name"):
            profile_device(mixed, store, space, [TINY], quiet=True)
        # ... and one runtime: TVM timings never join the onnxruntime ones under the same name
        other = parse_device({"name": "loc", "host": "local", "measurement": quick, "runtime": "tvm"})
        with pytest.raises(BadInput, match="already has onnxruntime measurements"):
            profile_device(other, store, space, [TINY], quiet=True)
        tvm8 = parse_device({"name": "tv8", "host": "local", "runtime": "tvm", "precision": "int8",
                             "measurement": quick})
        with pytest.raises(BadInput, match="onnxruntime"):
            profile_device(tvm8, store, space, [TINY], quiet=True)
