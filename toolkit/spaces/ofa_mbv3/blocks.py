"""The OFA-style MobileNetV3 network's structure: stage constants, a subnet's configuration and the
blocks it builds (shared by the space, its network and the supernet)."""
from __future__ import annotations

import math
from dataclasses import dataclass

N_STAGES = 5
SLOTS = 4  # blocks per stage at most
KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANDS: tuple[int, ...] = (3, 4, 6)
DEPTHS: tuple[int, ...] = (2, 3, 4)
RESOLUTIONS: tuple[int, ...] = tuple(range(128, 225, 4))

# MobileNetV3-large at width 1.0 (Howard et al. 2019, table 1, grouped into OFA's 5 stages).
STEM_WIDTH = 16
STAGE_WIDTHS: tuple[int, ...] = (24, 40, 80, 112, 160)
STAGE_STRIDES: tuple[int, ...] = (2, 2, 2, 1, 2)
STAGE_SE: tuple[bool, ...] = (False, True, False, True, True)
STAGE_HSWISH: tuple[bool, ...] = (False, False, True, True, True)
FINAL_WIDTH = 960
MIX_WIDTH = 1280
DEFAULT_WIDTH_MULT = 1.2


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor``, never more than 10 % below ``value``."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return out


@dataclass(frozen=True)
class OFAConfig:
    """One architecture: the active blocks' kernels and expand ratios (network order), depths, size."""

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    r: int


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block of a concrete network (widths already multiplied and rounded)."""

    stage: int
    c_in: int
    c_out: int
    hidden: int
    kernel: int
    stride: int
    se: bool
    hswish: bool
    f_in: int   # input feature-map side
    f_out: int  # output feature-map side

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.c_in == self.c_out

    @property
    def se_mid(self) -> int:
        return make_divisible(self.hidden // 4, 8)


@dataclass(frozen=True)
class Widths:
    stem: int
    stages: tuple[int, ...]
    final: int
    mix: int


def widths(width_mult: float = DEFAULT_WIDTH_MULT) -> Widths:
    """Channel widths of the stem, the 5 stages and the head at a width multiplier."""
    return Widths(
        stem=make_divisible(STEM_WIDTH * width_mult),
        stages=tuple(make_divisible(w * width_mult) for w in STAGE_WIDTHS),
        final=make_divisible(FINAL_WIDTH * width_mult),
        mix=make_divisible(MIX_WIDTH * width_mult),
    )


def hidden_width(c_in: int, expand: int) -> int:
    return make_divisible(round(c_in * expand), 8)


def block_specs(cfg: OFAConfig, width_mult: float = DEFAULT_WIDTH_MULT) -> list[BlockSpec]:
    """The active MBConv blocks of ``cfg`` in network order (the fixed first block excluded)."""
    w = widths(width_mult)
    f = (cfg.r + 1) // 2  # after the stride-2 stem (the first block keeps the size)
    c = w.stem
    specs: list[BlockSpec] = []
    i = 0
    for s in range(N_STAGES):
        for b in range(cfg.d[s]):
            stride = STAGE_STRIDES[s] if b == 0 else 1
            f_out = math.ceil(f / stride)
            specs.append(BlockSpec(s, c, w.stages[s], hidden_width(c, cfg.e[i]), cfg.ks[i], stride,
                                   STAGE_SE[s], STAGE_HSWISH[s], f, f_out))
            c, f = w.stages[s], f_out
            i += 1
    return specs


def count_macs(cfg: OFAConfig, width_mult: float = DEFAULT_WIDTH_MULT, num_classes: int = 1000) -> int:
    """Multiply-accumulates at batch 1: convs, SE FCs and the classifier (no BN, activations, pools)."""
    w = widths(width_mult)
    f = (cfg.r + 1) // 2
    total = 3 * w.stem * 9 * f * f              # stem 3x3
    total += (w.stem * 9 + w.stem * w.stem) * f * f  # first block: depthwise 3x3 + 1x1
    specs = block_specs(cfg, width_mult)
    for b in specs:
        total += b.c_in * b.hidden * b.f_in ** 2          # 1x1 expand
        total += b.hidden * b.kernel ** 2 * b.f_out ** 2  # depthwise
        if b.se:
            total += 2 * b.hidden * b.se_mid              # SE reduce + expand
        total += b.hidden * b.c_out * b.f_out ** 2        # 1x1 project
    f_last = specs[-1].f_out
    total += w.stages[-1] * w.final * f_last ** 2
    total += w.final * w.mix + w.mix * num_classes
    return total


def kernel_names() -> list[str]:
    """The structural model's kernels: each MBConv kind (stage, kernel, expand; a stage's first block apart)
    weighted by its output pixels relative to 224x224, the blocks per stage (a fixed cost per block), and the
    stem and head (pixels)."""
    names = [f"mb{k}x{e}@s{s}{'b0' if first else ''}" for s in range(N_STAGES) for first in (True, False)
             for k in KERNELS for e in EXPANDS]
    return names + [f"blocks@s{s}" for s in range(N_STAGES)] + ["stem+head"]


def kernel_row(cfg: OFAConfig, index: dict[str, int]) -> list[float]:
    """One network's kernel counts in the order of :func:`kernel_names` (``index``: name -> column)."""
    row = [0.0] * len(index)
    at224 = block_specs(OFAConfig(cfg.ks, cfg.e, cfg.d, 224))
    for b, ref, expand in zip(block_specs(cfg), at224, cfg.e):
        first = b.stride != 1 or b.c_in != b.c_out
        row[index[f"mb{b.kernel}x{expand}@s{b.stage}{'b0' if first else ''}"]] += (b.f_out / ref.f_out) ** 2
        row[index[f"blocks@s{b.stage}"]] += 1.0
    row[index["stem+head"]] += (cfg.r / 224) ** 2
    return row
