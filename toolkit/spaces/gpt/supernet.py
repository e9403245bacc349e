"""A weight-sharing supernet of the gpt space.

The supernet holds the largest network's weights (width 256, 6 layers, MLP ratio 4) as a
:class:`~modnas.toolkit.spaces.gpt.model.GPT` (``self.net``). A subnet uses the first ``l`` layers and,
in every weight, the first ``e`` of each width dimension (embeddings, LayerNorms, each of the stacked
query/key/value blocks, projections) and the first ``m * e`` MLP hidden units; its heads split its
``e`` query/key/value channels into ``h`` groups (the head count changes the grouping, not the
weights). :meth:`GPTSupernet.sub_state` copies those slices into a state dict that loads strictly into
the standalone network of the architecture, and :meth:`GPTSupernet.subnet` returns that network.

Training is sandwich sampling: every step runs the largest subnet, the smallest and
``random_subnets`` random ones on the same batch and sums their gradients before one AdamW step
(the optimiser, schedule, checkpoints and resume of :mod:`modnas.toolkit.spaces.gpt.train`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn.functional as F
from torch import nn

from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces.gpt.arch import (DEPTHS, HEADS, LARGEST, MAX_CONTEXT, MAX_LAYERS, MLP_RATIOS,
                                            SMALLEST, WIDTHS, Arch, format_arch, from_indices, onehot_offsets,
                                            parse_arch)
from modnas.toolkit.spaces.gpt.model import GPT, attend
from modnas.toolkit.spaces.gpt.text import Corpus, Vocabulary, eval_windows, split_heldout
from modnas.toolkit.spaces.gpt.train import (LMRecipe, build_model, load_state, mean_loss, model_config,
                                             open_session, read_checkpoint, run_session, torch_threads)

_SIZES = [len(WIDTHS), len(DEPTHS)] + [len(HEADS)] * MAX_LAYERS + [len(MLP_RATIOS)] * MAX_LAYERS


class GPTSupernet(nn.Module):
    """The largest network's weights; ``forward(idx, arch)`` runs any subnet on them."""

    def __init__(self, vocab_size: int, context: int = MAX_CONTEXT, seed: int | None = None) -> None:
        super().__init__()
        self.vocab_size, self.context = int(vocab_size), int(context)
        self.net: GPT = build_model(LARGEST, self.vocab_size, self.context, seed=seed)

    def config(self) -> dict[str, Any]:
        """The arguments that rebuild this supernet (``GPTSupernet(**config())``)."""
        return {"vocab_size": self.vocab_size, "context": self.context}

    @staticmethod
    def choice(arch: Any) -> tuple[Arch, list[torch.Tensor | None], torch.Tensor | None]:
        """The architecture of a string, an ``Arch`` or a flat (straight-through) one-hot laid out as
        ``space.encode``; for a one-hot also the chosen entries that scale each layer's attention and
        MLP branch and the logits (1 in value, so the choice receives a gradient)."""
        if not isinstance(arch, torch.Tensor):
            return parse_arch(arch), [], None
        flat = arch.reshape(-1)
        offsets = onehot_offsets()
        if flat.numel() != offsets[-1] + _SIZES[-1]:
            raise BadInput(f"a gpt one-hot has {offsets[-1] + _SIZES[-1]} entries, got {flat.numel()}")
        idx = [int(flat[o:o + n].detach().argmax()) for o, n in zip(offsets, _SIZES)]
        picked = [flat[o + i] for o, i in zip(offsets, idx)]
        a = from_indices(idx)
        scales: list[torch.Tensor | None] = []
        for layer in range(a.depth):
            scales += [picked[2 + layer], picked[2 + MAX_LAYERS + layer]]
        return a, scales, picked[0] * picked[1]

    def forward(self, idx: torch.Tensor, arch: Any) -> torch.Tensor:
        """Next-token logits ``[B, T, vocab]`` of the subnet ``arch`` (a string, ``Arch`` or one-hot)."""
        a, scales, out_scale = self.choice(arch)
        net, e = self.net, a.width
        big = net.config.width
        t = idx.shape[1]
        pos = torch.arange(t, device=idx.device)
        x = F.embedding(idx, net.wte.weight[:, :e]) + net.wpe.weight[pos, :e]
        for i, (heads, ratio) in enumerate(zip(a.heads, a.mlp)):
            block = net.blocks[i]
            h = F.layer_norm(x, (e,), block.ln1.weight[:e], block.ln1.bias[:e], block.ln1.eps)
            w, b = block.attn.qkv.weight, block.attn.qkv.bias
            w_qkv = torch.cat([w[j * big:j * big + e, :e] for j in range(3)])
            b_qkv = torch.cat([b[j * big:j * big + e] for j in range(3)])
            q, k, v = F.linear(h, w_qkv, b_qkv).split(e, dim=2)
            q, k, v = (z.view(idx.shape[0], t, heads, e // heads).transpose(1, 2) for z in (q, k, v))
            y = attend(q, k, v).transpose(1, 2).reshape(idx.shape[0], t, e)
            y = F.linear(y, block.attn.proj.weight[:e, :e], block.attn.proj.bias[:e])
            x = x + (y * scales[2 * i] if scales else y)
            h = F.layer_norm(x, (e,), block.ln2.weight[:e], block.ln2.bias[:e], block.ln2.eps)
            hidden = ratio * e
            h = F.gelu(F.linear(h, block.mlp.fc.weight[:hidden, :e], block.mlp.fc.bias[:hidden]))
            y = F.linear(h, block.mlp.proj.weight[:e, :hidden], block.mlp.proj.bias[:e])
            x = x + (y * scales[2 * i + 1] if scales else y)
        x = F.layer_norm(x, (e,), net.ln_f.weight[:e], net.ln_f.bias[:e], net.ln_f.eps)
        logits = F.linear(x, net.wte.weight[:, :e])
        return logits * out_scale if out_scale is not None else logits

    def sub_state(self, arch: Any) -> dict[str, torch.Tensor]:
        """The subnet's weights, keyed as the standalone network's state dict (copies)."""
        a = parse_arch(arch)
        net, e, big = self.net, a.width, self.net.config.width
        out: dict[str, torch.Tensor] = {"wte.weight": net.wte.weight[:, :e], "wpe.weight": net.wpe.weight[:, :e]}
        for i, ratio in enumerate(a.mlp):
            block, p = net.blocks[i], f"blocks.{i}."
            hidden = ratio * e
            for ln in ("ln1", "ln2"):
                out[p + f"{ln}.weight"] = getattr(block, ln).weight[:e]
                out[p + f"{ln}.bias"] = getattr(block, ln).bias[:e]
            w, b = block.attn.qkv.weight, block.attn.qkv.bias
            out[p + "attn.qkv.weight"] = torch.cat([w[j * big:j * big + e, :e] for j in range(3)])
            out[p + "attn.qkv.bias"] = torch.cat([b[j * big:j * big + e] for j in range(3)])
            out[p + "attn.proj.weight"] = block.attn.proj.weight[:e, :e]
            out[p + "attn.proj.bias"] = block.attn.proj.bias[:e]
            out[p + "mlp.fc.weight"] = block.mlp.fc.weight[:hidden, :e]
            out[p + "mlp.fc.bias"] = block.mlp.fc.bias[:hidden]
            out[p + "mlp.proj.weight"] = block.mlp.proj.weight[:e, :hidden]
            out[p + "mlp.proj.bias"] = block.mlp.proj.bias[:e]
        out["ln_f.weight"], out["ln_f.bias"] = net.ln_f.weight[:e], net.ln_f.bias[:e]
        return {k: v.detach().clone().contiguous() for k, v in out.items()}

    def subnet(self, arch: Any) -> GPT:
        """The standalone network of ``arch`` carrying the supernet's weights (eval mode)."""
        model = GPT(model_config(arch, self.vocab_size, self.context))
        load_state(model, self.sub_state(arch), f"supernet slice of {format_arch(parse_arch(arch))}")
        return model.eval()


def random_arch(generator: torch.Generator) -> Arch:
    """A uniformly random choice per decision."""
    return from_indices([int(torch.randint(n, (1,), generator=generator)) for n in _SIZES])


def sandwich(generator: torch.Generator, random_subnets: int) -> list[Arch]:
    """The subnets of one step: the largest, the smallest and ``random_subnets`` random ones."""
    return [LARGEST, SMALLEST] + [random_arch(generator) for _ in range(random_subnets)]


@torch.no_grad()
def inherited_loss(supernet: GPTSupernet, arch: Any, tokens: torch.Tensor, context: int,
                   max_windows: int | None = None) -> float:
    """Mean next-token cross-entropy (nats per token) of the subnet with the supernet's weights over
    non-overlapping windows of ``tokens`` (e.g. the held-out split)."""
    was = supernet.training
    supernet.eval()
    a = parse_arch(arch)
    x, y = eval_windows(tokens, context, max_windows)
    loss = mean_loss(lambda xb: supernet(xb, a), x, y)
    supernet.train(was)
    return loss


def heldout_tokens(corpus: Corpus, vocab: Vocabulary) -> torch.Tensor:
    """The held-out last 10 % of the corpus in the vocabulary's tokens."""
    return split_heldout(vocab.encode(corpus.text))[1]


def train_supernet(text: str | Path | Corpus, context: int = 64, batch: int = 12, steps: int = 2000,
                   out: str | Path = "supernet", *, random_subnets: int = 2, data_dir: str | Path | None = None,
                   recipe: LMRecipe | None = None, until: int | None = None, save_every: int = 500,
                   threads: int | None = None, quiet: bool = False, stream: TextIO | None = None
                   ) -> tuple[GPTSupernet, dict[str, Any]]:
    """Sandwich-train (or resume) the supernet on ``text``; the supernet and the result, whose
    ``"loss"`` is the largest subnet's with ``"smallest"`` beside it (nats per character)."""
    if isinstance(random_subnets, bool) or not isinstance(random_subnets, int) or random_subnets < 0:
        raise BadInput(f"random_subnets must be >= 0, got {random_subnets}")
    seed = (recipe or LMRecipe()).seed
    holder: dict[str, GPTSupernet] = {}

    def make_model(vocab: Vocabulary) -> tuple[nn.Module, dict[str, Any]]:
        holder["net"] = GPTSupernet(vocab.size, MAX_CONTEXT, seed=seed)
        return holder["net"], holder["net"].config()

    with torch_threads(threads):
        session = open_session("supernet", format_arch(LARGEST), text, context, batch, Path(out),
                               make_model=make_model, data_dir=data_dir, recipe=recipe)
        session.extra_meta = {"supernet_args": holder["net"].config(), "random_subnets": random_subnets}
        supernet = holder["net"]

        def step_fn(x: torch.Tensor, y: torch.Tensor, step: int, gen: torch.Generator) -> float:
            archs = sandwich(gen, random_subnets)
            total = 0.0
            for a in archs:
                logits = supernet(x, a)
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
                loss.backward()
                total += float(loss.detach())
            return total / len(archs)

        def losses(train: torch.Tensor, held: torch.Tensor, max_windows: int | None) -> dict[str, Any]:
            xh, yh = eval_windows(held, context, max_windows)
            xt, yt = eval_windows(train, context, max_windows=max(1, len(xh)))
            out_losses: dict[str, Any] = {}
            for name, a in (("largest", LARGEST), ("smallest", SMALLEST)):
                out_losses[name] = {"train": round(mean_loss(lambda xb: supernet(xb, a), xt, yt), 5),
                                    "heldout": round(mean_loss(lambda xb: supernet(xb, a), xh, yh), 5)}
            return {**out_losses["largest"], "smallest": out_losses["smallest"]}

        result = run_session(session, steps, step_fn, losses, until=until, save_every=save_every, quiet=quiet,
                             stream=stream, label="supernet")
    result["supernet_args"] = supernet.config()
    return supernet, result


def load_supernet_checkpoint(path: str | Path) -> tuple[GPTSupernet, Vocabulary, dict[str, Any]]:
    """A trained supernet (eval mode), its vocabulary and the checkpoint's metadata."""
    tensors, meta = read_checkpoint(path)
    if meta["kind"] != "supernet":
        raise BadInput(f"{path}: a checkpoint of the network {meta['arch']}, not a gpt supernet")
    supernet = GPTSupernet(**meta["build"])
    load_state(supernet, {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, str(path))
    return supernet.eval(), Vocabulary.from_json(meta["vocab"]), meta


__all__ = ["GPTSupernet", "heldout_tokens", "inherited_loss", "load_supernet_checkpoint", "random_arch", "sandwich",
           "train_supernet"]
