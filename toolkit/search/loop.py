"""The MODNAS training loop: hypernetwork steps with MGD across devices, supernet weight steps.

Benchmark mode: the error term comes from the frozen accuracy surrogate; only the hypernetwork
trains. Supernet mode: each step first updates the hypernetwork on an architecture-half batch
(cross-entropy of the sampled subnet, min-max scaled with a range measured once on random subnets
when the hypernetwork starts training, then frozen), then the supernet weights on a weight-half
batch (mean CE over the devices' sampled subnets). The normalised objectives are combined under
each preference by the configured scalarisation (modnas.toolkit.search.scalarise).
Randomness is keyed by (seed, epoch, step, device), so results do not depend on how devices are
split over ranks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from modnas.toolkit.search.costs import CostModel
from modnas.toolkit.search.ddp import DistContext
from modnas.toolkit.search.hypernet import build_hypernet
from modnas.toolkit.search.mgd import mgd_combine
from modnas.toolkit.search.run import SearchConfig
from modnas.toolkit.search.samplers import get_sampler
from modnas.toolkit.search.scalarise import scalarise
from modnas.toolkit.search.layout import hypernet_layout
from modnas.toolkit.spaces import Space, get_space


@dataclass
class SearchDevice:
    """A training device: its embedding and one cost model per cost objective."""

    name: str
    embedding: np.ndarray
    costs: dict[str, CostModel]
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for obj, model in self.costs.items():
            if obj not in self.ranges:
                lo, hi = model.minmax()
                self.ranges[obj] = (float(lo), float(hi) if hi > lo else float(lo) + 1.0)

    def cost_terms(self, onehot: torch.Tensor, objectives: list[str]) -> list[torch.Tensor]:
        out = []
        for obj in objectives:
            lo, hi = self.ranges[obj]
            out.append((self.costs[obj].torch_cost(onehot).reshape(-1) - lo) / (hi - lo))
        return out


class FixedRange:
    """A fixed (lo, hi) that puts cross-entropy on the scale of the normalised cost terms; set once
    (``freeze``) and never moved, so a preference means the same trade-off all through training."""

    def __init__(self, lo: float | None = None, hi: float | None = None) -> None:
        self.lo, self.hi = lo, hi

    @property
    def frozen(self) -> bool:
        return self.lo is not None and self.hi is not None

    def freeze(self, values: list[float]) -> None:
        """Take the range of ``values`` (cross-entropies of random subnets); a degenerate one is widened."""
        lo, hi = float(min(values)), float(max(values))
        self.lo, self.hi = lo, (hi if hi - lo > 1e-6 else lo + 1.0)

    def normalise(self, ce: torch.Tensor) -> torch.Tensor:
        if not self.frozen:
            raise RuntimeError("the cross-entropy range is not measured yet")
        assert self.lo is not None and self.hi is not None
        return (ce - self.lo) / (self.hi - self.lo)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *[int(k) for k in keys]])


def _gen(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(0, 2 ** 62)))


def draw_preferences(rng: np.random.Generator, m: int, n: int) -> np.ndarray:
    """``n`` preferences ~ Dirichlet(1, ..., 1). For two objectives the draw is stratified (one
    uniform draw of r_0 per 1/n slice, then shuffled): the same distribution, lower variance."""
    if m == 2 and n > 1:
        r0 = (np.arange(n) + rng.random(n)) / n
        r0 = rng.permutation(r0)
        return np.stack([r0, 1.0 - r0], axis=1)
    return rng.dirichlet(np.ones(m), size=n)


def mean_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the per-decision categoricals of ``logits [L, P, n, k]``, per leading
    row ``[L]``; masked choices (probability 0) add nothing."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1).mean(dim=(1, 2))


def error_range(surrogate: Any, quantile: float, space: Space) -> tuple[float, float]:
    """(smallest predicted error, ``quantile`` of predicted errors) over the space (every architecture
    where it is enumerable, else its seeded ``span`` sample)."""
    with torch.no_grad():
        err = surrogate.error(torch.as_tensor(space.encode(space.span()))).numpy()
    lo, hi = float(err.min()), float(np.quantile(err, quantile))
    return lo, hi if hi > lo else lo + 1.0


class Trainer:
    """Holds the hypernetwork, its optimiser, the sampler and (supernet mode) the supernet."""

    def __init__(self, cfg: SearchConfig, devices: list[SearchDevice], ctx: DistContext | None = None,
                 surrogate: Any = None, images: Any = None) -> None:
        self.cfg, self.devices = cfg, devices
        self.ctx = ctx or DistContext()
        self.objectives = list(cfg.objectives)
        self.cost_objectives = self.objectives[1:]
        torch.manual_seed(cfg.seed)
        emb_dim = len(devices[0].embedding)
        self.space = get_space(cfg.space)
        self.hypernet_args: dict[str, Any] = {"n_objectives": len(self.objectives), "emb_dim": emb_dim,
                                              **hypernet_layout(self.space), **cfg.hypernet.kwargs}
        self.hypernet = build_hypernet(cfg.hypernet.kind, **self.hypernet_args)
        self.params = [p for p in self.hypernet.parameters() if p.requires_grad]
        self.h_opt = torch.optim.Adam(self.params, lr=cfg.hypernet.lr, betas=(0.5, 0.999),
                                      weight_decay=cfg.hypernet.weight_decay)
        self.sampler = get_sampler(cfg.hypernet.sampler)
        self.logit_shape = (self.hypernet.n_decisions, self.hypernet.n_choices)
        self.emb = torch.tensor(np.stack([d.embedding for d in devices]), dtype=torch.float32)
        self.surrogate = surrogate
        if surrogate is not None:
            self.err_range = error_range(surrogate, cfg.benchmark.error_quantile, self.space)
        self.images = images
        self.supernet: Any = None
        self.ce_range = FixedRange()
        if cfg.accuracy == "supernet":
            sup = cfg.supernet
            self.supernet = self.space.build_supernet(images.num_classes, sup)
            self.w_opt = torch.optim.SGD(self.supernet.parameters(), lr=sup.lr, momentum=sup.momentum,
                                         weight_decay=sup.weight_decay, nesterov=False)

    # -- one hypernetwork step ---------------------------------------------------------------
    def _apply_mgd(self, rows: dict[int, torch.Tensor], stats: dict[int, torch.Tensor]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gather per-device gradients from every rank, MGD-combine, take an Adam step on H."""
        n = len(self.devices)
        sizes = [p.numel() for p in self.params]
        grads_all = self.ctx.gather_rows(rows, n, sum(sizes))
        info = self.ctx.gather_rows(stats, n, 1 + len(self.objectives))
        direction, gamma = mgd_combine(grads_all, max_iter=self.cfg.scalarisation.mgd_max_iter,
                                       tol=self.cfg.scalarisation.mgd_tol)
        self.h_opt.zero_grad(set_to_none=False)
        offset = 0
        for p, size in zip(self.params, sizes):
            p.grad = direction[offset:offset + size].reshape(p.shape).clone()
            offset += size
        self.h_opt.step()
        return info[:, 0].numpy(), info[:, 1:].numpy(), gamma

    def _flat(self, grads: tuple[torch.Tensor | None, ...]) -> torch.Tensor:
        return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                          for g, p in zip(grads, self.params)])

    def _h_step(self, loss_fn: Callable[[int, np.random.Generator], tuple[torch.Tensor, list[float]]],
                epoch: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows: dict[int, torch.Tensor] = {}
        stats: dict[int, torch.Tensor] = {}
        for t in self.ctx.shard(len(self.devices)):
            loss, terms = loss_fn(t, _rng(self.cfg.seed, epoch, step, t, 1))
            rows[t] = self._flat(torch.autograd.grad(loss, self.params, allow_unused=True))
            stats[t] = torch.tensor([float(loss.detach())] + terms)
        return self._apply_mgd(rows, stats)

    def _h_step_benchmark(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All of this rank's devices in one forward pass; per-device gradients by a batched
        backward (one vector-Jacobian product per device)."""
        local = self.ctx.shard(len(self.devices))
        if not local:
            return self._apply_mgd({}, {})
        p, m = self.cfg.benchmark.prefs_per_step, len(self.objectives)
        rngs = [_rng(self.cfg.seed, epoch, step, t, 1) for t in local]
        r = torch.tensor(np.stack([draw_preferences(g, m, p) for g in rngs]), dtype=torch.float32)  # [L, P, M]
        d = self.emb[local].repeat_interleave(p, dim=0)
        logits = self.hypernet(r.reshape(-1, m), d)                          # [L*P, n, k]
        # gradient w.r.t. the logits in one backward (each row belongs to one device) ...
        leaf = logits.detach().requires_grad_(True)
        per_dev = leaf.reshape(len(local), p, *self.logit_shape)
        onehot = torch.cat([self.hypernet.flatten(self.sampler(per_dev[k], _gen(g))) for k, g in enumerate(rngs)])
        lo, hi = self.err_range
        err = ((self.surrogate.error(onehot) - lo) / (hi - lo)).reshape(len(local), p)
        terms = [err]
        for obj in self.cost_objectives:
            terms.append(torch.stack([self.devices[t].cost_terms(onehot[k * p:(k + 1) * p], [obj])[0]
                                      for k, t in enumerate(local)]))
        objs = torch.stack(terms, dim=-1)                     # [L, P, M]
        losses = self._scalarise(objs, r).mean(dim=-1)        # [L]
        total = losses - self._entropy_weight(epoch) * mean_entropy(per_dev)
        (g_logits,) = torch.autograd.grad(total.sum(), leaf)
        # ... then one vector-Jacobian product of the hypernetwork per device (rows masked)
        mask = torch.eye(len(local)).repeat_interleave(p, dim=1)             # [L, L*P]
        batched = mask[:, :, None, None] * g_logits.unsqueeze(0)
        grads = torch.autograd.grad(logits, self.params, grad_outputs=batched, is_grads_batched=True,
                                    allow_unused=True)
        flat = torch.cat([(g if g is not None else torch.zeros(len(local), *prm.shape)).reshape(len(local), -1)
                          for g, prm in zip(grads, self.params)], dim=1)
        means = objs.detach().mean(dim=1)
        rows = {t: flat[k] for k, t in enumerate(local)}
        stats = {t: torch.cat([losses[k].detach().reshape(1), means[k]]) for k, t in enumerate(local)}
        return self._apply_mgd(rows, stats)

    def _supernet_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> Callable[[int, np.random.Generator], tuple[torch.Tensor, list[float]]]:
        x, y = batch

        def fn(t: int, rng: np.random.Generator) -> tuple[torch.Tensor, list[float]]:
            """Mean over ``supernet.prefs_per_step`` preferences of the scalarised objectives of the subnet
            the hypernetwork samples for each (one supernet forward per preference)."""
            n_pref = self.cfg.supernet.prefs_per_step
            r = torch.tensor(rng.dirichlet(np.ones(len(self.objectives)), size=n_pref), dtype=torch.float32)
            logits = self.hypernet(r, self.emb[t].reshape(1, -1).expand(n_pref, -1))
            losses, stats = [], []
            for p in range(n_pref):
                a = self.hypernet.flatten(self.sampler(logits[p], _gen(rng)))
                ce = F.cross_entropy(self.space.supernet_logits(self.supernet, x, a), y)
                terms = [self.ce_range.normalise(ce)] + self.devices[t].cost_terms(a.reshape(1, -1), self.cost_objectives)
                objs = torch.stack([v.reshape(()) for v in terms])
                losses.append(self._scalarise(objs, r[p]))
                stats.append([float(ce.detach())] + [float(v) for v in objs.detach()[1:]])
            return torch.stack(losses).mean(), [float(v) for v in np.mean(stats, axis=0)]

        return fn

    def _entropy_weight(self, epoch: int) -> float:
        """The entropy bonus of this epoch: ``benchmark.entropy_bonus`` annealed linearly to 0 at the last epoch."""
        cfg = self.cfg
        return float(cfg.benchmark.entropy_bonus) * (1.0 - epoch / max(1, cfg.epochs - 1))

    def _scalarise(self, objs: torch.Tensor, prefs: torch.Tensor) -> torch.Tensor:
        sc = self.cfg.scalarisation
        return scalarise(objs, prefs, sc.kind, sc.smooth_mu, sc.ideal_point)

    def _measure_ce_range(self, epoch: int) -> None:
        """Freeze the error term's scale: the cross-entropies of ``supernet.ce_range_subnets`` uniformly random
        subnets on architecture-half batches, in training mode as the hypernetwork steps see them
        (batch-norm buffers restored afterwards; the same on every rank: same weights, same keys)."""
        from modnas.toolkit.search.layout import bn_state, restore_buffers

        (_, _), (xa, ya), _ = self.images_split
        batches = self._batches(xa, ya, epoch, 5) or [(xa, ya)]
        rng = _rng(self.cfg.seed, epoch, 5)
        saved = bn_state(self.supernet)
        values = []
        with torch.no_grad():
            for k in range(self.cfg.supernet.ce_range_subnets):
                x, y = batches[k % len(batches)]
                values.append(float(F.cross_entropy(self.space.supernet_logits(self.supernet, x, self._random_onehot(rng)), y)))
        restore_buffers(self.supernet, saved)
        self.ce_range.freeze(values)

    def _random_onehot(self, rng: np.random.Generator) -> torch.Tensor:
        """A uniformly random architecture as a flat one-hot (the warm-up's subnets)."""
        space = self.space
        arch = space.from_indices([int(rng.integers(len(d.choices))) for d in space.decisions])
        return torch.as_tensor(space.encode([arch])[0])

    def _w_step(self, batch: tuple[torch.Tensor, torch.Tensor], epoch: int, step: int, warmup: bool = False) -> float:
        """One SGD step of the supernet on the devices' sampled subnets (uniformly random ones in warm-up)."""
        x, y = batch
        n = len(self.devices)
        self.w_opt.zero_grad(set_to_none=False)
        total = torch.zeros(1)
        for t in self.ctx.shard(n):
            rng = _rng(self.cfg.seed, epoch, step, t, 2)
            if warmup:
                a = self._random_onehot(rng)
            else:
                r = torch.tensor(rng.dirichlet(np.ones(len(self.objectives)), size=1), dtype=torch.float32)
                with torch.no_grad():
                    logits = self.hypernet(r, self.emb[t].reshape(1, -1))[0]
                a = self.hypernet.flatten(self.sampler(logits, _gen(rng))).detach()
            loss = F.cross_entropy(self.space.supernet_logits(self.supernet, x, a), y) / n
            loss.backward()
            total += float(loss.detach())
            if not warmup:
                for _ in range(self.cfg.supernet.random_subnets or 0):  # keep every subnet trained, not only the chosen
                    extra = F.cross_entropy(self.space.supernet_logits(self.supernet, x, self._random_onehot(rng)), y) / n
                    extra.backward()
        if self.ctx.world > 1:
            for prm in self.supernet.parameters():
                if prm.grad is not None:
                    self.ctx.all_reduce_(prm.grad)
            self.ctx.all_reduce_(total)
        torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), self.cfg.supernet.grad_clip)
        self.w_opt.step()
        return float(total)

    # -- epochs ------------------------------------------------------------------------------
    def _batches(self, x: torch.Tensor, y: torch.Tensor, epoch: int, salt: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(int(_rng(self.cfg.seed, epoch, salt).integers(0, 2 ** 62)))
        perm = torch.randperm(len(x), generator=gen)
        bs = self.cfg.supernet.batch_size
        return [(x[perm[s:s + bs]], y[perm[s:s + bs]]) for s in range(0, len(x) - bs + 1, bs)]

    def train(self, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        cfg = self.cfg
        history: list[dict[str, Any]] = []
        sched = None
        if self.supernet is not None:
            (xw, yw), (xa, ya), _ = self.images_split
            steps = min(len(xw), len(xa)) // cfg.supernet.batch_size
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, T_max=max(1, cfg.epochs * steps),
                                                               eta_min=cfg.supernet.lr_min)
        for epoch in range(cfg.epochs):
            t0 = time.perf_counter()
            self.sampler.set_progress(epoch / max(1, cfg.epochs - 1))
            losses, terms, gammas, w_losses = [], [], [], []
            if self.supernet is None:
                for step in range(cfg.benchmark.steps_per_epoch):
                    loss, term, gamma = self._h_step_benchmark(epoch, step)
                    losses.append(loss), terms.append(term), gammas.append(gamma.max())
            else:
                self.supernet.train()
                (xw, yw), (xa, ya), _ = self.images_split
                warmup = epoch < (cfg.supernet.warmup_epochs or 0)
                if not warmup and not self.ce_range.frozen:
                    self._measure_ce_range(epoch)
                for step, (wb, ab) in enumerate(zip(self._batches(xw, yw, epoch, 3), self._batches(xa, ya, epoch, 4))):
                    if not warmup:
                        loss, term, gamma = self._h_step(self._supernet_loss(ab), epoch, step)
                        losses.append(loss), terms.append(term), gammas.append(gamma.max())
                    w_losses.append(self._w_step(wb, epoch, step, warmup=warmup))
                    assert sched is not None
                    sched.step()
                for buf in self.supernet.buffers():
                    self.ctx.broadcast_(buf)
            row: dict[str, Any] = {"epoch": epoch + 1, "loss": None, "loss_per_device": {}, "terms": {},
                                   "gamma_max": None, "h_lr": cfg.hypernet.lr,
                                   "tau": float(getattr(self.sampler, "tau", 1.0))}
            if losses:
                loss_arr, term_arr = np.stack(losses), np.stack(terms)
                row.update({
                    "loss": float(loss_arr.mean()),
                    "loss_per_device": {d.name: float(v) for d, v in zip(self.devices, loss_arr.mean(axis=0))},
                    "terms": {o if (o != "error" or self.supernet is None) else "ce_arch": float(v)
                              for o, v in zip(self.objectives, term_arr.mean(axis=(0, 1)))},
                    "gamma_max": float(np.mean(gammas)),
                })
            else:
                row["warmup"] = True
            row["seconds"] = time.perf_counter() - t0
            if self.supernet is not None:
                row["ce_train"] = float(np.mean(w_losses))
                if self.ce_range.frozen:
                    row["ce_range"] = [self.ce_range.lo, self.ce_range.hi]
                row["w_lr"] = float(self.w_opt.param_groups[0]["lr"])
            history.append(row)
            if on_epoch is not None:
                on_epoch(row)
        return history

    @property
    def images_split(self) -> Any:
        if not hasattr(self, "_split"):
            from modnas.toolkit.data.datasets import split_three

            self._split = split_three(self.images, self.cfg.seed)
        return self._split


__all__ = ["FixedRange", "SearchDevice", "Trainer"]
