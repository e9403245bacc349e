"""Train one gpt architecture on text, with a held-out split and a resumable checkpoint.

The recipe is nanoGPT's for characters: AdamW (betas 0.9/0.99, weight decay 0.1 on matrices and
embeddings only), learning rate 1e-3 warmed up linearly over the first ``warmup`` steps (100, at most
a tenth of the run) then cosine-decayed to 1e-4 at the last step (torch's ``LinearLR`` then
``CosineAnnealingLR``), gradients clipped to norm 1, no dropout. Each step takes ``batch`` windows of
``context`` characters at random offsets of the training text (seeded by the step, so a resumed run
draws the batches an uninterrupted one would).

A checkpoint is one safetensors file (``checkpoint.safetensors`` in ``out``), laid out as the image
path's: the network under ``model.``, AdamW's state under ``optim.<parameter>.<key>``, and the
metadata (architecture, vocabulary, text digest, recipe, steps done, scheduler state, losses) as JSON
in the header, with ``checkpoint.json`` beside it as a readable copy. Both are written to a temporary
file and renamed into place every ``save_every`` steps and at the end; no pickle. ``steps`` is the
total: a second call with more continues, its schedule spread over the new total from where the first
stopped. Losses are cross-entropy in nats per token (per character) on the held-out last 10 % of the
text (every position once; 200 evenly spaced windows at the saves before a call's last step) and on as
many training windows.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, TextIO

import torch
import torch.nn.functional as F

from modnas.toolkit.checkpoints import read_checkpoint_file, write_checkpoint_file
from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces.gpt.arch import MAX_CONTEXT, Arch, canonical, parse_arch
from modnas.toolkit.spaces.gpt.model import GPT, GPTConfig
from modnas.toolkit.threads import torch_threads
from modnas.toolkit.spaces.gpt.text import (Corpus, Vocabulary, check_length, eval_windows, random_batch, read_text,
                                            split_heldout)

CHECKPOINT_NAME = "checkpoint.safetensors"
FORMAT = "modnas-lm-checkpoint-1"
SPACE = "gpt"


@dataclass(frozen=True)
class LMRecipe:
    """The optimisation settings a checkpoint records (a resumed training keeps them)."""

    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 100
    beta1: float = 0.9
    beta2: float = 0.99
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.lr > 0 or not 0 <= self.min_lr <= self.lr:
            raise BadInput(f"learning rates must satisfy 0 <= min_lr <= lr and lr > 0, got {self.lr}, {self.min_lr}")
        if self.warmup < 0 or self.grad_clip <= 0 or self.weight_decay < 0:
            raise BadInput("warmup and weight decay must be >= 0 and the gradient clip > 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise BadInput("AdamW betas must lie in [0, 1)")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "LMRecipe":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise BadInput(f"unknown recipe field(s) {', '.join(unknown)}")
        return cls(**doc)


def model_config(arch: Arch | str, vocab_size: int, context: int = MAX_CONTEXT) -> GPTConfig:
    """The network's shape for an architecture of the space."""
    a = parse_arch(arch)
    return GPTConfig(vocab_size=int(vocab_size), width=a.width, heads=a.heads, mlp=a.mlp, context=int(context))


def build_model(arch: Arch | str, vocab_size: int, context: int = MAX_CONTEXT, seed: int | None = None) -> GPT:
    """A fresh network, its initial weights drawn from ``seed`` when given (torch's global RNG untouched)."""
    if seed is None:
        return GPT(model_config(arch, vocab_size, context))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT(model_config(arch, vocab_size, context))


# -- checkpoint files --------------------------------------------------------------------------------
def optimizer_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimiser's per-parameter state as ``<parameter>.<key>`` tensors."""
    out: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        for key, value in optimizer.state.get(p, {}).items():
            out[f"{name}.{key}"] = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
    return out


