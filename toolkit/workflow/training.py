"""``modnas train``: train one architecture on images, with a held-back split and a resumable checkpoint.

The recipe is NAS-Bench-201's: SGD (momentum 0.9, Nesterov), learning rate 0.1 on a per-step cosine
schedule over the requested epochs, weight decay 5e-4, random crop with 4 pixels of zero padding and
horizontal flips. Digits are not flipped (a mirrored 2 or 5 is another glyph); they keep the crop.

A checkpoint is one safetensors file (``checkpoint.safetensors`` in ``--out``): the network's tensors
under ``model.``, SGD's momentum buffers under ``optim.``, and the metadata (architecture, space, data
digest, split, recipe, epochs done, accuracy, the learning-rate scheduler's state) as JSON in the file's
header; ``checkpoint.json`` beside it is a readable copy. Both are replaced atomically after each epoch, so an interrupted training
resumes from its last finished epoch. ``--epochs`` is the total: a second call with more continues,
its cosine schedule spread over the new total from where the first stopped.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from pydantic import BaseModel, ConfigDict, Field

from modnas.toolkit.data.datasets import ImageData, data_digest, load_images, split_heldout
from modnas.toolkit.checkpoints import read_checkpoint_file, write_checkpoint_file
from modnas.toolkit.errors import BadInput
from modnas.toolkit.results import JsonDoc
from modnas.toolkit.spaces import Space, get_space
from modnas.toolkit.threads import torch_threads

CHECKPOINT_NAME = "checkpoint.safetensors"
FORMAT = "modnas-checkpoint-1"


class TrainRecipe(BaseModel):
    """The training settings a checkpoint records (a resumed training keeps them)."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    batch_size: int = Field(256, ge=1, le=65536)
    crop_padding: int = Field(4, ge=0, le=16)
    flip: bool = True
    seed: int = 0
    heldout_fraction: float = Field(0.2, gt=0, lt=1)


def default_batch_size(n_train: int) -> int:
    """256 (the benchmark's) for large sets; for small ones the power of two near n/20, at least 8,
    so that an epoch still takes a few dozen steps."""
    size = 8
    while size * 2 <= min(256, n_train / 20):
        size *= 2
    return size


# -- checkpoint files ------------------------------------------------------------------------------
def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata of a checkpoint; a missing, truncated or foreign file is BadInput."""
    return read_checkpoint_file(path, FORMAT, "training", ("arch", "space", "data_digest", "epochs", "build"))


def write_checkpoint(path: Path, model: torch.nn.Module, momentum: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write the checkpoint and its readable JSON copy, each through a temporary file and a rename."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"optim.{k}": v.detach().cpu().contiguous() for k, v in momentum.items()})
    write_checkpoint_file(path, tensors, FORMAT, meta)


def model_from_checkpoint(path: str | Path, space_name: str | None = None, arch: str | None = None
                          ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained network (eval mode) and the checkpoint's metadata; another space or architecture
    than the one asked for is BadInput."""
    tensors, meta = read_checkpoint(path)
    if space_name is not None and meta["space"] != space_name:
        raise BadInput(f"{path}: a checkpoint of the {meta['space']} space, not {space_name}")
    space = get_space(meta["space"])
    if arch is not None and space.canonical(arch) != meta["arch"]:
        raise BadInput(f"{path}: a checkpoint of another architecture ({meta['arch']})")
    model = space.build(meta["arch"], **meta["build"])
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    _load_state(model, state, str(path))
    return model.eval(), meta


def _load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    want = model.state_dict()
    if set(want) != set(state) or any(want[k].shape != state[k].shape for k in want):
        raise BadInput(f"{source}: its tensors do not fit the architecture's network")
    model.load_state_dict(state)


# -- the training loop ----------------------------------------------------------------------------
def _initial_model(space: Space, arch: str, num_classes: int, run: str | None
                   ) -> tuple[torch.nn.Module, dict[str, Any], str]:
    """From the run's supernet weights when it has them (the classifier too when the class count
    matches), else from scratch (seeded per architecture); returns the model, its build kwargs and
    where its weights came from."""
    from modnas.toolkit.workflow.artifacts import weights_seed

    build: dict[str, Any] = {"num_classes": num_classes}
    inherited = None
    if run is not None:
        from modnas.toolkit.search.run import load_run

        loaded_run = load_run(Path(run), space.name)
        inherited = loaded_run.subnet(arch)
        if inherited is not None:
            build.update(space.run_build_kwargs(loaded_run.config.supernet, loaded_run.meta.get("supernet_args")))
    torch.manual_seed(weights_seed(space.name, arch))
    model = space.build(arch, **build)
    if inherited is None:
        return model, build, "scratch"
    own = model.state_dict()
    loaded = {k: v for k, v in inherited.state_dict().items() if k in own and own[k].shape == v.shape}
    own.update(loaded)
    model.load_state_dict(own)
    return model, build, f"run:{Path(run).resolve()} ({len(loaded)}/{len(own)} tensors)"


