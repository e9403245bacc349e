"""``modnas export``: build a subnet (with a run's weights when given) and write each format asked for."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modnas.exporters import EXPORTERS, get_exporter
from modnas.toolkit.workflow.artifacts import build_model
from modnas.toolkit.config import DeviceConfig
from modnas.toolkit.errors import BadInput
from modnas.toolkit.results import JsonDoc
from modnas.toolkit.spaces import get_space

FORMATS = tuple(EXPORTERS)  # every format of the exporters' registry
FROM_ONNX = ("tvm", "tensorrt")  # compiled from the ONNX file; every other format is exported from the network
REPORT_KEYS = ("arch", "max_abs_diff", "tvm_tuning", "accuracy", "accuracy_note", "loss")


@dataclass
class ExportReport(JsonDoc):
    """``modnas export``: each file written by key (``onnx``, ``onnx_int8``, ``tvm``, ``tensorrt``, ... in the
    order built), each one's largest difference to PyTorch, and with ``weights`` its held-out accuracy
    (a language model's: ``loss``, held-out nats per token by runtime)."""

    arch: str
    max_abs_diff: dict[str, float | None]
    files: dict[str, str]
    tvm_tuning: dict[str, Any] | None = None
    accuracy: dict[str, float] | None = None
    accuracy_note: str | None = None
    loss: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"arch": self.arch, "max_abs_diff": dict(self.max_abs_diff)}
        for key, path in self.files.items():
            if key == "tvm" and self.tvm_tuning is not None:
                doc["tvm_tuning"] = self.tvm_tuning
            doc[key] = path
        if self.accuracy is not None:
            doc["accuracy"] = self.accuracy
        if self.accuracy_note is not None:
            doc["accuracy_note"] = self.accuracy_note
        if self.loss is not None:
            doc["loss"] = self.loss
        return doc

    @classmethod
    def of(cls, doc: dict[str, Any]) -> "ExportReport":
        """The typed form of an export reply: every key but the report's own names a file."""
        return cls(doc["arch"], doc["max_abs_diff"], {k: v for k, v in doc.items() if k not in REPORT_KEYS},
                   doc.get("tvm_tuning"), doc.get("accuracy"), doc.get("accuracy_note"), doc.get("loss"))


def arch_stem(space: Any, arch: str) -> str:
    """A short, file-safe name: the benchmark index where the space has one, else a content hash."""
    if hasattr(space, "index"):
        return f"{space.name}-{space.index(arch)}"
    return f"{space.name}-{hashlib.sha256(arch.encode()).hexdigest()[:10]}"


QUANTIZE = ("int8",)
CALIBRATION_IMAGES = 128


def tensorrt_build_plan(quantize: str | None, precision: str) -> tuple[str, str]:
    """Which ONNX file TensorRT builds from and at what precision: with ``--quantize int8`` a QDQ
    model with symmetric int8 activations, calibrated on the same images (TensorRT takes its scales as
    explicit quantisation), in int8; else the float
    model at ``precision`` (int8 there has only TensorRT's placeholder scales: right for timing only)."""
    if quantize == "int8":
        return "onnx_int8_tensorrt", "int8"
    return "onnx", precision


@dataclass
class _EvalData:
    """Held-back images for the accuracy checks and training images for the calibration."""

    heldout: tuple[np.ndarray, np.ndarray] | None
    calibration: np.ndarray | None
    record: dict[str, Any]


def _eval_data(space: Any, arch: str, ckpt_meta: dict[str, Any] | None, images: str | None,
               quantize: str | None) -> _EvalData:
    """Everything read before a file is written, so bad input leaves nothing behind."""
    import torch

    from modnas.toolkit.workflow.training import heldout_images, load_training_data

    heldout = calibration = None
    record: dict[str, Any] = {}
    if ckpt_meta is not None:
        data, train_idx, held_idx = heldout_images(ckpt_meta, images)
        heldout = (data.x[held_idx].numpy(), data.y[held_idx].numpy())
        pool = data.x[train_idx]
        record = {"images": images or ckpt_meta["images"], "data_digest": ckpt_meta["data_digest"],
                  "heldout_images": int(len(held_idx))}
    elif quantize:
        pool = load_training_data(str(images), space, arch).x
    else:
        return _EvalData(None, None, {})
    if quantize:
        gen = torch.Generator().manual_seed(0)
        pick = torch.randperm(len(pool), generator=gen)[:CALIBRATION_IMAGES]
        calibration = pool[pick].numpy()
    return _EvalData(heldout, calibration, record)


