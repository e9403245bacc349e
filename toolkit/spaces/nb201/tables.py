"""NB201 latency/energy tables from every measured source in a data directory.

A *device* is one measured setting (board x runtime x task x batch size), keyed
``<source>:<device>[:<setting>]``, e.g. ``help:pixel3``, ``eagle:mobile-cpu-snapdragon-855-kryo-485-int8``,
``hw_nas_bench_360:raspberrypi5:onnx_cifar100``, ``oneproxy:nnmeter_myriadvpu_openvino2019r2``.
Devices are enumerated from the files; nothing here lists them.

Disconnected cells (no path of non-``none`` ops from input to output, 341 of 15,625) are kept as
published by :func:`load_table`: some runtimes optimise them away (LiteRT gives them near-zero
latency), others do not, and Eagle omits them. Predictor training and evaluation drop them
through :meth:`DeviceTable.connected_only` (their accuracy is chance level, so no search wants them).
Values that are not positive or not finite (OneProxy's ``-1`` for "not measured") become NaN.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from modnas.toolkit.errors import BadInput

N_NB201 = 15625
METRICS = ("latency", "energy")

# Short device names in HW-NAS-Bench-360's files -> the names the combined tables use.
_HW360_NAMES = {"pi5": "raspberrypi5", "pixel": "pixel6a"}


@dataclass
class DeviceTable:
    """Devices x 15,625 benchmark indices for one metric (NaN where not measured)."""

    metric: str
    keys: list[str]
    values: np.ndarray  # [n_devices, 15625] float64
    digest: str
    files: list[str] = field(default_factory=list)
    duplicates: dict[str, str] = field(default_factory=dict)  # dropped key -> kept key

    def row(self, key: str) -> np.ndarray:
        if key not in self.keys:
            raise BadInput(f"unknown device {key!r} in the {self.metric} table ({len(self.keys)} devices)")
        return self.values[self.keys.index(key)]

    @property
    def archs(self) -> list[str]:
        """Column ``j`` is the cell of benchmark index ``j``."""
        from modnas.toolkit.spaces import get_space

        return get_space("nb201").all_archs()

    def values_by_arch(self, key: str) -> dict[str, float]:
        """``{arch: value}`` of one device (measured entries only)."""
        return {a: float(v) for a, v in zip(self.archs, self.row(key)) if np.isfinite(v)}

    def keys_with_references(self, space_name: str = "nb201") -> list[str]:
        """Devices whose reference architectures are all measured (they can be onboarded from the table)."""
        from modnas.toolkit.spaces import get_space

        space = get_space(space_name)
        idx = [space.index(a) for a in space.reference_archs()]
        return [k for k, row in zip(self.keys, self.values) if np.all(np.isfinite(row[idx]))]

    def connected_only(self) -> "DeviceTable":
        """A copy with the disconnected cells set to NaN."""
        vals = self.values.copy()
        vals[:, ~connected_mask()] = np.nan
        return DeviceTable(self.metric, list(self.keys), vals, self.digest, list(self.files), dict(self.duplicates))

    def subset(self, keys: list[str]) -> "DeviceTable":
        rows = [self.keys.index(k) for k in keys]
        return DeviceTable(self.metric, list(keys), self.values[rows].copy(), self.digest,
                           list(self.files), dict(self.duplicates))


_OP_TOKEN = re.compile(r"([a-z_0-9]+)~\d")


def nb201_codes() -> np.ndarray:
    """Op code per edge for every benchmark cell, int [15625, 6], in benchmark index order."""
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.spaces.nb201.cell import OPS

    code = {op: i for i, op in enumerate(OPS)}
    return np.array([[code[t] for t in _OP_TOKEN.findall(a)] for a in get_space("nb201").all_archs()],
                    dtype=np.int64)


def connected_mask(codes: np.ndarray | None = None) -> np.ndarray:
    """Boolean [15625]: whether each benchmark cell connects input to output."""
    from modnas.toolkit.spaces.nb201.cell import is_connected

    c = nb201_codes() if codes is None else codes
    return np.array([is_connected(list(row)) for row in c])


# -- per-source loaders: each returns {key: (arch_index array, value array)} -------------------
Loaded = dict[str, tuple[np.ndarray, np.ndarray]]


def _split(df: pd.DataFrame, by: list[str], value_col: str, key: Callable[[tuple], str]) -> Loaded:
    out: Loaded = {}
    for names, part in df.groupby(by, sort=True, observed=True):
        names = names if isinstance(names, tuple) else (names,)
        out[key(tuple(str(n) for n in names))] = (part["arch_index"].to_numpy(np.int64),
                                                   part[value_col].to_numpy(np.float64))
    return dict(sorted(out.items()))  # device order by key: training samples devices in this order


_CAT = "category"


def _load_long(path: Path, source: str, metric: str) -> tuple[Loaded, list[Path]]:
    """HELP and Eagle: ``arch_index, arch_str, device, metric, unit, value``."""
    if not path.exists():
        return {}, []
    df = pd.read_csv(path, usecols=["arch_index", "device", "metric", "value"],
                     dtype={"device": _CAT, "metric": _CAT})
    df = df[df["metric"] == metric]
    return _split(df, ["device"], "value", lambda n: f"{source}:{n[0]}"), [path]


def _load_help(data_dir: Path, metric: str) -> tuple[Loaded, list[Path]]:
    return _load_long(data_dir / "help" / "help_nb201_latency.csv.gz", "help", metric)


def _load_eagle(data_dir: Path, metric: str) -> tuple[Loaded, list[Path]]:
    return _load_long(data_dir / "eagle_latbench" / "eagle_nb201_latency.csv.gz", "eagle", metric)


def _load_hw360(data_dir: Path, metric: str) -> tuple[Loaded, list[Path]]:
    path = data_dir / "hw_nas_bench_360" / "hwnb360_nb201.csv.gz"
    if not path.exists():
        return {}, []
    col = "lat_ms_median" if metric == "latency" else "energy_mj"
    df = pd.read_csv(path, usecols=["arch_index", "device", "framework", "task", col, "status"],
                     dtype={"device": _CAT, "framework": _CAT, "task": _CAT, "status": _CAT})
    df = df[(df["status"] == "ok") & df[col].notna()]
    return _split(df, ["device", "framework", "task"], col,
                  lambda n: f"hw_nas_bench_360:{_HW360_NAMES.get(n[0], n[0])}:{n[1]}_{n[2]}"), [path]


def _load_oneproxy(data_dir: Path, metric: str) -> tuple[Loaded, list[Path]]:
    path = data_dir / "oneproxy" / "oneproxy_nb201_subset1999_latency.csv"
    if metric != "latency" or not path.exists():
        return {}, []
    df = pd.read_csv(path)
    idx = df["arch_index"].to_numpy(np.int64)
    out: Loaded = {}
    for col in df.columns:
        if col.endswith("_ms"):
            out["oneproxy:" + col[: -len("_ms")]] = (idx, df[col].to_numpy(np.float64))
    return out, [path]


SOURCES: dict[str, Callable[[Path, str], tuple[Loaded, list[Path]]]] = {
    "help": _load_help,
    "eagle": _load_eagle,
    "hw_nas_bench_360": _load_hw360,
    "oneproxy": _load_oneproxy,  # last: its copies of devices already loaded are dropped
}


def _digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _same_as(row: np.ndarray, table: list[np.ndarray], keys: list[str]) -> str | None:
    """The key of an already loaded row equal to ``row`` wherever both are measured."""
    have = np.flatnonzero(np.isfinite(row))
    mine = row[have]
    for key, other in zip(keys, table):
        theirs = other[have]
        both = np.isfinite(theirs)
        if both.sum() >= 50 and np.all(np.abs(mine[both] - theirs[both]) <= 1e-9 + 1e-6 * np.abs(theirs[both])):
            return key
    return None


def load_table(data_dir: str | Path, metric: str = "latency") -> DeviceTable:
    """Every NB201 device of ``metric`` in ``data_dir``; a source's copy of another is dropped."""
    if metric not in METRICS:
        raise BadInput(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    root = Path(data_dir)
    if not root.is_dir():
        raise BadInput(f"data directory {str(root)!r} does not exist")
    keys: list[str] = []
    rows: list[np.ndarray] = []
    files: list[Path] = []
    dups: dict[str, str] = {}
    for loader in SOURCES.values():
        loaded, used = loader(root, metric)
        files += used
        for key, (idx, val) in loaded.items():
            ok = (idx >= 0) & (idx < N_NB201)
            row = np.full(N_NB201, np.nan)
            row[idx[ok]] = val[ok]
            row[~(np.isfinite(row) & (row > 0))] = np.nan
            if not np.isfinite(row).any():
                continue
            twin = _same_as(row, rows, keys)
            if twin is not None:
                dups[key] = twin
                continue
            keys.append(key)
            rows.append(row)
    if not keys:
        raise BadInput(f"no NB201 {metric} tables found under {str(root)!r}")
    return DeviceTable(metric, keys, np.vstack(rows), _digest(files), [str(f) for f in files], dups)


# -- accuracy ------------------------------------------------------------------------------------
def load_accuracy(data_dir: str | Path) -> pd.DataFrame:
    """``nb201_accuracy.csv.gz`` indexed by arch_index (15,625 rows)."""
    path = Path(data_dir) / "nb201" / "nb201_accuracy.csv.gz"
    if not path.exists():
        raise BadInput(f"accuracy table {str(path)!r} not found")
    df = pd.read_csv(path, dtype={"arch_vector": str, "unique_str": str})
    return df.set_index("arch_index").sort_index()
