"""The language-model space ``gpt``: the space (``space``), its string form (``arch``), the network
(``model``), its text (``text``), training (``train``) and weight-sharing supernet (``supernet``)."""
from __future__ import annotations

from modnas.toolkit.spaces.gpt.space import DEFAULT_CONTEXT, DEFAULT_VOCAB, REFERENCE_ARCHS, GPTSpace

__all__ = ["DEFAULT_CONTEXT", "DEFAULT_VOCAB", "GPTSpace", "REFERENCE_ARCHS"]
