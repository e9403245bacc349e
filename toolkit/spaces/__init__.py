"""Search spaces registered by name."""
from __future__ import annotations

from importlib import import_module

from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces.base import Decision, Space

SPACES: dict[str, str] = {
    "nb201": "modnas.toolkit.spaces.nb201:NB201Space",
    "ofa_mbv3": "modnas.toolkit.spaces.ofa_mbv3:OFAMobileNetV3Space",
}

_cache: dict[str, Space] = {}


def get_space(name: str) -> Space:
    """The space registered as ``name``; one instance per process."""
    if name not in SPACES:
        raise BadInput(f"unknown space {name!r}; known: {', '.join(sorted(SPACES))}")
    if name not in _cache:
        module, cls = SPACES[name].split(":")
        _cache[name] = getattr(import_module(module), cls)()
    return _cache[name]


__all__ = ["SPACES", "Decision", "Space", "get_space"]