def restore_optimizer(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, torch.Tensor],
                      source: str) -> None:
    """Put back what :func:`optimizer_tensors` saved; state of another network is bad input."""
    params = dict(model.named_parameters())
    per: dict[str, dict[str, torch.Tensor]] = {}
    for full, value in state.items():
        name, _, key = full.rpartition(".")
        if name not in params:
            raise BadInput(f"{source}: its optimiser state does not fit the network")
        per.setdefault(name, {})[key] = value.clone()
    for name, entry in per.items():
        optimizer.state[params[name]] = entry


def write_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                     meta: dict[str, Any]) -> None:
    """The checkpoint and its readable JSON copy, each through a temporary file and a rename."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if optimizer is not None:
        state = optimizer_tensors(model, optimizer)
        tensors.update({f"optim.{k}": v.detach().cpu().contiguous() for k, v in state.items()})
    write_checkpoint_file(path, tensors, FORMAT, meta)


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a gpt checkpoint; a missing, truncated or foreign file is bad input."""
    return read_checkpoint_file(path, FORMAT, "language-model",
                                ("kind", "arch", "space", "steps", "build", "vocab", "text_digest", "recipe"))


def _model_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def _optim_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("optim."):]: v for k, v in tensors.items() if k.startswith("optim.")}


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load exactly the model's tensors; any other set or shape is bad input."""
    want = model.state_dict()
    if set(want) != set(state) or any(want[k].shape != state[k].shape for k in want):
        raise BadInput(f"{source}: its tensors do not fit the architecture's network")
    model.load_state_dict(state)


def load_lm(path: str | Path, arch: str | None = None) -> tuple[GPT, Vocabulary, dict[str, Any]]:
    """The trained network (eval mode), its vocabulary and the checkpoint's metadata; a checkpoint of
    another architecture than ``arch`` (or a supernet's) is bad input."""
    tensors, meta = read_checkpoint(path)
    if meta["kind"] != "model":
        raise BadInput(f"{path}: a gpt {meta['kind']} checkpoint, not one network's")
    if arch is not None and canonical(arch) != meta["arch"]:
        raise BadInput(f"{path}: a checkpoint of another architecture ({meta['arch']})")
    model = GPT(model_config(meta["arch"], **meta["build"]))
    load_state(model, _model_state(tensors), str(path))
    return model.eval(), Vocabulary.from_json(meta["vocab"]), meta


