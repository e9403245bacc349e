"""Typed results that know their JSON document: what the library hands the command line.

A result is a dataclass deriving from :class:`JsonDoc`; ``to_json()`` gives the document ``--json``
prints, its keys the fields in declaration order. A field made with :func:`omitted` leaves its key
out while its value is None (keys the interface adds only in some cases); one made with
:func:`internal` is for the caller only and never in the document.
"""
from __future__ import annotations

import dataclasses
from typing import Any

_OMIT_NONE = "omit_none"
_INTERNAL = "internal"


def omitted(default: Any = None) -> Any:
    """A field whose key is left out of the document while its value is None."""
    return dataclasses.field(default=default, metadata={_OMIT_NONE: True})


def internal(default: Any = None) -> Any:
    """A field for the caller (e.g. the command's text report), never part of the JSON document."""
    return dataclasses.field(default=default, metadata={_INTERNAL: True}, compare=False)


def plain(value: Any) -> Any:
    """``value`` with every :class:`JsonDoc` inside it turned into its document (lists, tuples and dicts walked)."""
    if isinstance(value, JsonDoc):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


class JsonDoc:
    """Base of the typed results: a dataclass whose fields are the keys of its JSON document."""

    def to_json(self) -> Any:
        """The JSON document (dicts, lists, strings, numbers, booleans and None only)."""
        doc: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.metadata.get(_INTERNAL):
                continue
            value = getattr(self, f.name)
            if value is None and f.metadata.get(_OMIT_NONE):
                continue
            doc[f.name] = plain(value)
        return doc


@dataclasses.dataclass
class DocList(JsonDoc):
    """A command whose document is a JSON array: its rows, each a :class:`JsonDoc` or a plain value."""

    rows: list[Any]

    def to_json(self) -> Any:
        return [plain(r) for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Any:
        return iter(self.rows)


__all__ = ["DocList", "JsonDoc", "internal", "omitted", "plain"]
