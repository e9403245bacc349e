"""The search-space interface: decisions, string forms, one-hot encodings, networks."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Decision:
    """One categorical choice of the space (an edge's op, a block's kernel size, ...)."""

    name: str
    choices: tuple[str, ...]


class Space(ABC):
    """A categorical architecture space with a canonical string form."""

    name: str = ""
    decisions: list[Decision]

    @abstractmethod
    def to_indices(self, arch: str) -> list[int]:
        """Choice index per decision; raises ``BadInput`` on a malformed string."""

    @abstractmethod
    def from_indices(self, indices: list[int] | np.ndarray) -> str:
        """The canonical string of the architecture with these choices."""

    @abstractmethod
    def reference_archs(self) -> list[str]:
        """The fixed architectures whose measurements form a device's hardware embedding."""

    @abstractmethod
    def build(self, arch: str, **kwargs: Any) -> Any:
        """A standalone ``torch.nn.Module`` for the architecture."""

    @abstractmethod
    def input_shape(self, arch: str) -> tuple[int, ...]:
        """The batch-1 input shape the network takes."""

    @abstractmethod
    def flops(self, arch: str) -> float:
        """Multiply-accumulates in millions, the simplest cost proxy."""

    def canonical(self, arch: str) -> str:
        """Parse and print back, so equal networks share one string."""
        return self.from_indices(self.to_indices(arch))

    @property
    def onehot_dim(self) -> int:
        return sum(len(d.choices) for d in self.decisions)

    def encode(self, archs: list[str]) -> np.ndarray:
        """Decision-major one-hot rows, float32 ``[n, onehot_dim]``."""
        out = np.zeros((len(archs), self.onehot_dim), dtype=np.float32)
        offsets = np.cumsum([0] + [len(d.choices) for d in self.decisions[:-1]])
        for row, arch in enumerate(archs):
            for off, idx in zip(offsets, self.to_indices(arch)):
                out[row, off + idx] = 1.0
        return out

    def decode(self, onehot: np.ndarray) -> str:
        """Arg-max per decision of a (soft) one-hot row."""
        idx, off = [], 0
        for d in self.decisions:
            idx.append(int(np.argmax(onehot[off:off + len(d.choices)])))
            off += len(d.choices)
        return self.from_indices(idx)

    def sample(self, n: int, seed: int = 0) -> list[str]:
        """``n`` distinct random architectures, the same ones for the same seed."""
        rng = np.random.default_rng(seed)
        seen: dict[str, None] = {}
        sizes = [len(d.choices) for d in self.decisions]
        tries = 0
        while len(seen) < n and tries < 100 * max(n, 1):
            seen.setdefault(self.from_indices([int(rng.integers(s)) for s in sizes]), None)
            tries += 1
        return list(seen)
