"""A language model's search run (the gpt space): one MODNAS search over the settings of the gpt tables,
its loss term a surrogate fitted to a trained supernet's held-out losses.

The method's recipe for a space with a trained weight-sharing supernet: evaluate the inherited
held-out loss of ``evaluations`` architectures on the supernet (each one a *loss evaluation*), fit a
small differentiable surrogate to them (:class:`modnas.toolkit.search.surrogate.AccuracySurrogate`,
predicting the loss itself), then train the hypernetwork over (preference, device embedding) with the
frozen surrogate and each setting's calibrated latency predictor (``accuracy: surrogate``). The run
directory carries the supernet (``checkpoint.safetensors``, fp16, so ``export``/``sample --run`` use
it), the surrogate and the evaluated losses (``inherited_losses.csv``).

    python -m modnas.toolkit.search.default_run --space gpt --supernet CKPT --out toolkit/assets/runs/gpt
"""
from __future__ import annotations

import csv
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modnas.toolkit.errors import BadInput

# settings of the gpt tables kept out of the shipped run (its held-out devices for evaluation)
GPT_HELD_OUT = ("modnas:cpu-th2-int8", "modnas:cpu-th1-fp32-long")
LOSS_WINDOWS = 96     # held-out windows (of the supernet's context) per loss evaluation
LOSSES_FILE = "inherited_losses.csv"


class SupernetLosses:
    """A trained gpt supernet and its text's held-out split: ``loss(archs)`` evaluates each architecture's
    inherited held-out loss (nats per token over ``windows`` evenly spaced windows), counting evaluations."""

    def __init__(self, checkpoint: str | Path, data_dir: str | Path | None = None, windows: int = LOSS_WINDOWS) -> None:
        from modnas.toolkit.spaces.gpt.supernet import heldout_tokens, load_supernet_checkpoint
        from modnas.toolkit.spaces.gpt.text import read_text

        if windows < 1:
            raise BadInput(f"`windows` must be at least 1, got {windows}", param="windows")
        self.checkpoint = Path(checkpoint)
        self.supernet, self.vocab, self.meta = load_supernet_checkpoint(self.checkpoint)
        corpus = read_text(self.meta["text"], data_dir)
        if corpus.digest != self.meta["text_digest"]:
            raise BadInput(f"{checkpoint}: trained on another text than {self.meta['text']!r} reads here")
        self.held = heldout_tokens(corpus, self.vocab)
        self.context = int(self.meta["context"])
        self.windows = int(windows)
        self.evaluations = 0
        self.cache: dict[str, float] = {}

    def loss(self, archs: list[str]) -> np.ndarray:
        """Inherited held-out loss per architecture (an architecture seen before is not evaluated again)."""
        from modnas.toolkit.spaces.gpt.arch import canonical
        from modnas.toolkit.spaces.gpt.supernet import inherited_loss

        out = []
        for arch in archs:
            key = canonical(arch)
            if key not in self.cache:
                self.cache[key] = inherited_loss(self.supernet, key, self.held, self.context, self.windows)
                self.evaluations += 1
            out.append(self.cache[key])
        return np.asarray(out, dtype=np.float64)


def fit_loss_surrogate(archs: list[str], losses: np.ndarray, out_dir: str | Path, seed: int = 0,
                       epochs: int = 400, holdout: float = 0.2) -> dict[str, Any]:
    """Fit the loss surrogate (one-hot -> loss) on ``archs``; a ``holdout`` share first scores a fit
    on the rest (Spearman, Kendall, RMSE), then the surrogate is fitted on everything and written."""
    from scipy.stats import kendalltau, spearmanr

    from modnas.toolkit.search.surrogate import fit_surrogate, save_surrogate
    from modnas.toolkit.spaces import get_space

    space = get_space("gpt")
    x = space.encode(archs)
    y = np.asarray(losses, dtype=np.float64)
    order = np.random.default_rng(seed).permutation(len(archs))
    n_test = int(round(holdout * len(archs)))
    stats: dict[str, Any] = {"archs": len(archs), "source": "inherited held-out loss of the supernet's subnets"}
    kw = dict(seed=seed, epochs=epochs, hidden=128, depth=2, predicts="error")
    if n_test >= 8:
        test, train = order[:n_test], order[n_test:]
        probe, _ = fit_surrogate(x[train], y[train], **kw)  # type: ignore[arg-type]
        with torch.no_grad():
            pred = probe(torch.as_tensor(x[test])).numpy()
        stats["holdout"] = {"rows": int(n_test), "spearman": float(spearmanr(pred, y[test]).statistic),
                            "kendall": float(kendalltau(pred, y[test]).statistic),
                            "rmse": float(np.sqrt(np.mean((pred - y[test]) ** 2)))}
    model, fit = fit_surrogate(x, y, **kw)  # type: ignore[arg-type]
    stats["fit"] = fit
    save_surrogate(model, out_dir, {"column": space.quality, "distilled": stats})
    return stats


def write_losses(path: Path, archs: list[str], losses: np.ndarray) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["arch", "loss"])
        for a, v in zip(archs, losses):
            w.writerow([a, f"{float(v):.5f}"])


def read_losses(path: str | Path) -> dict[str, float]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["arch"]: float(row["loss"]) for row in csv.DictReader(fh)}