def export_arch(arch: str, *, space_name: str | None = None, formats: list[str], out: Path,
                device: DeviceConfig | None = None, run: str | None = None, tensorrt_precision: str = "fp32",
                target_preset: str | None = None, weights: str | None = None, quantize: str | None = None,
                images: str | None = None, tune: Any = None, task: str | None = None,
                data_dir: str | Path | None = None) -> ExportReport:
    """Export one architecture; the reply names each artifact and its difference to PyTorch.

    ``space_name`` defaults to the space ``run`` searched (nb201 without a run); without ``run``, a
    benchmark ``task`` takes the weights of the run shipped for it. Each format is exported by the
    exporter the registry (``modnas.exporters.EXPORTERS``) names: TVM and TensorRT compile the ONNX
    file; any other format is exported from the network to ``<stem>.<format>``.

    ``weights`` is a ``modnas train`` checkpoint: the files carry its weights and each file's accuracy
    on the checkpoint's held-back images is measured (``accuracy`` in the reply, ``<file>.accuracy.json``
    beside it). ``quantize="int8"`` adds a static INT8 ONNX model calibrated on training images
    (the checkpoint's training split, or ``images`` without a checkpoint), and with ``executorch`` in
    ``formats`` an INT8 ExecuTorch program (PT2E, XNNPACK quantizer) calibrated on the same images. ``tune`` (an
    ``modnas.exporters.tvm_tune.TuneBudget``) MetaSchedule-tunes the TVM build with the board's tuning database."""
    from modnas.toolkit.search.api import open_run, space_of

    if space_name is not None and get_space(space_name).inputs == "tokens":
        return _export_lm(arch, get_space(space_name), formats=formats, out=out, device=device, run=run,
                          target_preset=target_preset, weights=weights, quantize=quantize, images=images, tune=tune,
                          task=task, data_dir=data_dir)
    if task and run is None:  # the run shipped for the task (checked to be that task's)
        run = str(open_run(None, space_name, task).path)
    space_name = space_of(space_name, run)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise BadInput(f"`formats` {','.join(formats)!r}: choose from {', '.join(FORMATS)}", param="formats")
    if quantize is not None and quantize not in QUANTIZE:
        raise BadInput(f"`quantize` {quantize!r}: choose from {', '.join(QUANTIZE)}", param="quantize")
    if quantize and weights is None and images is None:
        raise BadInput("`quantize` int8 needs calibration images: `images` DIR|digits (or `weights` CKPT)",
                       param=("quantize", "images", "weights"))
    if images is not None and not (quantize or weights):
        raise BadInput("`images` is for `quantize` int8 or `weights`", param=("images", "quantize", "weights"))
    if weights is not None and run is not None:
        raise BadInput("give `weights` CKPT or `run` RUN, not both: the checkpoint holds the trained weights",
                       param=("weights", "run"))
    if tune is not None and "tvm" not in formats:
        raise BadInput("`tune` tunes the TVM build: add tvm to `formats`", param=("tune", "formats"))
    space = get_space(space_name)
    arch = space.canonical(arch)
    if "tensorrt" in formats and device is None:
        raise BadInput("`formats` tensorrt needs `device`: engines are built on the board that runs them",
                       param=("formats", "device"))
    if "executorch" in formats:
        from modnas.exporters.executorch import require_executorch

        require_executorch()  # one line naming the extra, before anything is written

    ckpt_meta = None
    if weights is not None:
        from modnas.exporters.result import sha256_file
        from modnas.toolkit.workflow.training import model_from_checkpoint

        model, ckpt_meta = model_from_checkpoint(weights, space.name, arch)
        weights_tag = "checkpoint-" + sha256_file(weights)[:16]
    else:
        model = build_model(space, arch, run)
        weights_tag = run or "untrained"
    evald = _eval_data(space, arch, ckpt_meta, images, quantize)

    out.mkdir(parents=True, exist_ok=True)
    stem = arch_stem(space, arch)
    if device is not None:
        stem = f"{device.name}-{stem}"
    shape = tuple(space.input_shape(arch))
    onnx_res = get_exporter("onnx")(model, shape, out / f"{stem}.onnx", meta={"space": space.name, "arch": arch,
                                                                              "weights": weights_tag})
    doc: dict[str, Any] = {"arch": arch, "max_abs_diff": {}}
    built: dict[str, Path] = {}
    if "onnx" in formats:
        doc["onnx"] = str(onnx_res.path)
        doc["max_abs_diff"]["onnx"] = onnx_res.max_abs_diff
        built["onnx"] = onnx_res.path
    if quantize:
        from modnas.exporters.quantize import quantize_int8

        int8 = quantize_int8(onnx_res.path, evald.calibration, out / f"{stem}-int8.onnx",
                             meta={"calibration_source": "checkpoint training split" if ckpt_meta else str(images)})
        doc["onnx_int8"] = str(int8.path)
        built["onnx_int8"] = int8.path
    if "executorch" in formats:
        from modnas.exporters.executorch import quantize_executorch

        et_meta = {"space": space.name, "arch": arch, "weights": weights_tag}
        et = get_exporter("executorch")(model, shape, out / f"{stem}.pte", meta=et_meta)
        doc["executorch"] = str(et.path)
        doc["max_abs_diff"]["executorch"] = et.max_abs_diff
        built["executorch"] = et.path
        if quantize:
            et8 = quantize_executorch(model, shape, evald.calibration, out / f"{stem}-int8.pte",
                                      meta={**et_meta, "calibration_source": "checkpoint training split"
                                            if ckpt_meta else str(images)})
            doc["executorch_int8"] = str(et8.path)
            doc["max_abs_diff"]["executorch_int8"] = et8.max_abs_diff
            built["executorch_int8"] = et8.path
    for fmt in formats:  # a format registered with no special handling: exported from the network
        if fmt in ("onnx", "executorch") or fmt in FROM_ONNX:
            continue
        res = get_exporter(fmt)(model, shape, out / f"{stem}.{fmt}", meta={"space": space.name, "arch": arch,
                                                                          "weights": weights_tag})
        doc[fmt] = str(res.path)
        doc["max_abs_diff"][fmt] = res.max_abs_diff
    tvm_runs_here = False
    if "tvm" in formats:
        from modnas.exporters.targets import resolve_target, runs_here

        target = resolve_target(device.target if device else None, target_preset)
        if tune is not None:
            from modnas.exporters.tvm_tune import tune_and_build
            from modnas.toolkit.config import modnas_home

            tvm_res = tune_and_build(onnx_res.path, target, out, board=device.name if device else "local",
                                     home=modnas_home(), budget=tune, runner=device.tvm_rpc if device else None,
                                     name=f"{stem}-tvm", threads=device.threads if device else None)
            doc["tvm_tuning"] = {"tuned": True, **tvm_res.meta["tuning"]}
        else:
            tvm_res = get_exporter("tvm")(onnx_res.path, target, out, name=f"{stem}-tvm")
        doc["tvm"] = str(tvm_res.path)
        doc["max_abs_diff"]["tvm"] = tvm_res.max_abs_diff
        tvm_runs_here = runs_here(target)
        if tvm_runs_here:
            built["tvm"] = tvm_res.path
    if "tensorrt" in formats:
        from modnas.toolkit.workflow.profiling import connect

        source, precision = tensorrt_build_plan(quantize, tensorrt_precision)
        trt_onnx = onnx_res.path
        if source == "onnx_int8_tensorrt":
            trt_onnx = quantize_int8(onnx_res.path, evald.calibration, out / f"{stem}-int8-trt.onnx", target="tensorrt",
                                     meta={"calibration_source": "checkpoint training split" if ckpt_meta
                                           else str(images)}).path
            doc["onnx_int8_tensorrt"] = str(trt_onnx)
        with connect(device) as conn:
            trt = get_exporter("tensorrt")(conn, trt_onnx, precision, out_dir=out,
                                           workdir=f"{device.workdir.rstrip('/')}/engines", name=f"{stem}-trt")
        doc["tensorrt"] = str(trt.path)
        doc["max_abs_diff"]["tensorrt"] = trt.max_abs_diff
    if evald.heldout is not None:
        doc["accuracy"] = _measure_accuracy(model, built, evald, str(weights))
        if "tvm" in formats and not tvm_runs_here:
            doc["accuracy_note"] = "the TVM library is built for another CPU: its accuracy is measured on the board"
    if "onnx" not in formats:
        onnx_res.path.unlink(missing_ok=True)
        Path(str(onnx_res.path) + ".json").unlink(missing_ok=True)
    return ExportReport.of(doc)


