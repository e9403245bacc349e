"""The cost-model protocol the search is written against, an adapter for the toolkit's
``DeviceCost``, and a stand-in linear cost model fitted to one benchmark table column.

A cost model gives, for one device and one metric (latency in ms or energy in mJ):
``name``, ``embedding`` (the 10-value hardware embedding), ``torch_cost(onehot [B, D]) -> [B]``
(differentiable), ``predict(archs) -> np.ndarray`` and ``minmax() -> (lo, hi)`` over the space.
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


class DeviceCostAdapter:
    """Wraps a predictor-side ``DeviceCost`` (``space_minmax``, ``embedding``/``emb``) as a CostModel."""

    def __init__(self, inner: Any, name: str | None = None) -> None:
        self.inner = inner
        self.name = str(name or getattr(inner, "name", None) or getattr(inner, "device", "device"))
        emb = getattr(inner, "embedding", None)
        if emb is None:
            emb = getattr(inner, "emb", None)
        if emb is None:
            raise BadInput(f"cost model for {self.name} has no hardware embedding")
        self.embedding = np.asarray(emb, dtype=np.float32).reshape(-1)
        self._minmax: tuple[float, float] | None = None

    def torch_cost(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.inner.torch_cost(onehot).reshape(-1)

    def predict(self, archs: list[str]) -> np.ndarray:
        return np.asarray(self.inner.predict(archs), dtype=np.float64).reshape(-1)

    def minmax(self) -> tuple[float, float]:
        if self._minmax is None:
            fn = getattr(self.inner, "space_minmax", None) or getattr(self.inner, "minmax")
            lo, hi = fn()
            self._minmax = (float(lo), float(hi))
        return self._minmax

    @property
    def margin(self) -> float | None:
        """A relative safety margin from the calibration residuals, when the model knows one."""
        for attr in ("margin", "relative_margin"):
            value = getattr(self.inner, attr, None)
            if callable(value):
                value = value()
            if value is not None:
                return float(value)
        return None


def as_cost_model(obj: Any) -> CostModel:
    """``obj`` itself when it already speaks the protocol, else the ``DeviceCost`` adapter."""
    if hasattr(obj, "minmax") and hasattr(obj, "embedding") and hasattr(obj, "torch_cost"):
        return obj  # type: ignore[return-value]
    return DeviceCostAdapter(obj)


def embedding_from_values(ref_values: np.ndarray) -> np.ndarray:
    """Min-max scale the reference measurements within the vector (the hardware embedding)."""
    v = np.asarray(ref_values, dtype=np.float64)
    span = v.max() - v.min()
    return ((v - v.min()) / (span if span > 0 else 1.0)).astype(np.float32)


class LinearCost:
    """Stand-in cost model, linear in log space: ms = exp(b + w . onehot), least squares on the
    logarithm of a device's table column. ``relative_margin`` is the 95th percentile of the
    relative over-run (measured / predicted - 1) on the fitted rows."""

    def __init__(self, name: str, weight: np.ndarray, bias: float, embedding: np.ndarray,
                 relative_margin: float = 0.05) -> None:
        self.name = name
        self.weight = np.asarray(weight, dtype=np.float64)
        self.bias = float(bias)
        self.embedding = np.asarray(embedding, dtype=np.float32)
        self.relative_margin = float(relative_margin)
        self._w = torch.tensor(self.weight, dtype=torch.float32)

    @property
    def margin(self) -> float:
        return self.relative_margin

    @classmethod
    def fit(cls, name: str, onehot: np.ndarray, values: np.ndarray, embedding: np.ndarray) -> "LinearCost":
        ok = np.isfinite(values) & (values > 0)
        x = np.hstack([onehot[ok].astype(np.float64), np.ones((int(ok.sum()), 1))])
        coef, *_ = np.linalg.lstsq(x, np.log(values[ok].astype(np.float64)), rcond=None)
        over = values[ok] / np.exp(x @ coef) - 1.0
        return cls(name, coef[:-1], float(coef[-1]), embedding, float(max(np.quantile(over, 0.95), 0.0)))

    def torch_cost(self, onehot: torch.Tensor) -> torch.Tensor:
        return torch.exp(onehot.reshape(onehot.shape[0], -1) @ self._w.to(onehot.dtype) + self.bias)

    def predict_onehot(self, onehot: np.ndarray) -> np.ndarray:
        return np.exp(onehot.astype(np.float64) @ self.weight + self.bias)

    def predict(self, archs: list[str]) -> np.ndarray:
        from modnas.toolkit.spaces import get_space

        return self.predict_onehot(get_space("nb201").encode(archs))

    def minmax(self) -> tuple[float, float]:
        w = self.weight.reshape(6, 5)
        return float(np.exp(w.min(axis=1).sum() + self.bias)), float(np.exp(w.max(axis=1).sum() + self.bias))

    def to_json(self) -> dict[str, Any]:
        return {"kind": "loglinear", "name": self.name, "weight": self.weight.tolist(), "bias": self.bias,
                "embedding": self.embedding.tolist(), "relative_margin": self.relative_margin}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LinearCost":
        return cls(data["name"], np.asarray(data["weight"]), data["bias"], np.asarray(data["embedding"]),
                   data.get("relative_margin", 0.05))


# -- benchmark tables ------------------------------------------------------------------------
def load_accuracy_column(data_dir: str | Path, column: str = "cifar10_test_200ep") -> np.ndarray:
    """Accuracy (%) per benchmark index."""
    from modnas.toolkit.data.benchdata import load_accuracy

    table = load_accuracy(data_dir)
    if column not in table.columns:
        raise BadInput(f"no accuracy column {column!r} in the accuracy table")
    return np.asarray(table.sort_index()[column], dtype=np.float64)


def linear_costs_from_table(data_dir: str | Path, keys: list[str] | None = None, metric: str = "latency",
                            table: Any = None) -> list[LinearCost]:
    """Stand-in cost models, one per table device (every device with all reference measurements
    when ``keys`` is None), fitted on the connected cells."""
    from modnas.toolkit.data.benchdata import load_table
    from modnas.toolkit.spaces import get_space

    space = get_space("nb201")
    table = (load_table(data_dir, metric) if table is None else table).connected_only()
    onehot = _all_onehot()
    refs = [space.index(a) for a in space.reference_archs()]
    chosen = list(table.keys) if keys is None else keys
    out = []
    for key in chosen:
        values = table.row(key)
        ref_values = values[refs]
        if not np.all(np.isfinite(ref_values)) or np.isfinite(values).sum() < 1000:
            if keys is None:
                continue
            raise BadInput(f"device {key!r} lacks reference measurements")
        out.append(LinearCost.fit(key, onehot, values, embedding_from_values(ref_values)))
    return out


def _all_onehot() -> np.ndarray:
    from modnas.toolkit.spaces import get_space

    space = get_space("nb201")
    return space.encode(space.all_archs())


__all__ = ["CostModel", "DeviceCostAdapter", "LinearCost", "as_cost_model", "embedding_from_values",
           "linear_costs_from_table", "load_accuracy_column"]