def ship_supernet(losses: SupernetLosses, path: Path) -> None:
    """The supernet's weights in fp16 (no optimiser state) with the checkpoint's metadata: what
    ``export``/``sample --run`` slice architectures from."""
    from modnas.toolkit.checkpoints import write_checkpoint_file
    from modnas.toolkit.spaces.gpt.train import FORMAT

    tensors = {f"model.{k}": v.detach().to(torch.float16).contiguous() for k, v in losses.supernet.state_dict().items()}
    meta = {k: v for k, v in losses.meta.items() if k not in ("scheduler",)}
    meta["stored_as"] = "float16 weights, no optimiser state (loaded into float32 networks)"
    write_checkpoint_file(path, tensors, FORMAT, meta)


def gpt_train_devices(held_out: tuple[str, ...] | list[str] = GPT_HELD_OUT, data_dir: str | Path | None = None
                      ) -> tuple[list[str], list[str]]:
    """(training settings, held-out settings) of the gpt latency table."""
    from modnas.toolkit.spaces import get_space

    keys = list(get_space("gpt").load_table(data_dir, "latency").keys)
    unknown = [k for k in held_out if k not in keys]
    if unknown:
        raise BadInput(f"held-out setting(s) {', '.join(unknown)} are not in the gpt table ({', '.join(keys)})")
    return [k for k in keys if k not in held_out], [k for k in keys if k in held_out]


def build_gpt_run(checkpoint: str | Path, out: str | Path, evaluations: int = 400, epochs: int = 20, seed: int = 0,
                  held_out: tuple[str, ...] | list[str] = GPT_HELD_OUT, data_dir: str | Path | None = None,
                  windows: int = LOSS_WINDOWS, devices: list[Any] | None = None, ship: bool = True,
                  losses: SupernetLosses | None = None, **overrides: Any) -> dict[str, Any]:
    """Evaluate ``evaluations`` architectures on the supernet (seeded sample plus the largest and the
    smallest), fit the loss surrogate, and search over the gpt table's settings minus ``held_out``
    (``devices``: cost models to search over instead). ``ship``: copy the supernet (fp16) into the run."""
    from modnas.toolkit.search.api import resolve_devices, run_search
    from modnas.toolkit.spaces import get_space
    from modnas.toolkit.spaces.gpt.arch import LARGEST, SMALLEST, format_arch

    if evaluations < 20:
        raise BadInput(f"`evaluations` must be at least 20, got {evaluations}", param="evaluations")
    space = get_space("gpt")
    out = Path(out)
    t0 = time.perf_counter()
    losses = losses or SupernetLosses(checkpoint, data_dir, windows)
    archs = list(dict.fromkeys([format_arch(LARGEST), format_arch(SMALLEST)]
                               + [space.canonical(a) for a in space.sample(evaluations + 10, seed)]))[:evaluations]
    values = losses.loss(archs)
    eval_seconds = time.perf_counter() - t0
    if devices is None:
        train, held = gpt_train_devices(held_out, data_dir)
        devices, source = resolve_devices(train, data_dir, space="gpt")
    else:
        train, held, source = [d.name for d in devices], list(held_out), "given cost models"
    with tempfile.TemporaryDirectory(prefix="modnas-gpt-surrogate-") as tmp:
        stats = fit_loss_surrogate(archs, values, tmp, seed=seed)
        note = (f"gpt run: surrogate mode (a loss surrogate fitted to {len(archs)} inherited held-out losses of the "
                f"supernet {Path(checkpoint).name}, {windows} windows each) on {len(train)} settings of the gpt tables; "
                f"held out: {', '.join(held)}. Rebuild: python -m modnas.toolkit.search.default_run --space gpt "
                f"--supernet CKPT --out OUT --evaluations {evaluations} --epochs {epochs} --seed {seed}")
        res = run_search(devices, accuracy="surrogate", epochs=epochs, out=out, seed=seed, space="gpt",
                         cost_source=source, note=note, surrogate_dir=tmp, **overrides)
    write_losses(out / LOSSES_FILE, archs, values)
    meta_path = out / "config.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["benchmark"]["surrogate_dir"] = None  # the run carries its surrogate
    meta["held_out"] = {"devices": held, "seed": seed}
    meta["loss_surrogate"] = {**stats, "evaluations": len(archs), "windows": windows,
                              "eval_seconds": round(eval_seconds, 1), "supernet": losses.meta.get("loss")}
    meta_path.write_text(json.dumps(meta, indent=2))
    if ship:
        import gzip

        from modnas.toolkit.spaces.gpt.train import CHECKPOINT_NAME
        from modnas.toolkit.spaces.gpt.text import HELDOUT_TEXT

        ship_supernet(losses, out / CHECKPOINT_NAME)
        # the held-out split (last 10 %) the exports' losses are taken on, where the text itself is not at hand
        (out / HELDOUT_TEXT).write_bytes(gzip.compress(losses.vocab.decode(losses.held).encode("utf-8"), 9, mtime=0))
    return {**res, "loss_surrogate": meta["loss_surrogate"]}


__all__ = ["GPT_HELD_OUT", "LOSSES_FILE", "LOSS_WINDOWS", "SupernetLosses", "build_gpt_run", "fit_loss_surrogate",
           "gpt_train_devices", "read_losses", "ship_supernet", "write_losses"]
