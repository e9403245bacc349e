"""ExecuTorch on the board's CPU: loads a ``.pte`` program written by ``modnas export --format executorch``.

The program's operators run in the XNNPACK delegate; its thread pool is resized to the job's thread
count before the program is loaded (each measurement runs in a fresh worker process, so this holds for
the whole measurement). ExecuTorch's Python bindings need Python 3.10+ and torch on the board
(``pip install torch executorch``); the agent itself stays Python 3.8 clean, and this module imports
ExecuTorch only when asked.
"""
from __future__ import annotations

import importlib.util
import warnings
from typing import Callable, List, Tuple

NAME = "executorch"
METHOD = "forward"
BACKEND = "XnnpackBackend"


def available() -> Tuple[bool, str]:
    """(True, version) when ExecuTorch's runtime bindings are installed here, else (False, why).

    Cheap on purpose (doctor asks every runtime): the bindings are found, not loaded; load() checks the
    XNNPACK delegate."""
    try:
        found = version()
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        return False, "executorch cannot be imported: %s" % (lines[0] if lines else type(exc).__name__)
    for module, why in (("executorch.extension.pybindings._C", "its runtime bindings are missing"),
                        ("torch", "its Python bindings need torch, which is not installed")):
        try:
            spec = importlib.util.find_spec(module)
        except Exception:
            spec = None
        if spec is None:
            return False, "executorch %s is installed but %s" % (found, why)
    return True, found


def version() -> str:
    from executorch.version import __version__

    return str(__version__)


def _set_threads(threads: int) -> None:
    from executorch.extension.pybindings import portable_lib

    reset = getattr(portable_lib, "_unsafe_reset_threadpool", None)
    current = getattr(portable_lib, "_threadpool_get_thread_count", None)
    if reset is None:
        raise RuntimeError("this ExecuTorch cannot set its thread count (no _unsafe_reset_threadpool)")
    if current is None or int(current()) != int(threads):
        reset(int(threads))


def load(artifact_path: str, threads: int, input_shape: List[int], meta: dict) -> Callable[[], None]:
    """Load the program's ``forward`` method and return run_once(): one blocking inference on a fixed
    random input (outputs are copied out, as onnxruntime returns them)."""
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental API" on every import
        _set_threads(threads)
        import torch
        from executorch.runtime import Runtime

        runtime = Runtime.get()
        registry = getattr(runtime, "backend_registry", None)
        if registry is not None and not registry.is_available(BACKEND):
            raise RuntimeError("this ExecuTorch has no %s (backends: %s)"
                               % (BACKEND, ", ".join(registry.registered_backend_names) or "none"))
        try:
            program = runtime.load_program(artifact_path)
        except Exception as exc:
            built = meta.get("executorch_version")
            if built and str(built) != version():
                raise RuntimeError("the program was written by ExecuTorch %s and this board has %s: %s"
                                   % (built, version(), str(exc).strip().splitlines()[0] if str(exc).strip() else
                                      type(exc).__name__))
            raise
        method = program.load_method(METHOD)
    info = method.metadata.input_tensor_meta(0)
    want = [int(d) for d in info.sizes()]
    if want != [int(d) for d in input_shape]:
        raise ValueError("the program takes input shape %r, the job gives %r" % (want, list(input_shape)))
    rng = np.random.default_rng(int(meta.get("seed", 0)))
    inputs = [torch.from_numpy(rng.standard_normal(want).astype(np.float32))]
    execute = method.execute
    execute(inputs)  # fail here, not inside the timing loop, if the program does not run

    def run_once() -> None:
        execute(inputs)

    return run_once
