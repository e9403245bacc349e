"""Replay boards (``host: replay``): the tables they answer from, checked line by line, and how to write them.

A table is CSV with the header ``arch,value`` (ms for latency, mJ for energy). Architectures are kept in
their space's canonical form, so two strings of the same network find the same row.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import yaml

from modnas.toolkit.errors import BadInput

MAX_TABLE_BYTES = 64 * 1024 * 1024
HEADER = ["arch", "value"]


@dataclass(frozen=True)
class ReplayTable:
    """One checked table: canonical architecture -> value, with where it came from."""

    path: str
    sha256: str
    space: str
    values: Mapping[str, float]

    def describe(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "space": self.space, "rows": len(self.values)}


def _spaces(space: str | None) -> list[str]:
    from modnas.toolkit.spaces import SPACES

    if space is None:
        return list(SPACES)
    if space not in SPACES:
        raise BadInput(f"replay.space: unknown space {space!r}; known: {', '.join(sorted(SPACES))}")
    return [space]


def _canonical(arch: str, names: list[str], where: str) -> tuple[str, str]:
    """(space, canonical arch) in the first of ``names`` that parses it, else BadInput naming the line."""
    from modnas.toolkit.spaces import get_space

    first: BadInput | None = None
    for name in names:
        try:
            return name, get_space(name).canonical(arch)
        except BadInput as err:
            first = first or err
    which = names[0] if len(names) == 1 else f"any space ({', '.join(names)})"
    raise BadInput(f"{where}: not an architecture of {which}: {str(first).splitlines()[0] if first else arch}")


def read_table(path: str | Path, space: str | None = None) -> ReplayTable:
    """Read and check a whole table; the first bad line is one BadInput naming the file and line."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise BadInput(f"{path}: no such replay table") from None
    except OSError as err:
        raise BadInput(f"{path}: cannot read the replay table: {err.strerror}") from None
    if stat.st_size > MAX_TABLE_BYTES:
        raise BadInput(f"{path}: replay table larger than {MAX_TABLE_BYTES // 2**20} MiB")
    return _read_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns, space)


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, size: int, mtime_ns: int, space: str | None) -> ReplayTable:
    """Tables are read once per content version (path, size, mtime): a device file loaded twice costs once."""
    try:
        data = Path(path).read_bytes()
        text = data.decode("utf-8-sig")
    except OSError as err:
        raise BadInput(f"{path}: cannot read the replay table: {err.strerror}") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path}: the replay table is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header] != HEADER:
        got = ",".join(header) if header else "an empty file"
        raise BadInput(f"{path}:1: the header must be 'arch,value', got {got!r}")
    names = _spaces(space)
    values: dict[str, float] = {}
    first_line: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        where = f"{path}:{line}"
        if not row or all(not cell.strip() for cell in row):
            continue
        if row[0].lstrip().startswith("#"):
            continue
        if len(row) != 2:
            raise BadInput(f"{where}: expected 2 fields 'arch,value', got {len(row)}")
        arch_text, value_text = row[0].strip(), row[1].strip()
        if not arch_text:
            raise BadInput(f"{where}: the architecture is missing")
        if not value_text:
            raise BadInput(f"{where}: the value is missing")
        try:
            value = float(value_text)
        except ValueError:
            raise BadInput(f"{where}: value {value_text!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise BadInput(f"{where}: value {value_text!r} must be a positive finite number")
        found, arch = _canonical(arch_text, names, where)
        names = [found]  # every row of a table is in the space of its first row
        if arch in values and values[arch] != value:
            raise BadInput(f"{where}: {arch} is already in the table (line {first_line[arch]}) with another value")
        values[arch] = value
        first_line.setdefault(arch, line)
    if not values:
        raise BadInput(f"{path}: the replay table has no rows")
    return ReplayTable(path, hashlib.sha256(data).hexdigest(), names[0], MappingProxyType(values))


def load_tables(cfg: Any) -> dict[str, ReplayTable]:
    """The replay board's tables by metric (``latency``, and ``energy`` and ``prefill`` when given), checked."""
    replay = cfg.replay
    if replay is None:
        raise BadInput(f"device {cfg.name} is not a replay board")
    tables = {"latency": read_table(replay.latency, replay.space)}
    for metric in ("energy", "prefill"):
        path = getattr(replay, metric)
        if path:
            tables[metric] = read_table(path, replay.space)
            if tables[metric].space != tables["latency"].space:
                raise BadInput(f"{path}: its architectures are {tables[metric].space}, the latency table's "
                               f"are {tables['latency'].space}")
    return tables


def replay_connection(cfg: Any) -> Any:
    """The connection to a replay board: this machine, with the agent answering from the tables in this process."""
    from modnas.profilers.board.replay_runtime import ReplayBoard
    from modnas.profilers.replay_connection import ReplayConnection

    tables = load_tables(cfg)
    board = ReplayBoard(
        {metric: table.values for metric, table in tables.items()},
        noise=float(cfg.replay.noise), seed=int(cfg.replay.seed),
        describe={metric: table.describe() for metric, table in tables.items()})
    return ReplayConnection(str(cfg.name), board)


# -- writing tables and replay device files (benchmarks and tests) ---------------------------------------------
def table_values(data_dir: str | Path, key: str, metric: str = "latency", space: str = "nb201",
                 table: Any = None) -> dict[str, float]:
    """One device column of the space's shared tables as {arch: value} (measured cells only), e.g.
    ``help:pixel3`` of nb201 or ``help_ofa:v100_64`` of ofa_mbv3; pass an already loaded ``table``
    to read many columns cheaply."""
    from modnas.toolkit.spaces import get_space

    loaded = table if table is not None else get_space(space).load_table(data_dir, metric)
    return {a: float(v) for a, v in loaded.values_by_arch(key).items() if math.isfinite(v) and v > 0}


def write_table(values: Mapping[str, float], path: str | Path) -> Path:
    """Write {arch: value} as a replay table (``arch,value``, 10 significant digits)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    for arch, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise BadInput(f"replay value for {arch} must be a positive finite number, got {value!r}")
        writer.writerow([arch, f"{value:.10g}"])
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    tmp.replace(path)
    return path


def write_device(out_dir: str | Path, name: str, latency: Mapping[str, float],
                 energy: Mapping[str, float] | None = None, noise: float = 0.0, seed: int = 0,
                 measurement: dict[str, Any] | None = None, workdir: str | Path | None = None,
                 prefill: Mapping[str, float] | None = None) -> Path:
    """Write ``<name>.yaml`` and its tables under ``out_dir``; the device file's path.

    ``measurement`` sets repeats and min_runs (how many raw samples each measurement carries)."""
    from modnas.toolkit.names import check_name

    check_name(name, "device name")
    out = Path(out_dir)
    write_table(latency, out / "tables" / f"{name}-latency.csv")
    replay: dict[str, Any] = {"latency": f"tables/{name}-latency.csv", "noise": float(noise), "seed": int(seed)}
    if energy:
        write_table(energy, out / "tables" / f"{name}-energy.csv")
        replay["energy"] = f"tables/{name}-energy.csv"
    if prefill:
        write_table(prefill, out / "tables" / f"{name}-prefill.csv")
        replay["prefill"] = f"tables/{name}-prefill.csv"
    doc: dict[str, Any] = {"name": name, "host": "replay", "replay": replay,
                           "workdir": str(Path(workdir if workdir is not None else out / "board").resolve())}
    if measurement:
        doc["measurement"] = dict(measurement)
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def device_name_for(key: str) -> str:
    """A device name for a shared-table key: ``help:pixel3`` -> ``help-pixel3``."""
    import re

    return re.sub(r"[^A-Za-z0-9_-]+", "-", key).strip("-")[:64] or "replay"


def main(argv: list[str] | None = None) -> int:
    """``python -m modnas.toolkit.data.replay_tables [--data DIR] --device KEY [--device KEY ...] --out DIR``: replay
    device files (with a prefill table too for a language-model space)."""
    import argparse
    import sys

    from modnas.toolkit.spaces import get_space, space_names

    parser = argparse.ArgumentParser(prog="python -m modnas.toolkit.data.replay_tables",
                                     description="write replay boards (device file + tables) for shared-table devices")
    parser.add_argument("--data", default=None, help="the measured tables (laid out as shared/data; a space that "
                                                     "ships its tables, gpt, needs none)")
    parser.add_argument("--device", action="append", required=True, help="a table key, e.g. help:pixel3")
    parser.add_argument("--space", default="nb201", choices=space_names())
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        space = get_space(args.space)  # every key's column from one read of each table
        if args.data is None and not space.ships_tables:
            raise BadInput(f"give the measured tables of the {space.name} space with --data DIR")
        latency = space.load_table(args.data, "latency")
        more = {m: space.load_table(args.data, m) for m in ("energy", "prefill") if m in space.table_metrics}
        for key in args.device:
            lat = table_values(args.data, key, "latency", args.space, table=latency)
            other = {m: table_values(args.data, key, m, args.space, table=t) for m, t in more.items() if key in t.keys}
            path = write_device(args.out, device_name_for(key), lat, other.get("energy"), noise=args.noise,
                                seed=args.seed, prefill=other.get("prefill"))
            print(path)
    except BadInput as err:
        print(f"python -m modnas.toolkit.data.replay_tables: {err}", file=sys.stderr)
        return 2
    return 0


__all__ = ["ReplayTable", "load_tables", "read_table", "replay_connection", "table_values", "write_device",
           "write_table"]

if __name__ == "__main__":
    raise SystemExit(main())
