"""Checkpoint files of every trainer: safetensors with a JSON metadata header, written through a
temporary file and a rename (never half-written), with a readable JSON copy beside them."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from modnas.toolkit.errors import BadInput


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` into a temporary file beside ``path``, then rename it over ``path``."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_checkpoint_file(path: Path, tensors: dict[str, Any], fmt: str, meta: dict[str, Any]) -> None:
    """``tensors`` (contiguous CPU tensors) with ``fmt`` and ``meta`` in the header, and ``meta`` as JSON."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": fmt, "meta": json.dumps(meta)}))
    atomic_write(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n"))


def read_checkpoint_file(path: str | Path, fmt: str, what: str, required: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tensors and metadata of a checkpoint of format ``fmt``; a missing, truncated or foreign file,
    or metadata without a ``required`` key, is one line of bad input (``what``: the kind it should be)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # truncated, not safetensors
        first = str(exc).splitlines()[0][:80] if str(exc) else ""
        raise BadInput(f"{path}: not a readable checkpoint ({type(exc).__name__}: {first})") from None
    if header.get("format") != fmt or "meta" not in header:
        raise BadInput(f"{path}: not a modnas {what} checkpoint")
    try:
        meta = json.loads(header["meta"])
    except json.JSONDecodeError:
        raise BadInput(f"{path}: checkpoint metadata is not JSON") from None
    for key in required:
        if key not in meta:
            raise BadInput(f"{path}: checkpoint metadata lacks {key!r}")
    return tensors, meta


__all__ = ["atomic_write", "read_checkpoint_file", "write_checkpoint_file"]
