"""The standalone OFA-style MobileNetV3 network of one architecture (no weight sharing).

Layout (MobileNetV3-large grouped into 5 stages, widths times ``width_mult`` rounded to 8):
stem 3x3/2 conv + BN + h-swish; a first block (depthwise 3x3 + 1x1, identity skip); the active
MBConv blocks (1x1 expand, depthwise kxk, squeeze-excite in stages 2, 4, 5, 1x1 project; ReLU in
stages 1-2, h-swish in 3-5; identity skip where shapes allow); a 1x1 conv + BN + h-swish; global
average pool; a 1x1 "feature mix" conv + h-swish without BN; dropout and a linear classifier.
"""
from __future__ import annotations

import torch
from torch import nn

from modnas.toolkit.spaces.ofa_mbv3.blocks import DEFAULT_WIDTH_MULT, BlockSpec, OFAConfig, block_specs, widths


def activation(hswish: bool) -> nn.Module:
    return nn.Hardswish() if hswish else nn.ReLU()


class ConvBNAct(nn.Module):
    """Conv (no bias, padding k//2) + BN + optional activation; keys ``conv.*`` and ``bn.*``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: nn.Module | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Global pool, 1x1 reduce + ReLU, 1x1 expand + hard sigmoid, channel-wise scale."""

    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)
        self.relu = nn.ReLU()
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * self.gate(self.expand(self.relu(self.reduce(s))))


class FirstBlock(nn.Module):
    """Depthwise 3x3 + BN + ReLU, then 1x1 + BN, plus the input (expand ratio 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = ConvBNAct(channels, channels, 3, groups=channels, act=nn.ReLU())
        self.project = ConvBNAct(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.depthwise(x))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, optional SE, 1x1 linear project."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.residual = spec.residual
        self.expand = ConvBNAct(spec.c_in, spec.hidden, 1, act=activation(spec.hswish))
        self.depthwise = ConvBNAct(spec.hidden, spec.hidden, spec.kernel, stride=spec.stride, groups=spec.hidden,
                                   act=activation(spec.hswish))
        self.se = SqueezeExcite(spec.hidden, spec.se_mid) if spec.se else nn.Identity()
        self.project = ConvBNAct(spec.hidden, spec.c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class Head(nn.Module):
    """Final 1x1 conv + BN + h-swish, global pool, feature-mix 1x1 + h-swish, dropout, classifier."""

    def __init__(self, c_in: int, final: int, mix: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.final = ConvBNAct(c_in, final, 1, act=nn.Hardswish())
        self.mix = nn.Conv2d(final, mix, 1, bias=False)
        self.mix_act = nn.Hardswish()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(mix, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final(x).mean(dim=(2, 3), keepdim=True)
        x = torch.flatten(self.mix_act(self.mix(x)), 1)
        return self.classifier(self.dropout(x))


class OFAMobileNetV3(nn.Module):
    """One subnet of the space as an ordinary network; any input size (``cfg.r`` sets only MACs)."""

    def __init__(self, cfg: OFAConfig, num_classes: int = 1000, width_mult: float = DEFAULT_WIDTH_MULT,
                 dropout: float = 0.0, in_channels: int = 3) -> None:
        super().__init__()
        w = widths(width_mult)
        self.cfg = cfg
        self.stem = ConvBNAct(in_channels, w.stem, 3, stride=2, act=nn.Hardswish())
        self.first = FirstBlock(w.stem)
        self.blocks = nn.ModuleList(MBConv(spec) for spec in block_specs(cfg, width_mult))
        self.head = Head(w.stages[-1], w.final, w.mix, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return self.head(x)
