"""The string form of the gpt space: choices, parsing, printing and the per-slot choice indices.

An architecture is ``e=<width>;l=<depth>;h=<heads per layer>;m=<MLP ratio per layer>`` with the two
lists joined by ``-`` and exactly ``l`` entries each, e.g. ``e=192;l=4;h=4-4-8-2;m=4-3-2-2``.

As choice indices (the space's decisions, in this order) it is the width, the depth, then heads and
MLP ratio for each of :data:`MAX_LAYERS` layer slots. A slot past the depth is unused and written as
the first choice (index 0), so two strings of the same network have the same indices.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces.base import parse_int_fields

WIDTHS: tuple[int, ...] = (128, 192, 256)
DEPTHS: tuple[int, ...] = (2, 3, 4, 5, 6)
HEADS: tuple[int, ...] = (2, 4, 8)
MLP_RATIOS: tuple[int, ...] = (2, 3, 4)
MAX_LAYERS = max(DEPTHS)
MAX_CONTEXT = 256  # positions every network of the space has
FIELDS = ("e", "l", "h", "m")
N_INDICES = 2 + 2 * MAX_LAYERS



@dataclass(frozen=True)
class Arch:
    """One network of the space: the width and, per layer, heads and MLP ratio."""

    width: int
    heads: tuple[int, ...]
    mlp: tuple[int, ...]

    @property
    def depth(self) -> int:
        return len(self.heads)

    def __str__(self) -> str:
        return format_arch(self)


def format_arch(arch: Arch) -> str:
    """The canonical string of ``arch``."""
    join = lambda xs: "-".join(str(int(x)) for x in xs)  # noqa: E731
    return f"e={int(arch.width)};l={arch.depth};h={join(arch.heads)};m={join(arch.mlp)}"


def check_arch(arch: Arch, where: str = "gpt architecture") -> Arch:
    """``arch`` itself when every value is a choice of the space and the heads divide the width."""
    if arch.width not in WIDTHS:
        raise BadInput(f"{where}: width e={arch.width} not in {list(WIDTHS)}")
    if arch.depth not in DEPTHS:
        raise BadInput(f"{where}: depth l={arch.depth} not in {list(DEPTHS)}")
    if len(arch.mlp) != arch.depth:
        raise BadInput(f"{where}: field 'm' needs exactly l={arch.depth} entries (one per layer), got {len(arch.mlp)}")
    for i, (h, m) in enumerate(zip(arch.heads, arch.mlp), start=1):
        if h not in HEADS:
            raise BadInput(f"{where}: heads {h} of layer {i} not in {list(HEADS)}")
        if arch.width % h:
            raise BadInput(f"{where}: heads {h} of layer {i} do not divide the width e={arch.width}")
        if m not in MLP_RATIOS:
            raise BadInput(f"{where}: MLP ratio {m} of layer {i} not in {list(MLP_RATIOS)}")
    return arch


def parse_arch(arch: Any) -> Arch:
    """The architecture a string names; a malformed one is one ``BadInput`` line naming the fault."""
    if isinstance(arch, Arch):
        return check_arch(arch)
    fields, where = parse_int_fields(arch, "gpt", FIELDS)
    for key in ("e", "l"):
        if len(fields[key]) != 1:
            raise BadInput(f"{where}: field {key!r} takes one value, got {len(fields[key])}")
    width, depth = fields["e"][0], fields["l"][0]
    if width not in WIDTHS:
        raise BadInput(f"{where}: width e={width} not in {list(WIDTHS)}")
    if depth not in DEPTHS:
        raise BadInput(f"{where}: depth l={depth} not in {list(DEPTHS)}")
    for key in ("h", "m"):
        if len(fields[key]) != depth:
            raise BadInput(f"{where}: field {key!r} needs exactly l={depth} entries (one per layer), "
                           f"got {len(fields[key])}")
    return check_arch(Arch(width, tuple(fields["h"]), tuple(fields["m"])), where)


def canonical(arch: Any) -> str:
    """Parse and print back."""
    return format_arch(parse_arch(arch))


def to_indices(arch: Any) -> list[int]:
    """Choice index per decision: width, depth, heads of 6 slots, MLP ratios of 6 slots."""
    a = parse_arch(arch)
    heads = [HEADS.index(h) for h in a.heads] + [0] * (MAX_LAYERS - a.depth)
    mlp = [MLP_RATIOS.index(m) for m in a.mlp] + [0] * (MAX_LAYERS - a.depth)
    return [WIDTHS.index(a.width), DEPTHS.index(a.depth)] + heads + mlp


def from_indices(indices: Sequence[Any]) -> Arch:
    """The architecture of these choice indices (slots past the depth ignored)."""
    idx = [int(x) for x in indices]
    if len(idx) != N_INDICES:
        raise BadInput(f"gpt needs {N_INDICES} choice indices, got {len(idx)}")
    sizes = [len(WIDTHS), len(DEPTHS)] + [len(HEADS)] * MAX_LAYERS + [len(MLP_RATIOS)] * MAX_LAYERS
    for pos, (x, n) in enumerate(zip(idx, sizes)):
        if not 0 <= x < n:
            raise BadInput(f"gpt choice index {x} at position {pos} is outside 0..{n - 1}")
    depth = DEPTHS[idx[1]]
    heads = tuple(HEADS[x] for x in idx[2:2 + depth])
    mlp = tuple(MLP_RATIOS[x] for x in idx[2 + MAX_LAYERS:2 + MAX_LAYERS + depth])
    return Arch(WIDTHS[idx[0]], heads, mlp)


def onehot_offsets() -> list[int]:
    """Where each decision's block starts in the flat one-hot (decision-major, as ``Space.encode``)."""
    sizes = [len(WIDTHS), len(DEPTHS)] + [len(HEADS)] * MAX_LAYERS + [len(MLP_RATIOS)] * MAX_LAYERS
    out, off = [], 0
    for s in sizes:
        out.append(off)
        off += s
    return out


LARGEST = Arch(max(WIDTHS), (max(HEADS),) * MAX_LAYERS, (max(MLP_RATIOS),) * MAX_LAYERS)
SMALLEST = Arch(min(WIDTHS), (min(HEADS),) * min(DEPTHS), (min(MLP_RATIOS),) * min(DEPTHS))


def decode_macs(arch: Any, context: int, vocab_size: int) -> int:
    """Multiply-accumulates to decode one token with ``context`` earlier tokens in the key/value cache:
    per layer the q/k/v and output projections (4 e^2), the MLP (2 m e^2) and attention over the
    ``context + 1`` keys (2 e (context + 1)); then the tied output layer (e * vocab)."""
    a = parse_arch(arch)
    e = a.width
    per_layer = sum((4 + 2 * m) * e * e + 2 * e * (context + 1) for m in a.mlp)
    return per_layer + e * vocab_size


__all__ = ["Arch", "DEPTHS", "FIELDS", "HEADS", "LARGEST", "MAX_CONTEXT", "MAX_LAYERS", "MLP_RATIOS", "N_INDICES",
           "SMALLEST", "WIDTHS", "canonical", "check_arch", "decode_macs", "format_arch", "from_indices",
           "onehot_offsets", "parse_arch", "to_indices"]
