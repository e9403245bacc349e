"""The cost-model protocol the search, the read-out and the verified picks are written against, and a
stand-in linear cost model fitted to one benchmark table column.

A cost model gives, for one device and one metric (latency in ms or energy in mJ): ``name``,
``embedding`` (the hardware embedding), ``torch_cost(onehot [B, D]) -> [B]`` (differentiable),
``predict(archs) -> np.ndarray``, ``minmax() -> (lo, hi)`` over the space and ``margin(quantile)``,
the relative over-run a prediction should be given. ``modnas.toolkit.prediction.device_cost.DeviceCost``
(predictor + calibration) and :class:`LinearCost` implement it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from modnas.toolkit.errors import BadInput


@runtime_checkable
class CostModel(Protocol):
    name: str
    embedding: np.ndarray

    def torch_cost(self, onehot: torch.Tensor) -> torch.Tensor: ...

    def predict(self, archs: list[str]) -> np.ndarray: ...

    def minmax(self) -> tuple[float, float]: ...

    def margin(self, quantile: float = 0.9) -> float: ...


class LinearCost:
    """Stand-in cost model, linear in log space: ms = exp(b + w . onehot), least squares on the
    logarithm of a device's table column. Its margin is the 95th percentile of the relative
    over-run (measured / predicted - 1) on the fitted rows."""

    def __init__(self, name: str, weight: np.ndarray, bias: float, embedding: np.ndarray,
                 relative_margin: float = 0.05, space: str = "nb201") -> None:
        self.name = name
        self.weight = np.asarray(weight, dtype=np.float64)
        self.bias = float(bias)
        self.embedding = np.asarray(embedding, dtype=np.float32)
        self.relative_margin = float(relative_margin)
        self.space = space
        self._w = torch.tensor(self.weight, dtype=torch.float32)

    def margin(self, quantile: float = 0.9) -> float:
        return self.relative_margin

    @classmethod
    def fit(cls, name: str, onehot: np.ndarray, values: np.ndarray, embedding: np.ndarray,
            space: str = "nb201") -> "LinearCost":
        ok = np.isfinite(values) & (values > 0)
        x = np.hstack([onehot[ok].astype(np.float64), np.ones((int(ok.sum()), 1))])
        coef, *_ = np.linalg.lstsq(x, np.log(values[ok].astype(np.float64)), rcond=None)
        over = values[ok] / np.exp(x @ coef) - 1.0
        return cls(name, coef[:-1], float(coef[-1]), embedding, float(max(np.quantile(over, 0.95), 0.0)), space)

    def torch_cost(self, onehot: torch.Tensor) -> torch.Tensor:
        return torch.exp(onehot.reshape(onehot.shape[0], -1) @ self._w.to(onehot.dtype) + self.bias)

    def predict_onehot(self, onehot: np.ndarray) -> np.ndarray:
        return np.exp(onehot.astype(np.float64) @ self.weight + self.bias)

    def predict(self, archs: list[str]) -> np.ndarray:
        from modnas.toolkit.spaces import get_space

        return self.predict_onehot(get_space(self.space).encode(archs))

    def minmax(self) -> tuple[float, float]:
        """Exact over the space: each decision contributes its smallest (largest) weight."""
        from modnas.toolkit.spaces import get_space

        lo = hi = self.bias
        off = 0
        for d in get_space(self.space).decisions:
            w = self.weight[off:off + len(d.choices)]
            lo, hi, off = lo + float(w.min()), hi + float(w.max()), off + len(d.choices)
        return float(np.exp(lo)), float(np.exp(hi))

    def to_json(self) -> dict[str, Any]:
        return {"kind": "loglinear", "name": self.name, "weight": self.weight.tolist(), "bias": self.bias,
                "embedding": self.embedding.tolist(), "relative_margin": self.relative_margin, "space": self.space}


# -- benchmark tables ------------------------------------------------------------------------
def load_accuracy_column(data_dir: str | Path, column: str = "cifar10_test_200ep", space: str = "nb201") -> np.ndarray:
    """Accuracy (%) per architecture of the space's accuracy table (``all_archs`` order)."""
    from modnas.toolkit.spaces import get_space

    return get_space(space).accuracy_column(data_dir, column)


def linear_costs_from_table(data_dir: str | Path, keys: list[str] | None = None, metric: str = "latency",
                            table: Any = None, space: str = "nb201") -> list[LinearCost]:
    """Stand-in cost models, one per table device (every device with all reference measurements
    when ``keys`` is None), fitted on the table's usable columns."""
    from modnas.toolkit.prediction.embedding import minmax
    from modnas.toolkit.spaces import get_space

    sp = get_space(space)
    table = sp.predictor_table(sp.load_table(data_dir, metric) if table is None else table)
    onehot = sp.encode(table.archs)
    refs = sp.reference_columns(table)
    chosen = list(table.keys) if keys is None else keys
    out = []
    for key in chosen:
        values = table.row(key)
        ref_values = values[refs]
        if not np.all(np.isfinite(ref_values)) or np.isfinite(values).sum() < min(1000, len(values) // 2):
            if keys is None:
                continue
            raise BadInput(f"device {key!r} lacks reference measurements")
        try:
            emb = minmax(ref_values).astype(np.float32)
        except BadInput:  # every reference equal: no embedding for this device
            if keys is None:
                continue
            raise
        out.append(LinearCost.fit(key, onehot, values, emb, space))
    return out


__all__ = ["CostModel", "LinearCost", "linear_costs_from_table", "load_accuracy_column"]
