"""Search spaces registered by name, the way models are registered in a model zoo.

A space is one package here (``nb201/``, ``ofa_mbv3/``) whose class implements
:class:`~modnas.toolkit.spaces.base.Space`, and one line in :data:`SPACES`. Everything else in the
toolkit asks the space (``get_space(name)``) and never compares its name. To add a space: write
its package (a ``Space`` subclass with its strings, reference architectures and network; tables,
tasks, supernet and shipped runs where it has them), then add ``"name": "module:Class"`` below,
or call :func:`register_space` (tests and plug-ins).
"""
from __future__ import annotations

from importlib import import_module
from typing import Callable

from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces.base import Decision, Space, Table

SPACES: dict[str, str | Callable[[], Space]] = {
    "nb201": "modnas.toolkit.spaces.nb201.space:NB201Space",
    "ofa_mbv3": "modnas.toolkit.spaces.ofa_mbv3.space:OFAMobileNetV3Space",
    "gpt": "modnas.toolkit.spaces.gpt.space:GPTSpace",
}

_instances: dict[str, Space] = {}


def register_space(name: str, factory: str | Callable[[], Space]) -> None:
    """Register ``name`` as ``"module:Class"`` or a callable returning the space."""
    SPACES[name] = factory
    _instances.pop(name, None)


def unregister_space(name: str) -> None:
    SPACES.pop(name, None)
    _instances.pop(name, None)


def space_names() -> list[str]:
    return sorted(SPACES)


def get_space(name: str) -> Space:
    """The space registered as ``name``; one instance per process."""
    if not isinstance(name, str) or name not in SPACES:
        raise BadInput(f"unknown space {name!r}; known: {', '.join(space_names())}")
    if name not in _instances:
        factory = SPACES[name]
        if isinstance(factory, str):
            module, cls = factory.split(":")
            factory = getattr(import_module(module), cls)
        space = factory()
        if space.name != name:
            raise BadInput(f"space registered as {name!r} calls itself {space.name!r}")
        _instances[name] = space
    return _instances[name]


def table_spaces() -> list[str]:
    """The registered spaces with measured device tables."""
    return [n for n in space_names() if get_space(n).table_metrics]


__all__ = ["SPACES", "Decision", "Space", "Table", "get_space", "register_space", "space_names", "table_spaces",
           "unregister_space"]
