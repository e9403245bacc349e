"""NAS-Bench-201: the space (``space``), its cell and network (``cell``, ``net``), its supernet
(``supernet``), its measured device tables (``tables``) and benchmark tasks (``tasks``)."""
from __future__ import annotations

from modnas.toolkit.spaces.nb201.space import REFERENCE_INDICES, NB201Space

__all__ = ["NB201Space", "REFERENCE_INDICES"]
