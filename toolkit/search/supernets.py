"""What the search needs of each space, registered by name: the hypernetwork's logit layout, the
supernet it trains in supernet mode, how a sampled one-hot drives that supernet, and how a subnet
with inherited weights is extracted for export.

The hypernetwork emits logits ``[n_decisions, n_choices]`` padded to the widest decision; the
choices a decision does not have are masked (``choice_counts``), and ``flatten`` turns a padded
(straight-through) one-hot into the flat layout of ``space.encode`` that the cost models,
accuracy surrogates and supernets take.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces import Space, get_space


def hypernet_layout(space: Space) -> dict[str, Any]:
    """Keyword arguments of a hypernetwork for ``space``: a plain grid when every decision has the
    same number of choices (NB201: 6 x 5), else the padded grid with the per-decision counts."""
    counts = [len(d.choices) for d in space.decisions]
    layout: dict[str, Any] = {"n_decisions": len(counts), "n_choices": max(counts)}
    if len(set(counts)) > 1:
        layout["choice_counts"] = counts
    return layout


def choice_mask(n_decisions: int, n_choices: int, counts: list[int] | None) -> torch.Tensor | None:
    """Boolean ``[n_decisions, n_choices]``: True where the decision has that choice (None: all)."""
    if counts is None:
        return None
    if len(counts) != n_decisions or max(counts) > n_choices or min(counts) < 1:
        raise BadInput(f"choice_counts must give 1..{n_choices} choices for each of {n_decisions} decisions")
    return torch.arange(n_choices).reshape(1, -1) < torch.tensor(counts).reshape(-1, 1)


def flatten(onehot: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """``[..., n_decisions, n_choices]`` -> ``[..., onehot_dim]`` in ``space.encode`` order."""
    if valid is None:
        return onehot.reshape(*onehot.shape[:-2], -1)
    return onehot[..., valid]


class SearchSpace:
    """Base: spaces without a supernet can still be searched in benchmark mode."""

    name = ""
    benchmark_accuracy = False  # an accuracy table exists for a benchmark-mode surrogate
    warmup_share = 0.0          # supernet mode: share of the epochs trained on random subnets first
    random_subnets = 0          # supernet mode: extra random subnets per weight step

    def __init__(self) -> None:
        self.space = get_space(self.name)

    def build_supernet(self, num_classes: int, cfg: Any) -> nn.Module:
        raise BadInput(f"space {self.name} has no supernet")

    def load_supernet(self, args: dict[str, Any]) -> nn.Module:
        raise BadInput(f"space {self.name} has no supernet")

    def forward(self, supernet: nn.Module, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Class logits of the subnet a flat (straight-through) one-hot ``[onehot_dim]`` picks."""
        raise NotImplementedError

    def prepare_eval(self, supernet: nn.Module, x: torch.Tensor, onehot: torch.Tensor) -> None:
        """Before scoring one subnet in eval mode (OFA: recompute its BN statistics)."""

    def subnet(self, supernet: nn.Module, arch: str) -> nn.Module:
        """The standalone network of ``arch`` carrying the supernet's shared weights."""
        raise NotImplementedError


class NB201Search(SearchSpace):
    name = "nb201"
    benchmark_accuracy = True

    def build_supernet(self, num_classes: int, cfg: Any) -> nn.Module:
        from modnas.toolkit.search.supernet import NB201Supernet

        return NB201Supernet(num_classes=num_classes, channels=cfg.channels, cells=cfg.cells)

    def load_supernet(self, args: dict[str, Any]) -> nn.Module:
        from modnas.toolkit.search.supernet import NB201Supernet

        return NB201Supernet(**args)

    def forward(self, supernet: nn.Module, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        return supernet(x, onehot.reshape(6, 5))

    def subnet(self, supernet: nn.Module, arch: str) -> nn.Module:
        from modnas.toolkit.search.supernet import extract_subnet

        return extract_subnet(supernet, arch)  # type: ignore[arg-type]


class OFASearch(SearchSpace):
    """Resolution is a decision: the user's images (side ``S``) are resized to ``S * r / 224`` for a
    subnet of resolution ``r``, so smaller inputs cost accuracy as they do at full size. With 46
    decisions the hypernetwork collapses onto whatever the supernet trained first, hence a warm-up
    on random subnets and one random subnet in every weight step by default."""

    name = "ofa_mbv3"
    warmup_share = 0.3
    random_subnets = 1

    def __init__(self) -> None:
        super().__init__()
        from modnas.toolkit.spaces.ofa_blocks import RESOLUTIONS

        self.resolutions = RESOLUTIONS
        self.r_offset = self.space.onehot_dim - len(RESOLUTIONS)

    def build_supernet(self, num_classes: int, cfg: Any) -> nn.Module:
        from modnas.toolkit.search.ofa_supernet import OFASupernet

        return OFASupernet(num_classes=num_classes)  # the width the predictors and exports use

    def load_supernet(self, args: dict[str, Any]) -> nn.Module:
        from modnas.toolkit.search.ofa_supernet import OFASupernet

        return OFASupernet(**args)

    def resize(self, x: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The input at the subnet's scaled resolution, and the chosen resolution's one-hot entry."""
        flat = onehot.reshape(-1)
        idx = int(flat[self.r_offset:].detach().argmax())
        side = max(8, int(round(x.shape[-1] * self.resolutions[idx] / max(self.resolutions))))
        if side != x.shape[-1]:
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        return x, flat[self.r_offset + idx]

    def forward(self, supernet: nn.Module, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        x, weight = self.resize(x, onehot)
        return supernet(x, onehot.reshape(-1)) * weight  # straight-through: 1 in value

    def prepare_eval(self, supernet: nn.Module, x: torch.Tensor, onehot: torch.Tensor) -> None:
        from modnas.toolkit.search.ofa_supernet import calibrate_bn

        arch = self.space.decode(onehot.reshape(-1).detach().numpy())
        calibrate_bn(supernet, self.resize(x, onehot)[0], arch)  # type: ignore[arg-type]
        supernet.eval()

    def subnet(self, supernet: nn.Module, arch: str) -> nn.Module:
        return supernet.subnet(arch)  # type: ignore[operator]


SEARCH_SPACES: dict[str, Callable[[], SearchSpace]] = {"nb201": NB201Search, "ofa_mbv3": OFASearch}


def search_space(name: str) -> SearchSpace:
    """The search support of a space by registry name."""
    if name not in SEARCH_SPACES:
        raise BadInput(f"space {name!r} cannot be searched; searchable: {', '.join(sorted(SEARCH_SPACES))}")
    return SEARCH_SPACES[name]()


def bn_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every buffer (BN statistics), to restore after a per-subnet recalibration."""
    return {k: v.detach().clone() for k, v in module.named_buffers()}


def restore_buffers(module: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    for k, v in module.named_buffers():
        v.copy_(saved[k])


def encode_one(space: Space, arch: str) -> torch.Tensor:
    return torch.as_tensor(np.asarray(space.encode([arch])[0]))


__all__ = ["NB201Search", "OFASearch", "SEARCH_SPACES", "SearchSpace", "bn_state", "choice_mask", "encode_one",
           "flatten", "hypernet_layout", "restore_buffers", "search_space"]
