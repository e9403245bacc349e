"""Leave-hardware-groups-out evaluation of the predictor and of simple baselines.

Each fold trains without some hardware groups (every runtime, task, batch size and copy of a
board leaves together). Every held-out device whose 10 reference architectures are measured is
then onboarded from those 10 values only, and all its other (connected) architectures are
predicted. Baselines get the same 10 values: FLOPs (calibrated), the nearest training device by
embedding (calibrated), and the predictor without calibration.

Every space with measured tables (``Space.table_metrics``): nb201 (every source of
``modnas.toolkit.spaces.nb201.tables``) and ofa_mbv3 (HELP's OFA GPU latency; its hardware groups are
the GPUs, so each fold holds out all batch sizes of one GPU; FLOPs are the width-1.2 MACs).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from modnas.toolkit.errors import BadInput
from modnas.toolkit.results import JsonDoc


def scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """spearman, kendall, mdape (%), within_10pct (fraction) where both are finite."""
    from scipy.stats import kendalltau, spearmanr

    ok = np.isfinite(pred) & np.isfinite(true) & (pred > 0)
    p, t = pred[ok], true[ok]
    if len(p) < 3:
        return {"spearman": float("nan"), "kendall": float("nan"), "mdape": float("nan"),
                "within_10pct": float("nan"), "n": int(len(p))}
    ape = np.abs(p - t) / t
    return {"spearman": float(spearmanr(p, t)[0]), "kendall": float(kendalltau(p, t)[0]),
            "mdape": float(np.median(ape) * 100), "within_10pct": float(np.mean(ape <= 0.10)), "n": int(len(p))}


def make_folds(groups: list[str], folds: int | Sequence[Sequence[str]], seed: int,
               embeddings: dict[str, np.ndarray] | None = None) -> list[list[str]]:
    """Hardware groups per fold. With ``embeddings`` (group -> mean embedding) the groups are
    ordered along the embeddings' first principal axis and dealt round-robin, so each fold
    removes a spread of hardware kinds instead of, by chance, every GPU at once."""
    if not isinstance(folds, int):
        return [list(f) for f in folds]
    if folds < 1:
        raise BadInput(f"folds must be at least 1, got {folds}")
    order = [groups[i] for i in np.random.default_rng(seed).permutation(len(groups))]
    if embeddings and all(g in embeddings for g in order):
        x = np.vstack([embeddings[g] for g in order])
        x = x - x.mean(axis=0)
        axis = np.linalg.svd(x, full_matrices=False)[2][0] if len(order) > 1 else np.zeros(x.shape[1])
        order = [order[i] for i in np.argsort(x @ axis, kind="stable")]
    return [order[i::folds] for i in range(min(folds, len(order)))]


def _calibrated(values: np.ndarray, ref_idx: list[int], refs: np.ndarray) -> np.ndarray:
    from modnas.toolkit.prediction import calibration

    cal = calibration.fit(values[ref_idx], refs)
    return cal.apply(values)


def leave_groups_out(data_dir: str | Path, metric: str = "latency", space: str = "nb201", seed: int = 0,
             folds: int | Sequence[Sequence[str]] = 4, config: Any = None,
             max_folds: int | None = None, log: Any = None, n_extra: int = 0,
             finetune_steps: int = 100) -> dict[str, Any]:
    """Per held-out device: scores of the calibrated predictor and of the baselines, plus means.

    With ``n_extra`` > 0, also the predictor calibrated on the references plus ``n_extra`` random
    measured architectures (``calibrated_<n>``) and, in addition, fine-tuned on them
    (``finetuned_<n>``); those architectures are then left out of the scores of these two.
    """
    from modnas.toolkit.data import groups as hwgroups
    from modnas.toolkit.prediction import predictors
    from modnas.toolkit.prediction.embedding import minmax
    from modnas.toolkit.spaces import get_space

    sp = get_space(space)
    if not sp.table_metrics:
        raise BadInput(f"leave-devices-out evaluation needs benchmark tables; none for space {space!r}")
    refs = sp.reference_archs()
    cfg = predictors._config(config, metric, space)
    metrics = [metric] + [m for m in cfg.donor_metrics if m != metric and m in sp.table_metrics]
    raw_tables = {m: sp.load_table(data_dir, m) for m in metrics}
    st = predictors.space_tables(data_dir, space, list(raw_tables), raw_tables)
    conn = st.tables
    table = conn[metric]
    ref_idx = st.ref_idx
    gmap = hwgroups.groups(table.keys)
    evaluable = {g for g, ks in gmap.items()
                 if any(np.all(np.isfinite(table.row(k)[ref_idx])) for k in ks)}
    group_emb = {g: np.mean([minmax(table.row(k)[ref_idx]) for k in gmap[g]
                             if np.all(np.isfinite(table.row(k)[ref_idx]))], axis=0) for g in evaluable}
    fold_groups = make_folds(sorted(evaluable), folds, seed, group_emb)
    if max_folds is not None:
        fold_groups = fold_groups[:max_folds]
    onehot = st.onehot
    flops = np.array([sp.flops(a) for a in st.archs])
    not_ref = np.ones(len(onehot), bool)
    not_ref[ref_idx] = False
    n_cols = int(np.max(np.sum(np.isfinite(table.values), axis=1)))  # NB201: 15,284 connected cells
    rows: list[dict[str, Any]] = []
    for f, held in enumerate(fold_groups):
        held_keys = [k for g in held for k in gmap[g]]
        pool, devices, _ = predictors.training_devices(data_dir, space, metric, cfg, held_out=held,
                                                            tables=raw_tables)
        pred, _ = predictors.train(pool, devices, space, metric, cfg, seed)
        # candidate neighbours: training devices (donor metrics too) measured on most of the space
        nb_keys = [d.key for d in devices if len(d.rows) > 0.9 * n_cols and not d.imputed]
        nb_rows = {d.key: conn[d.metric].row(d.key if d.metric == metric else d.key.split(":", 1)[1])
                   for d in devices if d.key in nb_keys}
        nb_emb = np.vstack([minmax(nb_rows[k][ref_idx]) for k in nb_keys]) if nb_keys else np.zeros((0, len(refs)))
        for key in held_keys:
            row = table.row(key)
            r = row[ref_idx]
            if not np.all(np.isfinite(r)):
                continue
            emb = minmax(r).astype(np.float32)
            raw = np.exp(pred.predict_log_onehot(onehot, emb))
            truth = np.where(not_ref, row, np.nan)
            entry: dict[str, Any] = {"device": key, "group": hwgroups.hardware_group(key), "fold": f}
            entry["predictor"] = scores(_calibrated(raw, ref_idx, r), truth)
            entry["uncalibrated"] = scores(raw, truth)
            entry["flops"] = scores(_calibrated(flops, ref_idx, r), truth)
            if nb_keys:
                j = int(np.argmin(np.sum((nb_emb - emb) ** 2, axis=1)))
                nb_row = nb_rows[nb_keys[j]]
                filled = np.where(np.isfinite(nb_row), nb_row, np.nanmedian(nb_row))
                entry["nearest"] = scores(_calibrated(filled, ref_idx, r), truth)
                entry["nearest_device"] = nb_keys[j]
            if n_extra > 0:
                _few_shot(entry, pred, st.archs, onehot, row, truth, ref_idx, n_extra, finetune_steps, seed)
            rows.append(entry)
            if log is not None:
                log(f"fold {f} {key}: spearman {entry['predictor']['spearman']:.3f} "
                    f"mdape {entry['predictor']['mdape']:.1f}% within10 {entry['predictor']['within_10pct']:.2f}")
    methods = [m for m, _ in _methods(n_extra)]
    mean = {m: {k: float(np.nanmean([e[m][k] for e in rows if m in e])) for k in
                ("spearman", "kendall", "mdape", "within_10pct")} for m in methods if any(m in e for e in rows)}
    by_group: dict[str, list[dict[str, Any]]] = {}
    for e in rows:
        by_group.setdefault(e["group"], []).append(e)
    mean_by_group = {m: {k: float(np.nanmean([np.nanmean([e[m][k] for e in es]) for es in by_group.values()]))
                         for k in ("spearman", "kendall", "mdape", "within_10pct")}
                     for m in methods if all(m in e for e in rows) and rows}
    devices_out = [{"device": e["device"], **{k: e["predictor"][k] for k in ("spearman", "kendall", "mdape",
                                                                           "within_10pct")}} for e in rows]
    out = {"metric": metric, "space": space, "seed": seed, "folds": fold_groups, "config": cfg.model_dump(),
           "n_extra": n_extra,
           "devices": devices_out, "rows": rows, "mean": mean, "mean_by_group": mean_by_group,
           "data_digest": table.digest}
    out["markdown"] = markdown(out)
    return out


@dataclass
class HeldOutScore(JsonDoc):
    """The calibrated predictor on one held-out device: rank agreement and relative error."""

    device: str
    spearman: float
    kendall: float
    mdape: float  # percent
    within_10pct: float  # a fraction


@dataclass
class PredictorEvaluation(JsonDoc):
    """``modnas predictor eval``: :func:`leave_groups_out`'s scores, per held-out device and on average."""

    metric: str
    space: str
    seed: int
    folds: list[list[str]]
    config: dict[str, Any]
    n_extra: int
    devices: list[HeldOutScore]
    rows: list[dict[str, Any]]  # every method's scores per held-out device
    mean: dict[str, dict[str, float]]
    mean_by_group: dict[str, dict[str, float]]
    data_digest: str
    markdown: str

    @classmethod
    def of(cls, res: dict[str, Any]) -> "PredictorEvaluation":
        """The typed form of :func:`leave_groups_out`'s reply."""
        return cls(res["metric"], res["space"], res["seed"], res["folds"], res["config"], res["n_extra"],
                   [HeldOutScore(**d) for d in res["devices"]], res["rows"], res["mean"], res["mean_by_group"],
                   res["data_digest"], res["markdown"])


