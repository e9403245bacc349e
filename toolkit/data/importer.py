"""Measurements taken elsewhere: a CSV with header ``arch,value`` (ms or mJ)."""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modnas.toolkit.errors import BadInput
from modnas.toolkit.results import JsonDoc
from modnas.toolkit.spaces import Space

MAX_BYTES = 64 * 1024 * 1024


def read_measurement_csv(path: Path, space: Space) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Good rows by canonical architecture, and one rejection per bad line (never half a file)."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise BadInput(f"{path}: larger than {MAX_BYTES // 2**20} MiB")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"{path}: cannot read as UTF-8 text: {err}") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise BadInput(f"{path}: empty file; expected a header 'arch,value'")
    if [h.strip().lower() for h in header] != ["arch", "value"]:
        raise BadInput(f"{path}: header must be 'arch,value', got {','.join(header)!r}")
    good: dict[str, float] = {}
    rejected: list[dict[str, Any]] = []
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 2:
            rejected.append({"line": line, "error": f"expected 2 fields, got {len(row)}"})
            continue
        try:
            arch = space.canonical(row[0])
        except BadInput as err:
            rejected.append({"line": line, "error": str(err)})
            continue
        try:
            value = float(row[1])
        except ValueError:
            rejected.append({"line": line, "error": f"value {row[1]!r} is not a number"})
            continue
        if not math.isfinite(value) or value <= 0:
            rejected.append({"line": line, "error": f"value {row[1]!r} must be finite and positive"})
            continue
        good[arch] = value
    return good, rejected


@dataclass
class Rejected(JsonDoc):
    """A line of the file that was not imported, and why."""

    line: int
    error: str


@dataclass
class ImportResult(JsonDoc):
    """``modnas import``: how many values were stored for the device, and the lines rejected."""

    device: str
    imported: int
    rejected: list[Rejected]


def import_measurements(store: Any, path: str | Path, device: str, space: Space,
                        metric: str = "latency") -> ImportResult:
    """Store a CSV of measurements taken elsewhere (``arch,value``, ms or mJ) for ``device`` and refresh its
    embedding and device model; a file without one good row is bad input and stores nothing."""
    from modnas.toolkit.names import check_name
    from modnas.toolkit.prediction.device_state import refresh_embedding

    name = check_name(device, "device name")
    good, rejected = read_measurement_csv(Path(path), space)
    if not good:
        first = rejected[0] if rejected else {"line": "-", "error": "no data rows"}
        raise BadInput(f"{path}: nothing to import (line {first['line']}: {first['error']})")
    n = store.import_values(name, space.name, metric, good)
    refresh_embedding(store, name, space, metric)
    return ImportResult(name, n, [Rejected(r["line"], r["error"]) for r in rejected])
