"""Apache TVM (Relax VM) on the board's CPU: loads a library built by ``modnas export --format tvm``.

The library must come from the same TVM version as the board's (the host writes it into the
artifact's metadata as ``tvm_version``); a mismatch is refused with both versions named. A ``.tar``
artifact (written when the host had no cross compiler) is linked here by TVM with the board's gcc.
The thread pool size comes from ``TVM_NUM_THREADS``, read once per process when TVM starts its pool:
the agent runs each measurement in a fresh process, so setting it in load() is enough.
"""
from __future__ import annotations

import os
from typing import Callable, List, Tuple

NAME = "tvm"


class TVMVersionMismatch(RuntimeError):
    """The artifact was compiled by another TVM version than the one on this board."""


def available() -> Tuple[bool, str]:
    """(True, version) when TVM's runtime imports here, else (False, why)."""
    try:
        return True, version()
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        return False, "tvm cannot be imported: %s" % (lines[0] if lines else type(exc).__name__)


def version() -> str:
    import tvm

    return str(tvm.__version__)


def check_version(meta: dict, board_version: str) -> None:
    """Raise TVMVersionMismatch when the artifact's TVM version is known and differs from the board's."""
    built = meta.get("tvm_version")
    if built and str(built) != str(board_version):
        raise TVMVersionMismatch(
            "artifact compiled with TVM %s but this board has TVM %s; install TVM %s here or rebuild with TVM %s"
            % (built, board_version, built, board_version)
        )


def load(artifact_path: str, threads: int, input_shape: List[int], meta: dict) -> Callable[[], None]:
    """Load the library into a Relax VM on the CPU and return run_once(): one blocking inference."""
    os.environ["TVM_NUM_THREADS"] = str(int(threads))
    import numpy as np
    import tvm
    from tvm import relax

    check_version(meta, str(tvm.__version__))
    want = meta.get("input_shape")
    if want is not None and [int(d) for d in want] != [int(d) for d in input_shape]:
        raise ValueError("the library was compiled for input shape %r, the job gives %r" % (list(want), list(input_shape)))
    device = tvm.cpu(0)
    lib = tvm.runtime.load_module(artifact_path)
    vm = relax.VirtualMachine(lib, device)
    rng = np.random.default_rng(int(meta.get("seed", 0)))
    data = rng.standard_normal([int(d) for d in input_shape]).astype(str(meta.get("dtype", "float32")))
    make = getattr(tvm.runtime, "tensor", None) or tvm.nd.array  # tvm.nd.array before TVM 0.21
    inp = make(data, device)
    main = vm["main"]
    main(inp)  # fail here, not inside the timing loop, if the library does not fit the input

    def run_once() -> None:
        main(inp)
        device.sync()

    return run_once