# -- schedule, evaluation ----------------------------------------------------------------------------
def warmup_steps(steps: int, recipe: LMRecipe) -> int:
    """The recipe's warm-up, at most a tenth of the run."""
    return min(recipe.warmup, steps // 10)


def lr_schedule(optimizer: torch.optim.Optimizer, steps: int, recipe: LMRecipe, start: int = 0,
                saved: dict[str, Any] | None = None) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up then cosine decay to ``min_lr`` over ``steps`` steps, placed at step ``start``:
    from ``saved`` (a checkpoint's scheduler state) when it is this schedule at that step, else by
    stepping it there (a resume to a new total spreads the schedule over the new total)."""
    warm = warmup_steps(steps, recipe)
    with warnings.catch_warnings():  # stepping before any optimiser step is the point here
        warnings.filterwarnings("ignore", message=".*lr_scheduler.*", category=UserWarning)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps - warm),
                                                            eta_min=recipe.min_lr)
        if warm:
            linear = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (warm + 1), total_iters=warm)
            scheduler: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.SequentialLR(
                optimizer, [linear, cosine], milestones=[warm])
        else:
            scheduler = cosine
        if saved and saved.get("steps") == steps and saved.get("state", {}).get("last_epoch") == start:
            scheduler.load_state_dict(saved["state"])
            for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr()):
                group["lr"] = lr
            return scheduler
        for _ in range(start):
            scheduler.step()
    return scheduler


def make_optimizer(model: torch.nn.Module, recipe: LMRecipe) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings, none on biases and LayerNorm gains."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=recipe.lr, betas=(recipe.beta1, recipe.beta2))


@torch.no_grad()
def mean_loss(logits_of: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
              batch: int = 64) -> float:
    """Mean next-token cross-entropy (nats per token) of ``logits_of`` over windows ``x``, targets ``y``."""
    total, count = 0.0, 0
    for i in range(0, len(x), batch):
        logits = logits_of(x[i:i + batch])
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[i:i + batch].reshape(-1),
                                       reduction="sum"))
        count += y[i:i + batch].numel()
    return total / max(1, count)


def split_losses(logits_of: Callable[[torch.Tensor], torch.Tensor], train: torch.Tensor, held: torch.Tensor,
                 context: int, max_windows: int | None = None) -> dict[str, float]:
    """Held-out loss over every held-out position (or ``max_windows`` evenly spaced windows); training
    loss over as many evenly spaced training windows."""
    xh, yh = eval_windows(held, context, max_windows)
    xt, yt = eval_windows(train, context, max_windows=max(1, len(xh)))
    return {"train": round(mean_loss(logits_of, xt, yt), 5), "heldout": round(mean_loss(logits_of, xh, yh), 5)}


def batch_seed(recipe: LMRecipe, step: int) -> int:
    """The seed of step ``step``'s batch (and anything else the step draws)."""
    return recipe.seed * 1_000_003 + step


# -- the training loop, shared with the supernet ------------------------------------------------------
StepFn = Callable[[torch.Tensor, torch.Tensor, int, torch.Generator], float]
LossFn = Callable[[torch.Tensor, torch.Tensor, int | None], dict[str, Any]]
PERIODIC_WINDOWS = 200  # held-out windows of the evaluations between a call's start and its end


@dataclass
class Session:
    """What a training call works on: the network, its text and the checkpoint's state so far."""

    kind: str
    arch: str
    model: torch.nn.Module
    build: dict[str, Any]
    corpus: Corpus
    vocab: Vocabulary
    context: int
    batch: int
    recipe: LMRecipe
    out: Path
    done: int = 0
    meta: dict[str, Any] | None = None
    optim_state: dict[str, torch.Tensor] | None = None
    origin: str = "scratch"
    extra_meta: dict[str, Any] | None = None

    @property
    def checkpoint(self) -> Path:
        return self.out / CHECKPOINT_NAME


def open_session(kind: str, arch: str, text: str | Path | Corpus, context: int, batch: int, out: Path, *,
                 make_model: Callable[[Vocabulary], tuple[torch.nn.Module, dict[str, Any]]],
                 data_dir: str | Path | None = None, recipe: LMRecipe | None = None) -> Session:
    """Read the text, then resume the checkpoint in ``out`` (refusing one of another network, text or
    setting) or start a fresh network with ``make_model(vocab)`` -> (model, build kwargs)."""
    if isinstance(context, bool) or not isinstance(context, int) or not 1 <= context <= MAX_CONTEXT:
        raise BadInput(f"--context must be 1..{MAX_CONTEXT}, got {context}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise BadInput(f"--batch must be at least 1, got {batch}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: not a directory")
    corpus = text if isinstance(text, Corpus) else read_text(text, data_dir)
    path = out / CHECKPOINT_NAME
    if not path.exists():
        vocab = Vocabulary.from_text(corpus.text)
        model, build = make_model(vocab)
        return Session(kind, arch, model, build, corpus, vocab, context, batch, recipe or LMRecipe(), out)
    tensors, meta = read_checkpoint(path)
    if meta["space"] != SPACE or meta["kind"] != kind or meta["arch"] != arch:
        what = f"{meta['kind']} {meta['arch']}" if meta["kind"] != "model" else meta["arch"]
        raise BadInput(f"{path}: holds a checkpoint of {meta['space']} {what}; train {arch} into another --out")
    if meta["text_digest"] != corpus.digest:
        raise BadInput(f"{path}: trained on other text (digest differs); use another --out")
    for key, value in (("context", context), ("batch", batch)):
        if meta.get(key) != value:
            raise BadInput(f"{path}: trained with --{key} {meta.get(key)}; resume with the same")
    saved_recipe = LMRecipe.from_json(meta["recipe"])
    if recipe is not None and recipe != saved_recipe:
        raise BadInput(f"{path}: trained with another recipe ({meta['recipe']}); resume with the same")
    vocab = Vocabulary.from_json(meta["vocab"])
    model, _ = make_model(vocab)
    load_state(model, _model_state(tensors), str(path))
    return Session(kind, arch, model, dict(meta["build"]), corpus, vocab, context, batch, saved_recipe, out,
                   done=int(meta["steps"]), meta=meta, optim_state=_optim_state(tensors),
                   origin=meta.get("initial_weights", "scratch"))


def run_session(s: Session, steps: int, step_fn: StepFn, losses: LossFn, *, until: int | None = None,
                save_every: int = 500, quiet: bool = False, stream: TextIO | None = None,
                label: str | None = None) -> dict[str, Any]:
    """Train from the session's step to ``until`` (default ``steps``) of a ``steps``-step schedule:
    ``step_fn(x, y, step, generator)`` runs the forward and backward passes of one batch and returns
    its loss; then the gradients are clipped and AdamW and the schedule step. ``losses(train, held,
    max_windows)`` evaluates at every save: on every held-out window at the call's last step, on
    :data:`PERIODIC_WINDOWS` of them at the saves before it."""
    stream = stream or sys.stderr
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise BadInput(f"--steps must be at least 1, got {steps}")
    stop = steps if until is None else min(int(until), steps)
    if stop < 0:
        raise BadInput(f"until must be >= 0, got {until}")
    if save_every < 1:
        raise BadInput(f"save_every must be at least 1, got {save_every}")
    tokens = s.vocab.encode(s.corpus.text)
    train, held = split_heldout(tokens)
    check_length(train, s.context, "training")
    check_length(held, s.context, "held-out")
    model, recipe = s.model, s.recipe
    optimizer = make_optimizer(model, recipe)
    if s.optim_state:
        restore_optimizer(model, optimizer, s.optim_state, str(s.checkpoint))
    scheduler = lr_schedule(optimizer, steps, recipe, s.done, (s.meta or {}).get("scheduler"))
    meta = dict(s.meta or {})
    history = list(meta.get("history", []))
    result_losses = meta.get("loss")
    label = label or s.arch[:32]
    seconds_before = float(meta.get("train_seconds", 0.0))
    started = time.monotonic()
    if s.done and s.done < stop and not quiet:
        stream.write(f"train: resuming {s.checkpoint} after step {s.done}, to {stop} of {steps} steps\n")
    params = [p for p in model.parameters() if p.requires_grad]
    running, seen = 0.0, 0
    model.train()
    for step in range(s.done, stop):
        gen = torch.Generator().manual_seed(batch_seed(recipe, step))
        x, y = random_batch(train, s.context, s.batch, gen)
        optimizer.zero_grad(set_to_none=True)
        loss = step_fn(x, y, step, gen)
        torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
        optimizer.step()
        scheduler.step()
        if not math.isfinite(loss):
            raise BadInput(f"training diverged at step {step + 1} (loss {loss}); lower the learning rate")
        running += loss
        seen += 1
        done = step + 1
        if done % save_every == 0 or done == stop:
            model.eval()
            result_losses = losses(train, held, None if done == stop else PERIODIC_WINDOWS)
            model.train()
            history.append({"step": done, "loss": round(running / max(1, seen), 5), **result_losses,
                            "seconds": round(time.monotonic() - started, 2)})
            running, seen = 0.0, 0
            meta = {"kind": s.kind, "space": SPACE, "arch": s.arch, "build": s.build, "vocab": s.vocab.to_json(),
                    "text": s.corpus.source, "text_digest": s.corpus.digest,
                    "tokens": {"train": len(train), "heldout": len(held)}, "context": s.context, "batch": s.batch,
                    "recipe": asdict(recipe), "steps": done, "schedule_steps": steps,
                    "scheduler": {"steps": steps, "state": scheduler.state_dict()},
                    "initial_weights": s.origin, "loss": result_losses, "history": history,
                    "train_seconds": round(seconds_before + time.monotonic() - started, 2),
                    "torch_version": torch.__version__, **(s.extra_meta or {})}
            write_checkpoint(s.checkpoint, model, optimizer, meta)
            if not quiet:
                stream.write(f"train {label}: step {done}/{steps} loss {history[-1]['loss']:.4f} "
                             f"held-out {result_losses['heldout']:.4f} {time.monotonic() - started:.1f}s\n")
                stream.flush()
    model.eval()
    if s.done >= stop and not quiet:
        stream.write(f"train: {s.checkpoint} already holds {s.done} steps (asked for {stop}); nothing to do\n")
    if result_losses is None:  # asked for 0 steps of a fresh network
        result_losses = losses(train, held, None)
    return {"arch": s.arch, "checkpoint": str(s.checkpoint), "steps": max(s.done, stop),
            "seconds": round(time.monotonic() - started, 2), "loss": result_losses, "space": SPACE,
            "schedule_steps": steps, "context": s.context, "batch": s.batch, "vocab_size": s.vocab.size,
            "text": s.corpus.source, "tokens": {"train": len(train), "heldout": len(held)},
            "initial_weights": s.origin, "threads": torch.get_num_threads()}


def train_lm(arch: str, text: str | Path | Corpus, context: int = 64, batch: int = 12, steps: int = 2000,
             out: str | Path = "lm", *, data_dir: str | Path | None = None, recipe: LMRecipe | None = None,
             until: int | None = None, save_every: int = 500, init: dict[str, torch.Tensor] | None = None,
             init_origin: str = "given weights", threads: int | None = None, quiet: bool = False,
             stream: TextIO | None = None) -> dict[str, Any]:
    """Train (or resume training) ``arch`` on ``text`` to ``steps`` steps in all; with ``until``, stop
    after that step of the schedule (a later call continues). ``init`` starts a fresh network from these
    weights (e.g. a supernet's subnet). Returns ``{"arch", "checkpoint", "steps", "seconds",
    "loss": {"train", "heldout"}, ...}`` (nats per character)."""
    arch = canonical(arch)
    recipe_seed = (recipe or LMRecipe()).seed

    def make_model(vocab: Vocabulary) -> tuple[torch.nn.Module, dict[str, Any]]:
        build = {"vocab_size": vocab.size, "context": MAX_CONTEXT}
        return build_model(arch, seed=recipe_seed, **build), build

    with torch_threads(threads):
        session = open_session("model", arch, text, context, batch, Path(out), make_model=make_model,
                               data_dir=data_dir, recipe=recipe)
        if init is not None and session.meta is None:
            load_state(session.model, dict(init), init_origin)
            session.origin = init_origin
        model = session.model

        def step_fn(x: torch.Tensor, y: torch.Tensor, step: int, gen: torch.Generator) -> float:
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            loss.backward()
            return float(loss.detach())

        def losses(train: torch.Tensor, held: torch.Tensor, max_windows: int | None) -> dict[str, Any]:
            return split_losses(model, train, held, context, max_windows)

        return run_session(session, steps, step_fn, losses, until=until, save_every=save_every, quiet=quiet,
                           stream=stream)


__all__ = ["CHECKPOINT_NAME", "FORMAT", "LMRecipe", "Session", "build_model", "load_lm", "load_state", "lr_schedule",
           "make_optimizer", "mean_loss", "model_config", "open_session", "read_checkpoint", "restore_optimizer",
           "run_session", "split_losses", "torch_threads", "train_lm", "warmup_steps", "write_checkpoint"]
