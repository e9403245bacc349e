"""Leave-hardware-groups-out evaluation of the predictor and of simple baselines.

Each fold trains without some hardware groups (every runtime, task, batch size and copy of a
board leaves together). Every held-out device whose 10 reference architectures are measured is
then onboarded from those 10 values only, and all its other (connected) architectures are
predicted. Baselines get the same 10 values: FLOPs (calibrated), the nearest training device by
embedding (calibrated), and the predictor without calibration.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from toolkit.errors import BadInput


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


def make_folds(groups: list[str], folds: int | Sequence[Sequence[str]], seed: int) -> list[list[str]]:
    if not isinstance(folds, int):
        return [list(f) for f in folds]
    if folds < 1:
        raise BadInput(f"folds must be at least 1, got {folds}")
    order = [groups[i] for i in np.random.default_rng(seed).permutation(len(groups))]
    return [order[i::folds] for i in range(min(folds, len(order)))]


def _calibrated(values: np.ndarray, ref_idx: list[int], refs: np.ndarray) -> np.ndarray:
    from toolkit import calibration

    cal = calibration.fit(values[ref_idx], refs)
    return cal.apply(values)


def evaluate(data_dir: str | Path, metric: str = "latency", space: str = "nb201", seed: int = 0,
             folds: int | Sequence[Sequence[str]] = 6, config: Any = None,
             max_folds: int | None = None, log: Any = None) -> dict[str, Any]:
    """Per held-out device: scores of the calibrated predictor and of the baselines, plus means."""
    from toolkit import benchdata, predictors
    from toolkit.embedding import minmax
    from toolkit.spaces import get_space

    if space != "nb201":
        raise BadInput(f"leave-devices-out evaluation needs benchmark tables; none for space {space!r}")
    sp = get_space(space)
    refs = sp.reference_archs()
    ref_idx = [sp.index(r) for r in refs]
    raw_tables = {m: benchdata.load_table(data_dir, m) for m in {metric, *predictors._config(config, metric).donor_metrics}}
    table = raw_tables[metric].connected_only()
    gmap = benchdata.groups(table.keys)
    evaluable = {g for g, ks in gmap.items()
                 if any(np.all(np.isfinite(table.row(k)[ref_idx])) for k in ks)}
    fold_groups = make_folds(sorted(evaluable), folds, seed)
    if max_folds is not None:
        fold_groups = fold_groups[:max_folds]
    onehot = benchdata.nb201_onehot()
    flops = np.array([sp.flops(a) for a in sp.all_archs()])
    cfg = predictors._config(config, metric)
    not_ref = np.ones(len(onehot), bool)
    not_ref[ref_idx] = False
    rows: list[dict[str, Any]] = []
    for f, held in enumerate(fold_groups):
        held_keys = [k for g in held for k in gmap[g]]
        pool, devices, _ = predictors.training_devices(data_dir, space, metric, cfg, held_out=held,
                                                            tables=raw_tables)
        pred, _ = predictors.train(pool, devices, space, metric, cfg, seed)
        # candidate neighbours: training devices of this metric measured on most of the space
        nb_keys = [d.key for d in devices if d.metric == metric and len(d.rows) > 0.9 * 15284]
        nb_emb = np.vstack([minmax(table.row(k)[ref_idx]) for k in nb_keys]) if nb_keys else np.zeros((0, len(refs)))
        for key in held_keys:
            row = table.row(key)
            r = row[ref_idx]
            if not np.all(np.isfinite(r)):
                continue
            emb = minmax(r).astype(np.float32)
            raw = np.exp(pred.predict_log_onehot(onehot, emb))
            truth = np.where(not_ref, row, np.nan)
            entry: dict[str, Any] = {"device": key, "group": benchdata.hardware_group(key), "fold": f}
            entry["predictor"] = scores(_calibrated(raw, ref_idx, r), truth)
            entry["uncalibrated"] = scores(raw, truth)
            entry["flops"] = scores(_calibrated(flops, ref_idx, r), truth)
            if nb_keys:
                j = int(np.argmin(np.sum((nb_emb - emb) ** 2, axis=1)))
                nb_row = table.row(nb_keys[j])
                filled = np.where(np.isfinite(nb_row), nb_row, np.nanmedian(nb_row))
                entry["nearest"] = scores(_calibrated(filled, ref_idx, r), truth)
                entry["nearest_device"] = nb_keys[j]
            rows.append(entry)
            if log is not None:
                log(f"fold {f} {key}: spearman {entry['predictor']['spearman']:.3f} "
                    f"mdape {entry['predictor']['mdape']:.1f}% within10 {entry['predictor']['within_10pct']:.2f}")
    methods = ["predictor", "uncalibrated", "flops", "nearest"]
    mean = {m: {k: float(np.nanmean([e[m][k] for e in rows if m in e])) for k in
                ("spearman", "kendall", "mdape", "within_10pct")} for m in methods if any(m in e for e in rows)}
    devices_out = [{"device": e["device"], **{k: e["predictor"][k] for k in ("spearman", "kendall", "mdape",
                                                                           "within_10pct")}} for e in rows]
    out = {"metric": metric, "space": space, "seed": seed, "folds": fold_groups, "config": cfg.model_dump(),
           "devices": devices_out, "rows": rows, "mean": mean, "data_digest": table.digest}
    out["markdown"] = markdown(out)
    return out


METHODS = (("predictor", "predictor + calibration"), ("uncalibrated", "predictor, uncalibrated"),
           ("flops", "FLOPs + calibration"), ("nearest", "nearest training device + calibration"))


def markdown(res: dict[str, Any]) -> str:
    """Per held-out device and mean: Spearman / Kendall / MdAPE % / within +-10 % for every method."""
    def cell(d: dict[str, float] | None) -> str:
        if not d:
            return "-"
        return f"{d['spearman']:.3f} / {d['kendall']:.3f} / {d['mdape']:.1f} / {100 * d['within_10pct']:.0f}%"

    head = "| held-out device | fold | " + " | ".join(label for _, label in METHODS) + " |"
    lines = [f"Leave-hardware-groups-out, metric {res['metric']}, {len(res['folds'])} folds, seed {res['seed']}; "
             "each cell: Spearman / Kendall / MdAPE % / within +-10 %; onboarding from the 10 reference values only.",
             "", head, "|" + "---|" * (2 + len(METHODS))]
    for e in res["rows"]:
        lines.append(f"| {e['device']} | {e['fold']} | " + " | ".join(cell(e.get(m)) for m, _ in METHODS) + " |")
    lines.append(f"| **mean ({len(res['rows'])} devices)** | | "
                 + " | ".join(f"**{cell(res['mean'].get(m))}**" for m, _ in METHODS) + " |")
    return "\n".join(lines) + "\n"