def evaluate_predictor(data_dir: str | Path | None, metric: str = "latency", space: str = "nb201", seed: int = 0,
                       folds: int = 4, n_extra: int = 0, out: str | Path | None = None) -> PredictorEvaluation:
    """``modnas predictor eval``: :func:`leave_groups_out` over ``folds`` hardware-group folds; with ``out``,
    also written there as ``predictor_eval.json`` and ``predictor_eval.md``."""
    from modnas.toolkit.config import data_dir as tables_dir

    if folds < 2 or n_extra < 0:
        raise BadInput("`folds` must be at least 2 and `n_extra` not negative", param=("folds", "n_extra"))
    from modnas.toolkit.spaces import get_space

    where = None if data_dir is None and get_space(space).ships_tables else tables_dir(data_dir)
    res = PredictorEvaluation.of(leave_groups_out(where, metric=metric, space=space, seed=seed,
                                                  folds=folds, n_extra=n_extra))
    if out is not None:
        where = Path(out)
        where.mkdir(parents=True, exist_ok=True)
        (where / "predictor_eval.json").write_text(json.dumps(res.to_json(), indent=2, default=str) + "\n")
        if res.markdown:
            (where / "predictor_eval.md").write_text(res.markdown)
    return res


METHODS = (("predictor", "predictor + calibration"), ("uncalibrated", "predictor, uncalibrated"),
           ("flops", "FLOPs + calibration"), ("nearest", "nearest training device + calibration"))