def _export_lm(arch: str, space: Any, *, formats: list[str], out: Path, device: DeviceConfig | None, run: str | None,
               target_preset: str | None, weights: str | None, quantize: str | None, images: str | None, tune: Any,
               task: str | None, data_dir: str | Path | None) -> ExportReport:
    """A language model's export (:func:`modnas.toolkit.workflow.lm.export_lm_arch`), its image-only options refused."""
    from modnas.toolkit.workflow.lm import export_lm_arch

    for param, value in (("images", images), ("tune", tune), ("task", task)):
        if value is not None:
            raise BadInput(f"`{param}` is for image networks, not the {space.name} space", param=param)
    stem = arch_stem(space, space.canonical(arch))
    target = None
    if "tvm" in formats:
        from modnas.exporters.targets import resolve_target

        target = resolve_target(device.target if device else None, target_preset)
    return ExportReport.of(export_lm_arch(space, arch, formats=formats, out=out, weights=weights, run=run,
                                          quantize=quantize, target=target, data_dir=data_dir,
                                          stem=f"{device.name}-{stem}" if device is not None else stem))


def _measure_accuracy(model: Any, built: dict[str, Path], evald: _EvalData, checkpoint: str) -> dict[str, float]:
    """PyTorch's accuracy and each built file's on the held-back images, written beside each file."""
    from modnas.toolkit.workflow.accuracy import accuracy_onnx, accuracy_pytorch, accuracy_tvm, write_accuracy

    def accuracy_of(key: str, path: Path, x: np.ndarray, y: np.ndarray) -> float:
        if key.startswith("executorch"):
            from modnas.exporters.executorch import accuracy_executorch

            return accuracy_executorch(path, x, y)
        return accuracy_tvm(path, x, y) if key == "tvm" else accuracy_onnx(path, x, y)

    assert evald.heldout is not None
    x, y = evald.heldout
    acc = {"pytorch": accuracy_pytorch(model, x, y)}
    for key, path in built.items():
        acc[key] = accuracy_of(key, path, x, y)
        write_accuracy(path, {"format": key, "accuracy": acc[key], "pytorch_accuracy": acc["pytorch"],
                              "checkpoint": checkpoint, **evald.record})
    return acc