def augment(x: torch.Tensor, padding: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding, then (optionally) a random horizontal flip, per image."""
    n, _, h, w = x.shape
    out = x
    if padding:
        padded = torch.nn.functional.pad(x, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None, :])  # [n, h]
        cols = (dx[:, None] + torch.arange(w)[None, :])  # [n, w]
        idx_n = torch.arange(n)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flip:
        mask = torch.rand(n, generator=gen) < 0.5
        out = torch.where(mask[:, None, None, None], out.flip(-1), out)
    return out.contiguous()


def _resize(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(shape[-2:]):
        return x
    return torch.nn.functional.interpolate(x, size=tuple(shape[-2:]), mode="bilinear", align_corners=False)


@torch.no_grad()
def top1_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    """Top-1 accuracy (a fraction) of ``model`` in eval mode."""
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(y), batch):
        correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    model.train(was)
    return correct / max(1, len(y))


def load_training_data(images: str, space: Space, arch: str, max_images: int | None = None) -> ImageData:
    """The images at the architecture's input resolution (32x32 for NB201)."""
    data = load_images(images, max_images=max_images)
    shape = tuple(space.input_shape(arch))
    if len(data) < 2:
        raise BadInput(f"{images}: need at least 2 images, found {len(data)}")
    return ImageData(_resize(data.x, shape), data.y, data.num_classes, data.source)


def heldout_images(meta: dict[str, Any], images: str | None = None) -> tuple[ImageData, torch.Tensor, torch.Tensor]:
    """The checkpoint's images (its source, or ``images``), checked by digest; training and held-back indices."""
    space = get_space(meta["space"])
    source = images or meta["images"]
    data = load_training_data(source, space, meta["arch"], meta.get("max_images"))
    if data_digest(data) != meta["data_digest"]:
        raise BadInput(f"{source}: not the images the checkpoint was trained on (data digest differs)")
    recipe = meta["recipe"]
    train_idx, held_idx = split_heldout(len(data), recipe["seed"], recipe["heldout_fraction"])
    return data, train_idx, held_idx


def cosine_schedule(optimiser: torch.optim.Optimizer, total_steps: int, start: int,
                    saved: dict[str, Any] | None = None) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """torch's cosine schedule from the optimiser's learning rate to 0 over ``total_steps`` steps, placed
    at step ``start``: from ``saved`` (a checkpoint's scheduler state) when it is this schedule at that
    step, else by stepping it there (a checkpoint written before the state was kept, or a resume to more
    epochs, which spreads the cosine over the new total from where the first call stopped)."""
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=total_steps)
    if saved and saved.get("T_max") == total_steps and saved.get("last_epoch") == start:
        scheduler.load_state_dict(saved)
        for group, lr in zip(optimiser.param_groups, scheduler.get_last_lr()):
            group["lr"] = lr  # the checkpoint keeps momentum buffers, not the optimiser's learning rate
        return scheduler
    with warnings.catch_warnings():  # stepping before any optimiser step is the point here
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler", category=UserWarning)
        for _ in range(start):
            scheduler.step()
    return scheduler


@dataclass
class Accuracy(JsonDoc):
    """Top-1 accuracy (fractions) on the training images and on the held-back ones."""

    train: float
    heldout: float


@dataclass
class TrainResult(JsonDoc):
    """``modnas train``: the checkpoint written, the epochs it holds and its accuracy."""

    arch: str
    checkpoint: str
    epochs: int
    accuracy: Accuracy
    space: str
    initial_weights: str
    batch_size: int
    images: dict[str, int]  # {"train", "heldout"}: how many of each
    seconds: float


