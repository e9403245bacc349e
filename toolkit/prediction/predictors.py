"""Hardware-conditioned latency/energy predictor, trained across many devices.

Target: the log of the measured value standardised by the device's own reference measurements,
``z = (log v - mean(log refs)) / std(log refs)``. The min-max embedding carries no scale, so the
predictor learns only the *shape* of a device's cost; :mod:`modnas.toolkit.prediction.calibration` maps it to ms/mJ
from the same reference measurements. Uncalibrated values are ``exp(z * sd0 + mu0)`` with the
training devices' mean ``mu0``/``sd0`` (a "typical device"), so they are in roughly the right
unit but can be several times off on any one device.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from modnas.toolkit.errors import BadInput
from modnas.toolkit.results import JsonDoc
from modnas.toolkit.threads import torch_threads

FORMAT_VERSION = 1
EXTRA_MIN_POINTS = 30  # a store device joins the predictor's training data with this many valid measurements


class PredictorConfig(BaseModel):
    """Hyper-parameters of one predictor fit."""

    model_config = ConfigDict(extra="forbid")

    branch: str = "mlp"
    hidden: int = Field(128, ge=4)
    hw_hidden: int = Field(64, ge=2)
    head_hidden: int = Field(128, ge=4)
    epochs: int = Field(150, ge=1)
    per_device: int = Field(512, ge=8, description="architectures drawn per device and epoch")
    batch: int = Field(512, ge=8)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    emb_noise: float = Field(0.02, ge=0, description="log-normal noise on reference values while training")
    product: bool = Field(False, description="add an arch x hardware product to the concatenation")
    group_balance: bool = True
    donor_metrics: list[str] = Field(default_factory=list,
                                     description="other metrics whose devices also train the shape model")
    min_points: int = Field(200, ge=10, description="devices with fewer measurements are left out")


@dataclass
class TrainDevice:
    """One device's training rows: positions in the architecture pool and standardised targets."""

    key: str
    group: str
    metric: str
    refs: np.ndarray  # raw reference values [R]
    rows: np.ndarray  # indices into the architecture pool
    target: np.ndarray  # z
    imputed: int  # number of reference values imputed


