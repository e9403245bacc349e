"""The language-model space: decoder-only transformers for characters, sized for edge boards.

Architecture strings are ``e=<width>;l=<depth>;h=<heads per layer>;m=<MLP ratio per layer>`` with
the lists joined by ``-`` and exactly ``l`` entries (:mod:`modnas.toolkit.spaces.gpt.arch`). The
decisions are the width, the depth, then heads and MLP ratio for each of 6 layer slots; slots past
the depth are written as the first choice, so two strings of one network encode the same.

``build`` gives the standalone network (:mod:`modnas.toolkit.spaces.gpt.model`) with 256 positions;
its input is a prompt of token ids (``input_shape``: batch 1, 128 tokens, the default prompt of a
``prefill`` measurement). ``flops`` counts the multiply-accumulates of decoding one token with a
key/value cache of ``context`` (default 128) earlier tokens, the cost behind the ``latency`` metric.
Its measured tables are this project's own (``benchmarks/gpt_tables.py``); its shipped search run
(``toolkit/assets/runs/gpt``) carries a sandwich-trained supernet and a loss surrogate distilled from it.
"""
from __future__ import annotations

from typing import Any

from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces.base import Decision, Space
from modnas.toolkit.spaces.gpt.arch import (DEPTHS, HEADS, MAX_CONTEXT, MAX_LAYERS, MLP_RATIOS, WIDTHS,
                                            decode_macs, format_arch, from_indices, parse_arch, to_indices)

DEFAULT_CONTEXT = 128  # cached tokens of a decode measurement, and the tokens of a prefill prompt
# Tiny Shakespeare's 65 characters and the 256 byte tokens of the fallback (modnas.toolkit.spaces.gpt.text)
DEFAULT_VOCAB = 65 + 256

# Twelve reference architectures for the hardware embedding, spread over width, depth, heads and
# MLP ratio: the smallest, nanoGPT's CPU baseline, the interface's example and the largest among them.
REFERENCE_ARCHS: tuple[str, ...] = (
    "e=128;l=2;h=2-2;m=2-2",
    "e=128;l=3;h=8-8-8;m=3-3-3",
    "e=128;l=4;h=4-4-4-4;m=4-4-4-4",
    "e=128;l=6;h=8-2-4-8-2-4;m=3-2-4-3-2-4",
    "e=192;l=2;h=4-8;m=4-2",
    "e=192;l=3;h=2-4-8;m=2-3-4",
    "e=192;l=4;h=4-4-8-2;m=4-3-2-2",
    "e=192;l=5;h=8-4-2-8-4;m=3-4-2-3-4",
    "e=256;l=2;h=8-8;m=4-4",
    "e=256;l=3;h=4-2-8;m=2-4-3",
    "e=256;l=5;h=2-2-4-4-8;m=2-2-3-3-4",
    "e=256;l=6;h=8-8-8-8-8-8;m=4-4-4-4-4-4",
)