def _methods(n_extra: int) -> list[tuple[str, str]]:
    out = list(METHODS)
    if n_extra > 0:
        n = 10 + n_extra
        out += [(f"calibrated_{n}", f"predictor + calibration on {n}"),
                (f"finetuned_{n}", f"predictor fine-tuned + calibrated on {n}")]
    return out


def _few_shot(entry: dict[str, Any], pred: Any, archs: list[str], onehot: np.ndarray, row: np.ndarray, truth: np.ndarray,
              ref_idx: list[int], n_extra: int, steps: int, seed: int) -> None:
    """Scores with ``n_extra`` more measured architectures: re-calibrated, and fine-tuned too."""
    from modnas.toolkit.prediction.embedding import minmax

    cand = np.flatnonzero(np.isfinite(truth))
    pick = np.random.default_rng(seed).choice(cand, size=min(n_extra, len(cand)), replace=False)
    fit_idx = list(ref_idx) + [int(i) for i in pick]
    rest = truth.copy()
    rest[pick] = np.nan
    emb = minmax(row[ref_idx]).astype(np.float32)
    n = len(fit_idx)
    raw = np.exp(pred.predict_log_onehot(onehot, emb))
    entry[f"calibrated_{n}"] = scores(_calibrated(raw, fit_idx, row[fit_idx]), rest)
    tuned = pred.finetuned([archs[i] for i in fit_idx], row[fit_idx], emb, steps=steps, seed=seed)
    raw = np.exp(tuned.predict_log_onehot(onehot, emb))
    entry[f"finetuned_{n}"] = scores(_calibrated(raw, fit_idx, row[fit_idx]), rest)


def markdown(res: dict[str, Any]) -> str:
    """Per held-out device and mean: Spearman / Kendall / MdAPE % / within +-10 % for every method."""
    def cell(d: dict[str, float] | None) -> str:
        if not d:
            return "-"
        return f"{d['spearman']:.3f} / {d['kendall']:.3f} / {d['mdape']:.1f} / {100 * d['within_10pct']:.0f}%"

    methods = _methods(int(res.get("n_extra", 0)))
    head = "| held-out device | fold | " + " | ".join(label for _, label in methods) + " |"
    lines = [f"Leave-hardware-groups-out, metric {res['metric']}, {len(res['folds'])} folds, seed {res['seed']}; "
             "each cell: Spearman / Kendall / MdAPE % / within +-10 %; onboarding from the 10 reference values only.",
             "", head, "|" + "---|" * (2 + len(methods))]
    for e in res["rows"]:
        lines.append(f"| {e['device']} | {e['fold']} | " + " | ".join(cell(e.get(m)) for m, _ in methods) + " |")
    lines.append(f"| **mean ({len(res['rows'])} devices)** | | "
                 + " | ".join(f"**{cell(res['mean'].get(m))}**" for m, _ in methods) + " |")
    n_groups = len({e["group"] for e in res["rows"]})
    lines.append(f"| **mean over {n_groups} hardware groups** | | "
                 + " | ".join(f"**{cell(res.get('mean_by_group', {}).get(m))}**" for m, _ in methods) + " |")
    return "\n".join(lines) + "\n"
