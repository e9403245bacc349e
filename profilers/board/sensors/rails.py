"""Jetson power-rail names: which one is the board input, which ones are not connected."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

# The board-total rail on Nano, TX2, Orin Nano/NX. AGX Xavier/Orin have none: there the total
# is the sum of the module rails. Never add the other rails to an input rail.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
AUTO = ("auto", "total")
SUM = "sum"


def is_nc(name: str) -> bool:
    """``NC`` channels are not connected (AGX Orin prints several)."""
    return name.strip().upper() == "NC"


def input_rail(names: object) -> Optional[str]:
    """The board-input rail among ``names``, if there is one."""
    upper = {str(n).upper(): str(n) for n in names}  # type: ignore[attr-defined]
    for rail in INPUT_RAILS:
        if rail in upper:
            return upper[rail]
    return None


def choose(names: object, rail: str) -> Tuple[str, Tuple[str, ...]]:
    """Which rails make up the requested value.

    ``auto``/``total``: the input rail, else the sum of all connected rails; ``sum``: the sum of
    the connected module rails (input rails left out); a rail name: that rail (any case).
    Returns (description, rail names). Raises ValueError naming the rails there are.
    """
    connected = [str(n) for n in names if not is_nc(str(n))]  # type: ignore[attr-defined]
    wanted = rail.strip()
    if wanted.lower() in AUTO:
        found = input_rail(connected)
        if found is not None:
            return found, (found,)
        if not connected:
            raise ValueError("no power rails")
        return "sum of %s" % "+".join(connected), tuple(connected)
    if wanted.lower() == SUM:
        modules = [n for n in connected if n.upper() not in INPUT_RAILS]
        if not modules:
            raise ValueError("no module rails (rails: %s)" % ", ".join(connected))
        return "sum of %s" % "+".join(modules), tuple(modules)
    for name in connected:
        if name.upper() == wanted.upper():
            return name, (name,)
    raise ValueError("no rail %r (rails: %s)" % (wanted, ", ".join(connected) or "none"))


def total(values: Dict[str, float]) -> Optional[float]:
    """The board total from one set of rail readings: input rail, else sum of connected rails."""
    if not values:
        return None
    found = input_rail(values)
    if found is not None:
        return values[found]
    return sum(v for k, v in values.items() if not is_nc(k))
