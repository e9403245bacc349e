"""A differentiable accuracy surrogate for benchmark mode: an MLP on the architecture one-hot,
fitted to the benchmark's accuracy table and stored as safetensors + JSON."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

SURROGATE_FILES = ("accuracy_surrogate.safetensors", "accuracy_surrogate.json")


class AccuracySurrogate(nn.Module):
    """one-hot ``[B, D]`` -> accuracy in percent ``[B]``. Output = ``scale * net(x) + shift``.
    ``predicts="error"``: the output is the error itself (a language model's loss, lower is better)."""

    def __init__(self, in_dim: int = 30, hidden: int = 256, depth: int = 3, predicts: str = "accuracy") -> None:
        super().__init__()
        if predicts not in ("accuracy", "error"):
            raise ValueError(f"a surrogate predicts accuracy or error, not {predicts!r}")
        self.in_dim, self.hidden, self.depth, self.predicts = in_dim, hidden, depth, predicts
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.register_buffer("shift", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("acc_min", torch.zeros(()))
        self.register_buffer("acc_max", torch.full((), 100.0))

    def forward(self, onehot: torch.Tensor) -> torch.Tensor:
        return self.net(onehot.reshape(onehot.shape[0], -1)).squeeze(-1) * self.scale + self.shift

    def error(self, onehot: torch.Tensor) -> torch.Tensor:
        """Predicted error (100 - accuracy, percent), or the output itself for an error surrogate."""
        out = self.forward(onehot)
        return out if self.predicts == "error" else 100.0 - out


def fit_surrogate(onehot: np.ndarray, accuracy: np.ndarray, seed: int = 0, epochs: int = 300,
                  hidden: int = 256, depth: int = 3, batch: int = 512, lr: float = 2e-3,
                  predicts: str = "accuracy") -> tuple[AccuracySurrogate, dict[str, Any]]:
    """Fit on all rows (the table is the ground truth of the benchmark). Reproducible from ``seed``.
    ``predicts="error"``: ``accuracy`` holds the errors (losses) to predict."""
    from scipy.stats import kendalltau, spearmanr

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.tensor(onehot, dtype=torch.float32)
    y = torch.tensor(accuracy, dtype=torch.float32)
    model = AccuracySurrogate(x.shape[1], hidden, depth, predicts)
    model.shift.fill_(float(y.mean()))
    model.scale.fill_(float(y.std()))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    target = (y - model.shift) / model.scale
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch):
            idx = perm[start:start + batch]
            loss = torch.mean((model.net(x[idx]).squeeze(-1) - target[idx]) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        pred = model(x).numpy()
    model.acc_min.fill_(float(pred.min()))
    model.acc_max.fill_(float(pred.max()))
    stats = {"rmse": float(np.sqrt(np.mean((pred - accuracy) ** 2))),
             "spearman": float(spearmanr(pred, accuracy).statistic),
             "kendall": float(kendalltau(pred, accuracy).statistic),
             "rows": int(len(x)), "epochs": epochs, "seed": seed}
    return model, stats


def save_surrogate(model: AccuracySurrogate, directory: str | Path, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / SURROGATE_FILES[0]))
    info = {"in_dim": model.in_dim, "hidden": model.hidden, "depth": model.depth, "predicts": model.predicts, **meta}
    (directory / SURROGATE_FILES[1]).write_text(json.dumps(info, indent=2))


def load_surrogate(directory: str | Path) -> AccuracySurrogate:
    from safetensors.torch import load_file

    directory = Path(directory)
    info = json.loads((directory / SURROGATE_FILES[1]).read_text())
    model = AccuracySurrogate(info["in_dim"], info["hidden"], info["depth"], info.get("predicts", "accuracy"))
    model.load_state_dict(load_file(str(directory / SURROGATE_FILES[0])), strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def build_surrogate(data_dir: str | Path, out_dir: str | Path, column: str = "cifar10_test_200ep",
                    seed: int = 0, epochs: int = 300, space: str = "nb201") -> dict[str, Any]:
    """Fit on the accuracy table and write the surrogate files; returns the fit statistics."""
    from modnas.toolkit.search.costs import load_accuracy_column
    from modnas.toolkit.spaces import get_space

    sp = get_space(space)
    acc = load_accuracy_column(data_dir, column, space)
    model, stats = fit_surrogate(sp.encode(sp.all_archs()), acc, seed=seed, epochs=epochs)
    save_surrogate(model, out_dir, {"column": column, "fit": stats,
                                    "rebuild": f"modnas.toolkit.search.surrogate.build_surrogate(DATA, OUT, {column!r}, seed={seed}, epochs={epochs})"})
    return stats


def distil_surrogate(run: Any, n_archs: int = 600, seed: int = 0, epochs: int = 300,
                     holdout: float = 0.2) -> dict[str, Any]:
    """Fit an accuracy surrogate to a supernet-mode run's own supernet errors, so the run can be read
    out without its (large) supernet weights. Architectures: ``n_archs`` random ones plus the run's
    arg-max read-out for its training devices. A ``holdout`` share scores the fit, then the surrogate
    is refitted on everything and written to ``<run>/surrogate``. Returns the fit statistics."""
    from scipy.stats import spearmanr

    from modnas.toolkit.errors import BadInput
    from modnas.toolkit.search.preferences import preference_grid

    if run.supernet is None:
        raise BadInput(f"run {run.path} has no supernet weights to distil")
    if n_archs < 20:
        raise BadInput("distilling needs at least 20 architectures")
    space = run.space
    archs = space.sample(n_archs, seed=seed)
    prefs = preference_grid(len(run.objectives), 24)
    for dev in run.meta.get("devices", []):
        archs += run.archs(prefs, np.asarray(dev["embedding"], dtype=np.float32))
    archs = list(dict.fromkeys(space.canonical(a) for a in archs))
    acc = 100.0 - run.predict_error(archs)
    x = space.encode(archs)
    order = np.random.default_rng(seed).permutation(len(archs))
    n_test = int(round(holdout * len(archs)))
    test, train = order[:n_test], order[n_test:]
    hidden = 128
    stats: dict[str, Any] = {"archs": len(archs), "source": "supernet errors on the run's held-back images"}
    if n_test >= 8:
        probe, _ = fit_surrogate(x[train], acc[train], seed=seed, epochs=epochs, hidden=hidden, depth=2)
        with torch.no_grad():
            pred = probe(torch.as_tensor(x[test])).numpy()
        stats["holdout"] = {"rows": int(n_test), "spearman": float(spearmanr(pred, acc[test]).statistic),
                            "rmse": float(np.sqrt(np.mean((pred - acc[test]) ** 2)))}
    model, fit = fit_surrogate(x, acc, seed=seed, epochs=epochs, hidden=hidden, depth=2)
    stats["fit"] = fit
    save_surrogate(model, Path(run.path) / "surrogate",
                   {"column": "supernet", "distilled": stats,
                    "rebuild": f"modnas.toolkit.search.surrogate.distil_surrogate(load_run(RUN), {n_archs}, seed={seed}, "
                               f"epochs={epochs}) on the run with its supernet.safetensors"})
    return stats


__all__ = ["AccuracySurrogate", "build_surrogate", "distil_surrogate", "fit_surrogate", "load_surrogate", "save_surrogate"]
