"""A decoder-only transformer for characters, in one plain file.

Token and learned position embeddings, then pre-LayerNorm blocks (causal self-attention, then a GELU
MLP, each added back to the residual stream), a final LayerNorm and an output layer tied to the
token embedding. Each layer has its own number of heads and MLP ratio; the width is the network's.

The key/value cache is a tuple with one ``(k, v)`` pair per layer, each ``[batch, heads, T, head_dim]``
(heads differ per layer, so the tensors do too): :meth:`GPT.forward` with ``use_cache=True`` returns
it after a whole sequence (prefill), :meth:`GPT.decode` takes it with one new token and returns it
one position longer. Nothing but plain tensors goes in or out, so both trace to graphs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

KVCache = tuple[tuple[torch.Tensor, torch.Tensor], ...]


@dataclass(frozen=True)
class GPTConfig:
    """The network's shape: vocabulary, width, per-layer heads and MLP ratios, most positions."""

    vocab_size: int
    width: int
    heads: tuple[int, ...]
    mlp: tuple[int, ...]
    context: int = 256

    @property
    def depth(self) -> int:
        return len(self.heads)


class SelfAttention(nn.Module):
    """Causal multi-head self-attention; ``qkv`` holds the query, key and value weights stacked."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"{heads} heads do not divide width {width}")
        self.width, self.heads, self.head_dim = width, heads, width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x`` is ``[B, T, width]``; ``past`` the cached keys and values of earlier positions.
        Returns the output and the keys and values of all positions so far."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x).split(self.width, dim=2)
        q, k, v = (z.view(b, t, self.heads, self.head_dim).transpose(1, 2) for z in (q, k, v))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        y = attend(q, k, v)
        y = y.transpose(1, 2).reshape(b, t, self.width)
        return self.proj(y), (k, v)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention of the ``T`` newest positions (``q``) over all ``S`` positions (``k``, ``v``): the
    query at position ``S - T + i`` sees keys ``0 .. S - T + i``."""
    t, s = q.shape[2], k.shape[2]
    if t == 1:  # one new token sees everything before it
        return F.scaled_dot_product_attention(q, k, v)
    if t == s:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(diagonal=s - t)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class MLP(nn.Module):
    """Width -> ratio x width -> width with GELU between."""

    def __init__(self, width: int, ratio: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, ratio * width)
        self.proj = nn.Linear(ratio * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """One pre-LayerNorm transformer layer."""

    def __init__(self, width: int, heads: int, ratio: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = MLP(width, ratio)

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        a, kv = self.attn(self.ln1(x), past)
        x = x + a
        return x + self.mlp(self.ln2(x)), kv


class GPT(nn.Module):
    """The language model: ``forward(idx)`` gives next-token logits ``[B, T, vocab]``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if len(config.mlp) != config.depth:
            raise ValueError("one MLP ratio per layer")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.width)
        self.wpe = nn.Embedding(config.context, config.width)
        self.blocks = nn.ModuleList(Block(config.width, h, m) for h, m in zip(config.heads, config.mlp))
        self.ln_f = nn.LayerNorm(config.width)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal(0, 0.02) weights and zero biases; the projections back into the residual stream
        scaled down by sqrt(2 * depth), so the stream's variance does not grow with depth."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp.proj):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * self.config.depth))

    def forward(self, idx: torch.Tensor, past: KVCache | None = None, use_cache: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, KVCache]:
        """Logits for every position of ``idx`` (``[B, T]`` token ids) after the ``past`` cache;
        with ``use_cache``, also the cache covering the past and ``idx``."""
        start = 0 if past is None else past[0][0].shape[2]
        t = idx.shape[1]
        if start + t > self.config.context:
            raise ValueError(f"{start + t} positions exceed the context of {self.config.context}")
        pos = torch.arange(start, start + t, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if past is None else past[i])
            cache.append(kv)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied output layer
        return (logits, tuple(cache)) if use_cache else logits

    def prefill(self, idx: torch.Tensor) -> tuple[torch.Tensor, KVCache]:
        """Logits of every position of a prompt, and its key/value cache."""
        return self.forward(idx, use_cache=True)  # type: ignore[return-value]

    def decode(self, token: torch.Tensor, past: KVCache) -> tuple[torch.Tensor, KVCache]:
        """One step: logits ``[B, vocab]`` of the next token after ``token`` (``[B, 1]``), and the
        cache one position longer."""
        logits, cache = self.forward(token, past, use_cache=True)  # type: ignore[misc]
        return logits[:, -1], cache

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


@torch.no_grad()
def generate(model: GPT, idx: torch.Tensor, n_tokens: int, use_cache: bool = True) -> torch.Tensor:
    """Greedy continuation: ``idx`` (``[B, T]``) followed by ``n_tokens`` arg-max tokens. Past the
    model's context, each step sees only the last ``context`` tokens (recomputed, as without a cache)."""
    was = model.training
    model.eval()
    context = model.config.context
    out = idx
    cache: KVCache | None = None
    logits: torch.Tensor | None = None
    for step in range(n_tokens):
        if logits is None:
            logits, cache = model.prefill(out[:, -context:])
            logits = logits[:, -1]
        nxt = logits.argmax(dim=-1, keepdim=True)
        out = torch.cat([out, nxt], dim=1)
        if step + 1 == n_tokens:
            break
        if use_cache and cache is not None and cache[0][0].shape[2] < context:
            logits, cache = model.decode(nxt, cache)
        else:
            logits = None  # the next step recomputes the last ``context`` tokens
    model.train(was)
    return out


__all__ = ["GPT", "GPTConfig", "KVCache", "MLP", "Block", "SelfAttention", "attend", "generate"]