def train_arch(arch: str, *, space_name: str | None = None, images: str | None = None, out: Path,
               epochs: int | None = None, batch_size: int | None = None, run: str | None = None, seed: int = 0,
               max_images: int | None = None, threads: int | None = None, quiet: bool = False,
               stream: TextIO | None = None, text: str | None = None, context: int | None = None,
               batch: int | None = None, steps: int | None = None, data_dir: str | Path | None = None
               ) -> Any:
    """Train (or resume training) ``arch`` to ``epochs`` in all; the reply of ``modnas train --json``.
    ``space_name`` defaults to the space ``run`` searched (nb201 without a run).
    ``threads`` is torch's thread count for this call only. A space whose networks take tokens trains
    on ``text`` for ``steps`` steps of ``batch`` windows of ``context`` tokens instead
    (:func:`modnas.toolkit.workflow.lm.train_lm_arch`, an ``LMTrainResult``; ``run`` a supernet checkpoint)."""
    from modnas.toolkit.search.api import space_of

    if space_name is not None and get_space(space_name).inputs == "tokens":
        from modnas.toolkit.workflow.lm import train_lm_arch

        for param, value in (("images", images), ("epochs", epochs), ("batch_size", batch_size),
                             ("max_images", max_images)):
            if value is not None:
                raise BadInput(f"`{param}` is for image networks; the {space_name} space trains on `text`",
                               param=(param, "text"))
        with torch_threads(threads):
            return train_lm_arch(get_space(space_name), arch, text=text, out=out, context=context, batch=batch,
                                 steps=steps, run=run, data_dir=data_dir, seed=seed, quiet=quiet, stream=stream)
    space_name = space_of(space_name, run)
    for param, value in (("text", text), ("context", context), ("batch", batch), ("steps", steps)):
        if value is not None:
            raise BadInput(f"`{param}` is for language models (--space gpt); {space_name} trains on `images`",
                           param=(param, "images"))
    if images is None:
        raise BadInput(f"`images` is needed to train a {space_name} network", param="images")
    epochs = 8 if epochs is None else epochs
    with torch_threads(threads):
        return _train_arch(arch, space_name=space_name, images=images, out=out, epochs=epochs, batch_size=batch_size,
                           run=run, seed=seed, max_images=max_images, quiet=quiet, stream=stream)