class GPTSpace(Space):
    """Width 128/192/256, depth 2-6, per layer 2/4/8 heads and MLP ratio 2/3/4."""

    name = "gpt"
    inputs = "tokens"  # token ids in, next-token logits out (the commands branch on this, not the name)
    # this project's own tables (benchmarks/gpt_tables.py): settings of one machine as devices, decode
    # latency and prefill, shipped in toolkit/assets/tables (a data directory's gpt/ folder overrides them)
    table_metrics = ("latency", "prefill")
    table_coverage = 0.9
    ships_tables = True
    predictor_defaults = {"min_points": 50}  # a setting measures about a hundred networks, not thousands
    quality = "loss"  # held-out nats per token of the supernet's subnet (the run's loss surrogate)
    quality_unit = "nats"
    shipped_runs = {None: "gpt"}
    run_carries = ("checkpoint.safetensors", "checkpoint.json", "heldout.txt.gz")  # train.CHECKPOINT_NAME, text.HELDOUT_TEXT

    @property
    def default_accuracy(self) -> str:
        """The shipped run's loss surrogate (fitted to its supernet's held-out losses)."""
        return "surrogate"

    enumerable = False  # 3 widths x sum over depths of 9^l layer choices: about 1.8 million networks

    def __init__(self) -> None:
        self.decisions = ([Decision("e", tuple(str(x) for x in WIDTHS)),
                           Decision("l", tuple(str(x) for x in DEPTHS))]
                          + [Decision(f"h{i}", tuple(str(x) for x in HEADS)) for i in range(MAX_LAYERS)]
                          + [Decision(f"m{i}", tuple(str(x) for x in MLP_RATIOS)) for i in range(MAX_LAYERS)])

    # -- strings -----------------------------------------------------------------------------------
    def to_indices(self, arch: str) -> list[int]:
        return to_indices(arch)

    def from_indices(self, indices: Any) -> str:
        return format_arch(from_indices(list(indices)))

    def canonical(self, arch: str) -> str:
        return format_arch(parse_arch(arch))

    def reference_archs(self) -> list[str]:
        return list(REFERENCE_ARCHS)

    def config(self, arch: str) -> Any:
        """The parsed architecture (:class:`modnas.toolkit.spaces.gpt.arch.Arch`)."""
        return parse_arch(arch)

    # -- networks ----------------------------------------------------------------------------------
    def build(self, arch: str, vocab_size: int = DEFAULT_VOCAB, context: int = MAX_CONTEXT, **_: Any) -> Any:
        """The standalone network; ``context`` is its number of positions (at most 256)."""
        from modnas.toolkit.spaces.gpt.model import GPT, GPTConfig

        a = parse_arch(arch)
        if not 1 <= int(context) <= MAX_CONTEXT:
            raise BadInput(f"a gpt network has 1..{MAX_CONTEXT} positions, got {context}")
        if int(vocab_size) < 1:
            raise BadInput(f"vocab_size must be at least 1, got {vocab_size}")
        return GPT(GPTConfig(int(vocab_size), a.width, a.heads, a.mlp, int(context)))

    def input_shape(self, arch: str) -> tuple[int, ...]:
        parse_arch(arch)
        return (1, DEFAULT_CONTEXT)

    def example_input(self, arch: str) -> Any:
        """Token ids (int64 zeros) of a ``DEFAULT_CONTEXT``-token prompt."""
        import torch

        return torch.zeros(self.input_shape(arch), dtype=torch.long)

    def flops(self, arch: str, context: int = DEFAULT_CONTEXT, vocab_size: int = DEFAULT_VOCAB) -> float:
        """Multiply-accumulates (millions) to decode one token with ``context`` cached tokens."""
        return decode_macs(arch, int(context), int(vocab_size)) / 1e6

    def load_table(self, data_dir: Any, metric: str = "latency") -> Any:
        """``gpt_<metric>.csv.gz`` from ``<data_dir>/gpt/`` when there is one, else the shipped table."""
        from importlib import resources
        from pathlib import Path

        from modnas.toolkit.data.arch_table import read_wide_csv

        if metric not in self.table_metrics:
            raise BadInput(self._no_table(metric))
        name = f"gpt_{metric}.csv.gz"
        own = Path(data_dir) / "gpt" / name if data_dir is not None else None
        path = own if own is not None and own.is_file() else Path(str(resources.files("modnas.toolkit") / "assets" /
                                                                      "tables" / name))
        return read_wide_csv(path, metric, self.canonical)

    def kernel_names(self) -> list[str]:
        """Per width: a layer's attention block, its heads (each one's split, score and merge), its MLP per
        unit of ratio, and the embedding and head (once per network)."""
        return [f"{k}@e{e}" for e in WIDTHS for k in ("layer", "head", "mlp", "embed")]

    def kernel_counts(self, archs: Any) -> Any:
        import numpy as np

        index = {n: i for i, n in enumerate(self.kernel_names())}
        out = np.zeros((len(archs), len(index)), np.float64)
        for row, arch in enumerate(archs):
            a = parse_arch(arch)
            out[row, index[f"embed@e{a.width}"]] = 1.0
            out[row, index[f"layer@e{a.width}"]] = a.depth
            out[row, index[f"head@e{a.width}"]] = sum(a.heads)
            out[row, index[f"mlp@e{a.width}"]] = sum(a.mlp)
        return out

    def board_export(self) -> Any:
        """A board times the decode graph (``latency``, with ``context`` cached tokens) and its prefill
        companion (``prefill``, ``prompt`` tokens): :func:`modnas.exporters.lm_onnx.export_lm_onnx`."""
        from modnas.exporters.lm_onnx import export_lm_onnx

        return export_lm_onnx

    # -- the supernet ------------------------------------------------------------------------------
    def build_supernet(self, num_classes: int, cfg: Any) -> Any:
        """A fresh supernet; ``num_classes`` is the vocabulary's size."""
        from modnas.toolkit.spaces.gpt.supernet import GPTSupernet

        return GPTSupernet(vocab_size=num_classes)

    def load_supernet(self, args: dict[str, Any]) -> Any:
        from modnas.toolkit.spaces.gpt.supernet import GPTSupernet

        return GPTSupernet(**args)

    def supernet_logits(self, supernet: Any, x: Any, onehot: Any) -> Any:
        """Next-token logits ``[B, T, vocab]`` of the subnet a flat (straight-through) one-hot picks."""
        return supernet(x, onehot.reshape(-1))

    def subnet(self, supernet: Any, arch: str) -> Any:
        return supernet.subnet(arch)

    def run_build_kwargs(self, config: Any, supernet_args: dict[str, Any] | None) -> dict[str, Any]:
        if not supernet_args:
            return {}
        return {"vocab_size": int(supernet_args["vocab_size"]), "context": int(supernet_args["context"])}


__all__ = ["DEFAULT_CONTEXT", "DEFAULT_VOCAB", "GPTSpace", "REFERENCE_ARCHS"]
