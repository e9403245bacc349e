"""The OFA MobileNetV3 tables of a data directory: HELP's GPU latencies and OFA's Note10 lookup table.

* ``help_ofa/help_ofa_latency.csv.gz``: 5,000 architectures x GPU/batch settings, keyed
  ``help_ofa:<device>`` (e.g. ``help_ofa:v100_64``); the settings are enumerated from the file.
* ``help_ofa/help_ofa_archs.csv.gz``: the architectures (canonical strings), MACs and the
  Note10 lookup-table estimate.
* ``ofa_official/ofa_note10_lut.csv.gz``: per-layer Note10 latencies of the width-1.2 network;
  :func:`lut_latency` sums them for one architecture.
"""
from __future__ import annotations

from typing import Any

import hashlib
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from modnas.toolkit.data.arch_table import ArchTable
from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces.ofa_mbv3.blocks import DEFAULT_WIDTH_MULT, STAGE_HSWISH, STAGE_SE, block_specs, widths

SOURCE = "help_ofa"
_STR_COLS = {c: str for c in ("ks", "e", "d", "ks_active", "e_active")}


def _space() -> Any:
    from modnas.toolkit.spaces import get_space

    space = get_space("ofa_mbv3")
    return space


def _read(path: Path, **kw: object) -> pd.DataFrame:
    if not path.exists():
        raise BadInput(f"OFA table {str(path)!r} not found (is the data directory laid out as shared/data?)")
    return pd.read_csv(path, **kw)  # type: ignore[arg-type]


def _canonical_column(df: pd.DataFrame) -> list[str]:
    space = _space()
    return [space.canonical(space.format(ks.split("-"), e.split("-"), d.split("-"), int(r)))
            for ks, e, d, r in zip(df["ks"], df["e"], df["d"], df["r"])]


def load_archs(data_dir: str | Path) -> pd.DataFrame:
    """HELP's 5,000 architectures indexed by ``ofa_arch_id``, with an ``arch`` column (canonical)."""
    df = _read(Path(data_dir) / SOURCE / "help_ofa_archs.csv.gz", dtype=_STR_COLS)
    df = df.assign(arch=_canonical_column(df))
    return df.set_index("ofa_arch_id").sort_index()


def load_latency(data_dir: str | Path) -> ArchTable:
    """Every HELP OFA latency setting, keyed ``help_ofa:<device>``, columns in ``ofa_arch_id`` order."""
    root = Path(data_dir)
    path = root / SOURCE / "help_ofa_latency.csv.gz"
    df = _read(path, usecols=["ofa_arch_id", "device", "metric", "value"])
    df = df[df["metric"] == "latency"]
    archs = load_archs(root)
    ids = archs.index.to_numpy()
    pos = pd.Series(np.arange(len(ids)), index=ids)
    keys = sorted(df["device"].astype(str).unique())
    values = np.full((len(keys), len(ids)), np.nan)
    for i, dev in enumerate(keys):
        part = df[df["device"] == dev]
        part = part[part["ofa_arch_id"].isin(ids)]
        values[i, pos[part["ofa_arch_id"]].to_numpy()] = part["value"].to_numpy(np.float64)
    values[~(np.isfinite(values) & (values > 0))] = np.nan
    if not keys:
        raise BadInput(f"no latency rows in {str(path)!r}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return ArchTable([f"{SOURCE}:{k}" for k in keys], list(archs["arch"]), values, digest)


def gpu_group(key: str) -> str:
    """The hardware of a setting: ``help_ofa:v100_64`` -> ``v100`` (all batch sizes together)."""
    name = key.split(":", 1)[-1]
    return re.sub(r"_\d{1,3}$", "", name)


def batch_size(key: str) -> int | None:
    m = re.search(r"_(\d{1,3})$", key)
    return int(m.group(1)) if m else None


# -- the Note10 lookup table --------------------------------------------------------------------
def load_lut(data_dir: str | Path) -> pd.DataFrame:
    """OFA's per-layer Note10 latencies (w1.2 network), one row per (resolution, layer key)."""
    return _read(Path(data_dir) / "ofa_official" / "ofa_note10_lut.csv.gz")


def lut_keys(arch: str, width_mult: float = DEFAULT_WIDTH_MULT) -> list[str]:
    """The lookup-table key of every layer of ``arch``, in network order."""
    space = _space()
    cfg = space.config(arch)
    w = widths(width_mult)
    f = (cfg.r + 1) // 2
    keys = [f"Conv-input:{cfg.r}x{cfg.r}x3-output:{f}x{f}x{w.stem}",
            _mbconv_key(f, w.stem, f, w.stem, w.stem, 3, 1, 1, 0, 0)]
    specs = block_specs(cfg, width_mult)
    for b in specs:
        keys.append(_mbconv_key(b.f_in, b.c_in, b.f_out, b.c_out, b.hidden, b.kernel, b.stride,
                                int(b.residual), int(STAGE_SE[b.stage]), int(STAGE_HSWISH[b.stage])))
    f = specs[-1].f_out
    c = w.stages[-1]
    keys += [f"Conv_1-input:{f}x{f}x{c}-output:{f}x{f}x{w.final}",
             f"AvgPool2D-input:{f}x{f}x{w.final}-output:1x1x{w.final}",
             f"Conv_2-input:1x1x{w.final}-output:1x1x{w.mix}",
             f"Logits-input:1x1x{w.mix}-output:1000"]
    return keys


def _mbconv_key(f_in: int, c_in: int, f_out: int, c_out: int, mid: int, k: int, s: int,
                idskip: int, se: int, hs: int) -> str:
    return (f"expanded_conv-input:{f_in}x{f_in}x{c_in}-output:{f_out}x{f_out}x{c_out}-expand:{mid}"
            f"-kernel:{k}-stride:{s}-idskip:{idskip}-se:{se}-hs:{hs}")


def lut_latency(arch: str, lut_df: pd.DataFrame) -> float:
    """Note10 latency (ms) of ``arch`` at w1.2 as the sum of its layers' ``mean_ms``; NaN when its
    resolution is not in the table. Raises ``BadInput`` if a layer of a tabulated resolution is missing."""
    r = _space().config(arch).r
    table = lut_df[lut_df["resolution"] == r]
    if table.empty:
        return math.nan
    means = dict(zip(table["key"], table["mean_ms"]))
    total = 0.0
    for key in lut_keys(arch):
        if key not in means:
            raise BadInput(f"Note10 lookup table has no entry {key!r} at resolution {r}")
        total += float(means[key])
    return total


def load_specialized(data_dir: str | Path) -> pd.DataFrame:
    """OFA's published MobileNetV3 subnets (30 rows) with an ``arch`` column where ``r`` is in the space."""
    df = _read(Path(data_dir) / "ofa_official" / "ofa_specialized_nets.csv", dtype=_STR_COLS)
    df = df[df["net"] == "MobileNetV3"].copy()
    space = _space()
    out = []
    for row in df.itertuples():
        try:
            out.append(space.from_active([int(x) for x in row.ks_active.split("-")],
                                         [int(x) for x in row.e_active.split("-")],
                                         [int(x) for x in row.d.split("-")], int(row.r)))
        except BadInput:
            out.append(None)  # resolution outside 128..224
    df["arch"] = out
    return df