class Predictor:
    """A trained network plus everything needed to use and rebuild it."""

    def __init__(self, net: Any, meta: dict[str, Any]) -> None:
        self.net = net
        self.meta = meta
        self.net.eval()

    # -- description ---------------------------------------------------------------------------
    @property
    def space_name(self) -> str:
        return str(self.meta["space"])

    @property
    def metric(self) -> str:
        return str(self.meta["metric"])

    @property
    def references(self) -> list[str]:
        return list(self.meta["references"])

    @property
    def mu0(self) -> float:
        return float(self.meta["scale"]["mu0"])

    @property
    def sd0(self) -> float:
        return float(self.meta["scale"]["sd0"])

    def space(self) -> Any:
        from modnas.toolkit.spaces import get_space

        return get_space(self.space_name)

    # -- inference -----------------------------------------------------------------------------
    def torch_log_forward(self, onehot: Any, emb: Any) -> Any:
        """Uncalibrated log value ``[B]``; differentiable w.r.t. ``onehot`` (soft or straight-through)."""
        return self.net(onehot, emb) * self.sd0 + self.mu0

    def predict_log_onehot(self, onehot: np.ndarray, emb: np.ndarray, batch: int = 8192) -> np.ndarray:
        import torch

        e = np.asarray(emb, dtype=np.float32).reshape(1, -1)
        out = []
        with torch.no_grad():
            for s in range(0, len(onehot), batch):
                x = torch.from_numpy(np.ascontiguousarray(onehot[s:s + batch], dtype=np.float32))
                out.append(self.torch_log_forward(x, torch.from_numpy(e).expand(len(x), -1)).numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def predict(self, archs: Sequence[str], emb: np.ndarray) -> np.ndarray:
        """Uncalibrated values for ``archs`` on the device with embedding ``emb``."""
        emb = _check_emb(emb, len(self.references))
        return np.exp(self.predict_log_onehot(self.space().encode(list(archs)), emb))

    def finetuned(self, archs: Sequence[str], measured: np.ndarray, emb: np.ndarray, steps: int = 200,
                  lr: float = 3e-4, seed: int = 0) -> "Predictor":
        """A copy adapted to one device; its outputs keep this predictor's scale."""
        import torch

        from modnas.toolkit.prediction import calibration

        emb = _check_emb(emb, len(self.references))
        onehot = self.space().encode(list(archs))
        logp = self.predict_log_onehot(onehot, emb)
        cal = calibration.fit(np.exp(logp), measured)
        # bring the measurements into this predictor's uncalibrated log scale, then into z
        target = ((np.log(measured) - cal.intercept) / cal.slope - self.mu0) / self.sd0
        torch.manual_seed(seed)
        twin = Predictor(copy.deepcopy(self.net), copy.deepcopy(self.meta))
        twin.net.train()
        opt = torch.optim.Adam(twin.net.parameters(), lr=lr)
        x = torch.from_numpy(onehot)
        e = torch.from_numpy(np.asarray(emb, np.float32)).reshape(1, -1).expand(len(x), -1)
        y = torch.from_numpy(target.astype(np.float32))
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.mean((twin.net(x, e) - y) ** 2)
            loss.backward()
            opt.step()
        twin.net.eval()
        twin.meta["finetuned"] = {"points": int(len(archs)), "steps": steps, "lr": lr}
        return twin

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Writes ``<stem>.safetensors`` and ``<stem>.json``; returns the safetensors path."""
        from safetensors.torch import save_file

        st, js = _paths(path)
        st.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in self.net.state_dict().items()}, str(st))
        js.write_text(json.dumps(self.meta, indent=1, sort_keys=True) + "\n")
        return st


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def _check_emb(emb: Any, n: int) -> np.ndarray:
    arr = np.asarray(emb, dtype=np.float32).ravel()
    if arr.size != n or not np.all(np.isfinite(arr)):
        raise BadInput(f"hardware embedding must be {n} finite numbers, got {arr.size}")
    return arr


def build_net(meta: dict[str, Any]) -> Any:
    from modnas.toolkit.prediction.nets import CostNet

    cfg = PredictorConfig(**meta["config"])
    return CostNet(cfg.branch, int(meta["onehot_dim"]), len(meta["references"]), cfg.hidden, cfg.hw_hidden,
                   cfg.head_hidden, str(meta["space"]), cfg.product)


def _from_bytes(weights: bytes, meta: dict[str, Any]) -> Predictor:
    from safetensors.torch import load as load_tensors

    if int(meta.get("format_version", 0)) != FORMAT_VERSION:
        raise BadInput(f"predictor format {meta.get('format_version')} is not supported (need {FORMAT_VERSION})")
    net = build_net(meta)
    net.load_state_dict(load_tensors(weights))
    return Predictor(net, meta)


def load(path: str | Path) -> Predictor:
    """A predictor saved by :meth:`Predictor.save` (either file of the pair may be named)."""
    st, js = _paths(path)
    if not st.exists() or not js.exists():
        raise BadInput(f"predictor files {st.name} and {js.name} not found in {str(st.parent)!r}")
    try:
        meta = json.loads(js.read_text())
    except json.JSONDecodeError as exc:
        raise BadInput(f"{js.name} is not valid JSON: {exc.msg}") from None
    return _from_bytes(st.read_bytes(), meta)


def user_predictor_path(space: str, metric: str) -> Path:
    """Where ``modnas predictor fit`` writes by default, and where :func:`load_default` looks first."""
    from modnas.toolkit.config import modnas_home

    return modnas_home() / "predictors" / f"{space}-{metric}.safetensors"


def has_default(space: str, metric: str) -> bool:
    """Whether :func:`load_default` has a predictor to load (the user's or a shipped one); a damaged
    one is then an error of its own, never a silent fallback."""
    own = user_predictor_path(space, metric)
    if own.is_file() or own.with_suffix(".json").is_file():
        return True
    base = resources.files("modnas.toolkit").joinpath("assets", "predictors")
    return base.joinpath(f"{space}-{metric}.safetensors").is_file()


def load_default(space: str = "nb201", metric: str = "latency") -> Predictor:
    """The predictor fitted by the user (``$MODNAS_HOME/predictors/<space>-<metric>.*``) when there is
    one, else the one shipped in ``toolkit/assets/predictors/<space>-<metric>.*``."""
    own = user_predictor_path(space, metric)
    if own.is_file() or own.with_suffix(".json").is_file():
        return load(own)  # a half-written pair is one clear error, not the shipped predictor in its place
    base = resources.files("modnas.toolkit").joinpath("assets", "predictors")
    st, js = base.joinpath(f"{space}-{metric}.safetensors"), base.joinpath(f"{space}-{metric}.json")
    if not (st.is_file() and js.is_file()):
        raise BadInput(f"no predictor for space {space!r} and metric {metric!r}; "
                       f"fit one with `modnas predictor fit --space {space} --metric {metric}`")
    return _from_bytes(st.read_bytes(), json.loads(js.read_text()))


# -- training data -----------------------------------------------------------------------------
@dataclass
class SpaceTables:
    """The measured tables of one space: column ``j`` of every table is ``archs[j]`` / ``onehot[j]``.

    ``tables`` maps metric -> table (NB201: connected cells only) with ``keys``, ``values``,
    ``row(key)`` and ``digest``; metrics without a table for the space are absent.
    """

    space: str
    archs: list[str]
    onehot: np.ndarray  # [n_archs, onehot_dim] float32
    ref_idx: list[int]  # column of each reference architecture
    tables: dict[str, Any]


def space_tables(data_dir: str | Path, space_name: str, metrics: Sequence[str],
                 tables: Mapping[str, Any] | None = None) -> SpaceTables:
    """The space's device tables (``Space.load_table``) of the ``metrics`` it has, as its predictors
    train on them (``Space.predictor_table``); ``tables`` are already loaded raw tables."""
    from modnas.toolkit.spaces import get_space

    space = get_space(space_name)
    given = dict(tables or {})
    out = {}
    for m in metrics:
        if m in space.table_metrics:
            loaded = given.get(m)
            out[m] = space.predictor_table(loaded if loaded is not None else space.load_table(data_dir, m))
    if not out:
        raise BadInput(space._no_table("/".join(metrics)))
    first = next(iter(out.values()))
    archs = list(first.archs)
    return SpaceTables(space_name, archs, space.encode(archs), space.reference_columns(first), out)


ExtraSource = Mapping[str, Mapping[str, float]] | Callable[[], Mapping[str, Mapping[str, float]]]


def _impute_refs(onehot: np.ndarray, logv: np.ndarray, ref_onehot: np.ndarray) -> np.ndarray:
    """Log reference values from a ridge fit (one-hot + pairwise products) on the device's own data."""
    def feats(x: np.ndarray) -> np.ndarray:
        if x.shape[1] > 64:  # large spaces: linear terms only
            return np.hstack([x, np.ones((len(x), 1))])
        iu = np.triu_indices(x.shape[1], 1)
        return np.hstack([x, (x[:, :, None] * x[:, None, :])[:, iu[0], iu[1]], np.ones((len(x), 1))])

    f = feats(onehot.astype(np.float64))
    lam = 1.0
    w = np.linalg.solve(f.T @ f + lam * np.eye(f.shape[1]), f.T @ logv)
    return feats(ref_onehot.astype(np.float64)) @ w


def _make_device(key: str, group: str, metric: str, rows: np.ndarray, values: np.ndarray, pool: np.ndarray,
                 ref_values: list[float | None], ref_onehot: np.ndarray) -> TrainDevice | None:
    """Standardised targets; reference values a device lacks are imputed from its own data."""
    logv = np.log(values)
    logref = np.array([np.nan if v is None else np.log(v) for v in ref_values])
    miss = ~np.isfinite(logref)
    if miss.any():
        logref[miss] = _impute_refs(pool[rows], logv, ref_onehot[miss])
    mu, sd = float(logref.mean()), float(logref.std())
    if sd < 1e-6:
        return None
    return TrainDevice(key, group, metric, np.exp(logref), rows, ((logv - mu) / sd).astype(np.float32),
                       int(miss.sum()))


def training_devices(data_dir: str | Path | None, space_name: str, metric: str, cfg: PredictorConfig,
                     held_out: Sequence[str] = (), extra: ExtraSource | None = None,
                     tables: dict[str, Any] | None = None) -> tuple[np.ndarray, list[TrainDevice], dict[str, Any]]:
    """The architecture pool (one-hot rows) and every training device, with a record of the inputs.

    ``tables`` maps metric -> an already loaded :class:`modnas.toolkit.spaces.nb201.tables.DeviceTable`, so that a
    caller fitting several times parses the files once.
    """
    from modnas.toolkit.data import groups as hwgroups
    from modnas.toolkit.spaces import get_space

    space = get_space(space_name)
    refs = space.reference_archs()
    ref_onehot = space.encode(refs)
    pools: list[np.ndarray] = []
    devices: list[TrainDevice] = []
    skipped: dict[str, str] = {}
    digests: list[str] = []
    held = set(held_out)
    held_groups = {hwgroups.hardware_group(h) for h in held} | held
    n_pool = 0
    if space.table_metrics and (data_dir is not None or space.ships_tables):
        wanted = [metric] + [d for d in cfg.donor_metrics if d != metric]
        st = space_tables(data_dir, space_name, wanted, tables)
        pools.append(st.onehot)
        n_pool = len(st.onehot)
        for m in wanted:
            if m not in st.tables:
                skipped[f"{space_name}:{m}"] = f"no {m} table for {space_name}"
                continue
            table = st.tables[m]
            digests.append(table.digest)
            for key, row in zip(table.keys, table.values):
                grp = hwgroups.hardware_group(key)
                if key in held or grp in held_groups:
                    continue
                rows = np.flatnonzero(np.isfinite(row))
                if len(rows) < cfg.min_points:
                    skipped[key] = f"only {len(rows)} measurements"
                    continue
                rv = [None if not np.isfinite(row[i]) else float(row[i]) for i in st.ref_idx]
                dev = _make_device(key if m == metric else f"{m}:{key}", grp, m, rows, row[rows], pools[0],
                                   rv, ref_onehot)
                if dev is None:
                    skipped[key] = "reference values have no spread"
                else:
                    devices.append(dev)
    extra_map = extra() if callable(extra) else (extra or {})
    for name, vals in extra_map.items():
        if name in held:
            continue
        archs = [space.canonical(a) for a in vals]
        v = np.array([float(x) for x in vals.values()], dtype=np.float64)
        ok = np.isfinite(v) & (v > 0)
        if ok.sum() < EXTRA_MIN_POINTS:
            skipped[f"store:{name}"] = f"only {int(ok.sum())} valid measurements"
            continue
        archs = [a for a, good in zip(archs, ok) if good]
        v = v[ok]
        canon = {a: x for a, x in zip(archs, v)}
        rv = [canon.get(space.canonical(r)) for r in refs]
        if any(x is None for x in rv) and len(archs) < cfg.min_points:
            skipped[f"store:{name}"] = "reference architectures not all measured"
            continue
        onehot = space.encode(archs)
        rows = np.arange(n_pool, n_pool + len(archs))
        pools.append(onehot)
        n_pool += len(archs)
        full = np.vstack(pools)
        dev = _make_device(f"store:{name}", f"store:{name}", metric, rows, v, full, rv, ref_onehot)
        if dev is None:
            skipped[f"store:{name}"] = "reference values have no spread"
        else:
            devices.append(dev)
    if not devices:
        raise BadInput(f"no training devices for {space_name} {metric} (held out: {len(held)}, skipped: {len(skipped)})")
    pool = np.vstack(pools).astype(np.float32)
    record = {"digest": _combine(digests + [_extra_digest(extra_map)]), "skipped": skipped}
    return pool, devices, record


def _combine(parts: list[str]) -> str:
    import hashlib

    return hashlib.sha256("".join(parts).encode()).hexdigest()


def _extra_digest(extra_map: Mapping[str, Mapping[str, float]]) -> str:
    import hashlib

    h = hashlib.sha256()
    for name in sorted(extra_map):
        for arch, v in sorted(extra_map[name].items()):
            h.update(f"{name}\t{arch}\t{float(v)!r}\n".encode())
    return h.hexdigest()


# -- training ----------------------------------------------------------------------------------
@torch_threads(1)
def train(pool: np.ndarray, devices: list[TrainDevice], space_name: str, metric: str, cfg: PredictorConfig,
          seed: int = 0, references: Sequence[str] | None = None) -> tuple[Predictor, dict[str, float]]:
    """Fit the network on every device's standardised log values, reproducibly from ``seed`` (on one
    torch thread; the caller's count is back when it returns)."""
    import torch

    from modnas.toolkit.prediction.nets import CostNet
    from modnas.toolkit.spaces import get_space

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    space = get_space(space_name)
    refs = list(references) if references is not None else space.reference_archs()
    net = CostNet(cfg.branch, pool.shape[1], len(refs), cfg.hidden, cfg.hw_hidden, cfg.head_hidden, space_name,
                  cfg.product)
    group_size: dict[str, int] = {}
    for d in devices:
        group_size[d.group] = group_size.get(d.group, 0) + 1
    counts = []
    for d in devices:
        share = cfg.per_device / np.sqrt(group_size[d.group]) if cfg.group_balance else cfg.per_device
        counts.append(int(min(len(d.rows), max(8, round(share)))))
    steps_per_epoch = max(1, int(np.ceil(sum(counts) / cfg.batch)))
    total = cfg.epochs * steps_per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.1)
    x_pool = torch.from_numpy(pool)
    log_refs = torch.from_numpy(np.log(np.vstack([d.refs for d in devices])).astype(np.float32))
    net.train()
    last = []
    for epoch in range(cfg.epochs):
        rows, devs, ys = [], [], []
        for i, (d, c) in enumerate(zip(devices, counts)):
            pick = rng.choice(len(d.rows), size=c, replace=False)
            rows.append(d.rows[pick])
            ys.append(d.target[pick])
            devs.append(np.full(c, i))
        r, dv, y = np.concatenate(rows), np.concatenate(devs), np.concatenate(ys)
        perm = rng.permutation(len(r))
        r, dv, y = r[perm], dv[perm], y[perm]
        epoch_loss = 0.0
        for s in range(0, len(r), cfg.batch):
            bi = torch.from_numpy(dv[s:s + cfg.batch])
            noise = torch.from_numpy(rng.normal(0.0, cfg.emb_noise, size=(len(bi), log_refs.shape[1])).astype(np.float32))
            raw = torch.exp(log_refs[bi] + noise)
            lo, hi = raw.min(dim=1, keepdim=True).values, raw.max(dim=1, keepdim=True).values
            emb = (raw - lo) / (hi - lo)
            pred = net(x_pool[torch.from_numpy(r[s:s + cfg.batch])], emb)
            loss = torch.nn.functional.mse_loss(pred, torch.from_numpy(y[s:s + cfg.batch]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            epoch_loss += float(loss.detach()) * len(bi)
        if epoch >= cfg.epochs - 5:
            last.append(epoch_loss / len(r))
    net.eval()
    own = [d for d in devices if d.metric == metric] or devices  # donors of other metrics set no scale
    logs = np.log(np.vstack([d.refs for d in own]))
    meta = {
        "format_version": FORMAT_VERSION,
        "space": space_name,
        "metric": metric,
        "unit": {"latency": "ms", "energy": "mJ", "prefill": "ms"}.get(metric, ""),
        "onehot_dim": int(pool.shape[1]),
        "references": refs,
        "target": "z = (log value - mean log refs) / std log refs; uncalibrated = exp(z * sd0 + mu0)",
        "scale": {"mu0": float(logs.mean(axis=1).mean()), "sd0": float(logs.std(axis=1).mean())},
        "seed": seed,
        "config": cfg.model_dump(),
    }
    return Predictor(net, meta), {"train_mse_last5": float(np.mean(last))}


def fit_predictor(data_dir: str | Path | None, out_path: str | Path | None = None, metric: str = "latency",
                  space: str = "nb201", seed: int = 0, held_out: Sequence[str] = (), extra: ExtraSource | None = None,
                  config: PredictorConfig | Mapping[str, Any] | None = None,
                  tables: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train on every table device (minus ``held_out`` keys or hardware groups) plus ``extra``.

    A held-out key takes its whole hardware group with it (``modnas.toolkit.data.groups.hardware_group``).

    ``extra`` is ``{device name: {arch: value}}`` (or a callable returning it), e.g. store
    measurements. Saves to ``out_path`` when given. Returns ``{"path", "devices", "metrics",
    "predictor"}`` (the last is the :class:`Predictor` object, not JSON).
    """
    cfg = _config(config, metric, space)
    pool, devices, record = training_devices(data_dir, space, metric, cfg, held_out, extra, tables)
    pred, metrics = train(pool, devices, space, metric, cfg, seed)
    pred.meta.update({
        "training_devices": [{"key": d.key, "group": d.group, "metric": d.metric, "n": int(len(d.rows)),
                              "imputed_references": d.imputed} for d in devices],
        "skipped_devices": record["skipped"],
        "held_out": list(held_out),
        "data_digest": record["digest"],
        "metrics": metrics,
        "rebuild": f"modnas predictor fit --data DIR --metric {metric} --space {space} --seed {seed}"
                   + (" --out PATH" if out_path is None else f" --out {_paths(out_path)[0].name}"),
    })
    path = str(pred.save(out_path)) if out_path is not None else None
    return {"path": path, "devices": [d.key for d in devices], "metrics": metrics, "predictor": pred}


def store_training_values(store: Any, space: str, metric: str) -> dict[str, dict[str, float]]:
    """The store devices that join the predictor's training data: ``{name: {arch: value}}`` of each
    device of ``space`` with at least ``EXTRA_MIN_POINTS`` measurements of ``metric`` (never a replay
    board: its values are copies of tables). :func:`training_devices` keeps those whose values are valid."""
    out: dict[str, dict[str, float]] = {}
    for row in store.devices():
        if row.replayed:
            continue
        if row.space == space and row.measurements.get(metric, 0) >= EXTRA_MIN_POINTS:
            out[row.name] = store.values(row.name, space, metric)
    return out


@dataclass
class PredictorFit(JsonDoc):
    """``modnas predictor fit``: where the predictor was written, its training devices and training metrics."""

    path: str | None
    devices: list[str]
    metrics: dict[str, float]


def fit_with_store(data_dir: str | Path | None, store: Any, out_path: str | Path | None = None,
                   metric: str = "latency", space: str = "nb201", seed: int = 0) -> PredictorFit:
    """``modnas predictor fit``: train on every table device of ``data_dir`` and the store's measured devices
    (:func:`store_training_values`); written to ``out_path``, by default where :func:`load_default` looks first."""
    from modnas.toolkit.config import data_dir as tables_dir
    from modnas.toolkit.spaces import get_space

    tables = None if data_dir is None and get_space(space).ships_tables else tables_dir(data_dir)
    extra = store_training_values(store, space, metric)
    res = fit_predictor(tables, out_path or user_predictor_path(space, metric), metric=metric, space=space, seed=seed,
                        extra=extra or None)
    return PredictorFit(res["path"], res["devices"], res["metrics"])


def _config(config: PredictorConfig | Mapping[str, Any] | None, metric: str, space: str | None = None) -> PredictorConfig:
    """The predictor's configuration: ``config`` over the space's own defaults (``Space.predictor_defaults``)."""
    if isinstance(config, PredictorConfig):
        return config
    base: dict[str, Any] = {"donor_metrics": ["latency"]} if metric == "energy" else {}
    if space is not None:
        from modnas.toolkit.spaces import get_space

        base.update(get_space(space).predictor_defaults)
    base.update(dict(config or {}))
    return PredictorConfig(**base)
