"""What every exporter returns, and the helpers they share (hashing, the sidecar JSON)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modnas.profilers.errors import ModnasError


class ExportMismatch(ModnasError):
    """A compiled artifact disagrees with the reference runtime beyond the tolerance (exit 1)."""


@dataclass
class ExportResult:
    """One exported artifact: where it is, its SHA-256, how far it is from the reference, and its metadata."""

    path: Path
    sha256: str
    max_abs_diff: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the path as a string)."""
        return {"path": str(self.path), "sha256": self.sha256, "max_abs_diff": self.max_abs_diff, "meta": self.meta}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(artifact: str | Path) -> Path:
    """The metadata file that sits next to an artifact: ``net.so`` -> ``net.so.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def write_sidecar(artifact: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``meta`` as JSON next to the artifact and return the file's path."""
    path = sidecar_path(artifact)
    path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_sidecar(artifact: str | Path) -> dict[str, Any]:
    """The metadata written by :func:`write_sidecar` ({} when there is none)."""
    path = sidecar_path(artifact)
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))
