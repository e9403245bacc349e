"""Derived per-device state: the hardware embedding and the calibration, rebuilt from the store."""
from __future__ import annotations

from typing import Any

from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces import Space
from modnas.toolkit.store import Store


def refresh_embedding(store: Store, device: str, space: Space, metric: str = "latency") -> dict[str, Any] | None:
    """When all references are measured: store the embedding and, given a predictor, the device model
    (calibration, fixed cost, fine-tuning choices and its leave-one-out error; modnas.toolkit.prediction.device_model)."""
    from modnas.toolkit.prediction.embedding import hardware_embedding

    values = store.values(device, space.name, metric)
    if not all(r in values for r in space.reference_archs()):
        return None
    store.set_embedding(device, space.name, metric, [float(v) for v in hardware_embedding(values, space)])
    from modnas.toolkit.prediction.device_cost import device_from_store

    try:  # fits the device model to every stored measurement and stores it (unless unchanged)
        device_from_store(store, device, space.name, metric)
    except BadInput:  # no predictor for this space and metric: the embedding alone is kept
        return None
    return store.get_calibration(device, space.name, metric)
