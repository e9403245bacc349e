"""A space's kernels as a space of their own, so the campaign code measures them like any network.

Its architectures are the names of :meth:`Space.kernel_names` plus ``empty`` (a network that returns
its input: the runtime's per-inference overhead, subtracted from every kernel). Measurements are
stored under ``<space>.kernels``; the structural device model reads them from there.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces.base import Decision, Space

EMPTY = "empty"
EMPTY_SHAPE = (1, 8)


def kernel_space_name(space: str) -> str:
    return f"{space}.kernels"


class KernelSpace(Space):
    """Every kernel of ``inner`` as one small network (only for spaces that build their kernels)."""

    def __init__(self, inner: Space) -> None:
        self.inner = inner
        self.name = kernel_space_name(inner.name)
        self.enumerable = True
        self.names = [EMPTY] + list(inner.kernel_names())
        self.decisions = [Decision("kernel", tuple(self.names))]

    @property
    def measurable(self) -> bool:
        """Whether the inner space says how to build its kernels."""
        return self.inner.kernel_network(self.names[1]) is not None if len(self.names) > 1 else False

    def to_indices(self, arch: str) -> list[int]:
        if arch not in self.names:
            raise BadInput(f"no kernel {arch!r} in the {self.inner.name} space")
        return [self.names.index(arch)]

    def from_indices(self, indices: list[int] | np.ndarray) -> str:
        return self.names[int(indices[0])]

    def reference_archs(self) -> list[str]:
        return []

    def all_archs(self) -> list[str]:
        return list(self.names)

    def _network(self, arch: str) -> tuple[Any, tuple[int, ...]]:
        self.to_indices(arch)
        if arch == EMPTY:
            import torch

            return torch.nn.Identity(), EMPTY_SHAPE
        built = self.inner.kernel_network(arch)
        if built is None:
            raise BadInput(f"the {self.inner.name} space does not build its kernels")
        return built

    def build(self, arch: str, **kwargs: Any) -> Any:
        return self._network(arch)[0].eval()

    def input_shape(self, arch: str) -> tuple[int, ...]:
        return tuple(self._network(arch)[1])

    def flops(self, arch: str) -> float:
        return 0.0
