"""Validated names: devices, runs and artifacts become file names and table keys."""
from __future__ import annotations

import re

from modnas.toolkit.errors import BadInput

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_name(name: str, what: str = "name") -> str:
    """Names become file and table keys: letters, digits, '-' and '_' only."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BadInput(f"invalid {what} {name!r}: use letters, digits, '-' and '_' (at most 64)")
    return name
