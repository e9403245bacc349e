"""Top-1 accuracy of a network in each form it is deployed in: PyTorch, an ONNX file in onnxruntime,
a TVM library in the Relax VM; the figures are written next to each file as ``<file>.accuracy.json``."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def accuracy_pytorch(model: Any, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy of a ``torch.nn.Module`` in eval mode."""
    import torch

    model = model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            out = model(torch.as_tensor(x[i:i + batch]))
            correct += int((out.argmax(1).numpy() == y[i:i + batch]).sum())
    return correct / max(1, len(y))


def accuracy_onnx(path: str | Path, x: np.ndarray, y: np.ndarray, threads: int = 1) -> float:
    """Top-1 accuracy of an ONNX file (fp32 or QDQ int8) in onnxruntime on the CPU, one image per run
    (the exported files take a fixed batch of 1)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    correct = 0
    for i in range(len(y)):
        out = session.run(None, {name: np.ascontiguousarray(x[i:i + 1], dtype=np.float32)})[0]
        correct += int(int(np.argmax(out[0])) == int(y[i]))
    return correct / max(1, len(y))


def accuracy_tvm(path: str | Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a TVM library (built for this CPU) in the Relax VM, one image per call."""
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())
    correct = 0
    for i in range(len(y)):
        out = vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x[i:i + 1], dtype=np.float32), tvm.cpu()))
        arr = out.numpy() if hasattr(out, "numpy") else out[0].numpy()
        correct += int(int(np.argmax(arr[0])) == int(y[i]))
    return correct / max(1, len(y))


def accuracy_path(artifact: str | Path) -> Path:
    """``net.onnx`` -> ``net.onnx.accuracy.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".accuracy.json")


def write_accuracy(artifact: str | Path, record: dict[str, Any]) -> Path:
    """Write the accuracy record beside the artifact (through a temporary file and a rename)."""
    path = accuracy_path(artifact)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(name, path)
    return path


__all__ = ["accuracy_onnx", "accuracy_path", "accuracy_pytorch", "accuracy_tvm", "write_accuracy"]
