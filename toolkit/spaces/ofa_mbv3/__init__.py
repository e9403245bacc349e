"""The OFA MobileNetV3 space: the space (``space``), its blocks and network (``blocks``, ``net``),
its weight-sharing supernet (``supernet``) and HELP's measured OFA tables (``tables``)."""
from __future__ import annotations

from modnas.toolkit.spaces.ofa_mbv3.space import REFERENCE_ARCHS, REFERENCE_IDS, OFAMobileNetV3Space

__all__ = ["OFAMobileNetV3Space", "REFERENCE_ARCHS", "REFERENCE_IDS"]