def _train_arch(arch: str, *, space_name: str, images: str, out: Path, epochs: int, batch_size: int | None,
                run: str | None, seed: int, max_images: int | None, quiet: bool, stream: TextIO | None
                ) -> TrainResult:
    """:func:`train_arch` with torch's thread count already set."""
    stream = stream or sys.stderr
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise BadInput(f"`epochs` must be at least 1, got {epochs}", param="epochs")
    if batch_size is not None and batch_size < 1:
        raise BadInput(f"`batch_size` must be at least 1, got {batch_size}", param="batch_size")
    if max_images is not None and max_images < 2:
        raise BadInput(f"`max_images` must be at least 2, got {max_images}", param="max_images")
    space = get_space(space_name)
    arch = space.canonical(arch)
    if out.exists() and not out.is_dir():
        raise BadInput(f"`out` {out}: not a directory", param="out")
    ckpt_path = out / CHECKPOINT_NAME
    data = load_training_data(images, space, arch, max_images)
    digest = data_digest(data)

    momentum: dict[str, torch.Tensor] = {}
    if ckpt_path.exists():
        tensors, meta = read_checkpoint(ckpt_path)
        if meta["space"] != space.name or meta["arch"] != arch:
            raise BadInput(f"{ckpt_path}: holds a checkpoint of {meta['space']} {meta['arch']}; "
                           f"train {arch} into another `out`", param="out")
        if meta["data_digest"] != digest:
            raise BadInput(f"{ckpt_path}: trained on other images (data digest differs); use another `out`",
                           param="out")
        recipe = TrainRecipe.model_validate(meta["recipe"])
        if batch_size is not None and batch_size != recipe.batch_size:
            raise BadInput(f"{ckpt_path}: trained with batch size {recipe.batch_size}; resume with the same")
        model = space.build(arch, **meta["build"])
        _load_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, str(ckpt_path))
        momentum = {k[6:]: v for k, v in tensors.items() if k.startswith("optim.")}
        done, origin = int(meta["epochs"]), meta.get("initial_weights", "scratch")
        build = meta["build"]
        history = list(meta.get("history", []))
    else:
        n_train_guess = len(data) - max(1, int(round(0.2 * len(data))))
        recipe = TrainRecipe(batch_size=batch_size or default_batch_size(n_train_guess), seed=seed,
                             flip=(images != "digits"))
        model, build, origin = _initial_model(space, arch, data.num_classes, run)
        done, history = 0, []
        meta = {}
    train_idx, held_idx = split_heldout(len(data), recipe.seed, recipe.heldout_fraction)
    x_train, y_train = data.x[train_idx], data.y[train_idx]
    x_held, y_held = data.x[held_idx], data.y[held_idx]
    params = dict(model.named_parameters())
    if momentum and set(momentum) != set(params):
        raise BadInput(f"{ckpt_path}: its optimiser state does not fit the network")
    started = time.monotonic()
    if done and done < epochs and not quiet:
        stream.write(f"train: resuming {ckpt_path} after epoch {done}, to {epochs} epochs\n")
    steps_per_epoch = math.ceil(len(y_train) / recipe.batch_size)
    total_steps = epochs * steps_per_epoch
    optimiser = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
    if momentum:
        for name, p in params.items():
            optimiser.state[p]["momentum_buffer"] = momentum[name].clone()
    scheduler = cosine_schedule(optimiser, total_steps, done * steps_per_epoch, meta.get("scheduler"))
    train_acc = float(meta.get("accuracy", {}).get("train", 0.0)) if meta else 0.0
    held_acc = float(meta.get("accuracy", {}).get("heldout", 0.0)) if meta else 0.0
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(done, epochs):
        model.train()
        gen = torch.Generator().manual_seed(recipe.seed * 100003 + epoch)
        order = torch.randperm(len(y_train), generator=gen)
        correct, seen, loss_sum = 0, 0, 0.0
        for step in range(steps_per_epoch):
            batch = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            if len(batch) < 2 and seen:  # a lone last image would break batch norm's statistics
                scheduler.step()
                continue
            xb = augment(x_train[batch], recipe.crop_padding, recipe.flip, gen)
            yb = y_train[batch]
            logits = model(xb)
            loss = loss_fn(logits, yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
            loss_sum += float(loss.detach()) * len(yb)
        train_acc = correct / max(1, seen)
        held_acc = top1_accuracy(model, x_held, y_held)
        history.append({"epoch": epoch + 1, "loss": round(loss_sum / max(1, seen), 5), "train": train_acc,
                        "heldout": held_acc})
        momentum = {name: optimiser.state[p]["momentum_buffer"] for name, p in params.items()
                    if "momentum_buffer" in optimiser.state[p]}
        source = str(images) if str(images) == "digits" else str(Path(images).resolve())
        meta = {"arch": arch, "space": space.name, "images": source, "max_images": max_images,
                "data_digest": digest, "num_images": len(data), "num_classes": data.num_classes,
                "train_images": len(y_train), "heldout_images": len(y_held), "recipe": recipe.model_dump(),
                "build": build, "initial_weights": origin, "epochs": epoch + 1, "schedule_epochs": epochs,
                "scheduler": scheduler.state_dict(),
                "accuracy": {"train": train_acc, "heldout": held_acc}, "history": history,
                "torch_version": torch.__version__}
        write_checkpoint(ckpt_path, model, momentum, meta)
        if not quiet:
            stream.write(f"train {arch_label(space, arch)}: epoch {epoch + 1}/{epochs} loss "
                         f"{history[-1]['loss']:.4f} train {train_acc:.3f} held-out {held_acc:.3f} "
                         f"{time.monotonic() - started:.1f}s\n")
            stream.flush()
    if done >= epochs and not quiet:
        stream.write(f"train: {ckpt_path} already holds {done} epochs (asked for {epochs}); nothing to do\n")
    return TrainResult(arch, str(ckpt_path), max(done, epochs), Accuracy(train_acc, held_acc), space.name, origin,
                       recipe.batch_size, {"train": len(y_train), "heldout": len(y_held)},
                       round(time.monotonic() - started, 2))


def arch_label(space: Space, arch: str) -> str:
    """The benchmark index where the space has one, else the string's start."""
    if hasattr(space, "index"):
        return f"{space.name}-{space.index(arch)}"
    return arch[:24]


__all__ = ["CHECKPOINT_NAME", "Accuracy", "TrainRecipe", "TrainResult", "augment", "cosine_schedule",
           "default_batch_size", "top1_accuracy",
           "heldout_images", "load_training_data", "model_from_checkpoint", "read_checkpoint", "train_arch", "write_checkpoint"]
