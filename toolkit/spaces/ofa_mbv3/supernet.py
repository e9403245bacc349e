"""A weight-entangled supernet of the ofa_mbv3 space.

Every stage holds 4 blocks at the largest choices (kernel 7, expand ratio 6). A subnet uses the
first ``d`` blocks of each stage, the centre ``k x k`` of each depthwise kernel and the first
``hidden`` channels of each expanded layer (BN statistics and SE weights sliced alike).
:meth:`OFASupernet.extract` copies those slices into a state dict that loads strictly into the
standalone :class:`modnas.toolkit.spaces.ofa_mbv3.net.OFAMobileNetV3` of the same architecture.
``forward(x, arch)`` takes a string, an ``OFAConfig`` or a flat (straight-through) one-hot laid out
as ``space.encode``, like the NB201 supernet's, so a sampler's output can drive it.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces.ofa_mbv3.blocks import (DEFAULT_WIDTH_MULT, DEPTHS, EXPANDS, KERNELS, N_STAGES, SLOTS,
                                              STAGE_HSWISH, STAGE_SE, STAGE_STRIDES, OFAConfig, hidden_width,
                                              make_divisible, widths)
from modnas.toolkit.spaces.ofa_mbv3.net import ConvBNAct, FirstBlock, Head

MAX_KERNEL = max(KERNELS)


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, n: int) -> torch.Tensor:
    """Batch norm over the first ``n`` channels of ``bn`` (running statistics updated in place)."""
    mean = bn.running_mean[:n] if bn.running_mean is not None else None
    var = bn.running_var[:n] if bn.running_var is not None else None
    use_batch = bn.training or mean is None
    return F.batch_norm(x, mean, var, bn.weight[:n], bn.bias[:n], use_batch, bn.momentum or 0.0, bn.eps)


def _bn_state(bn: nn.BatchNorm2d, n: int) -> dict[str, torch.Tensor]:
    return {"weight": bn.weight[:n], "bias": bn.bias[:n], "running_mean": bn.running_mean[:n],
            "running_var": bn.running_var[:n], "num_batches_tracked": bn.num_batches_tracked}


class DynamicMBConv(nn.Module):
    """An MBConv at kernel 7 / expand 6 that runs any smaller kernel and expand ratio."""

    def __init__(self, c_in: int, c_out: int, stride: int, se: bool, hswish: bool) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride, self.use_se = c_in, c_out, stride, se
        h = hidden_width(c_in, max(EXPANDS))
        self.expand_conv = nn.Conv2d(c_in, h, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(h)
        self.dw_conv = nn.Conv2d(h, h, MAX_KERNEL, groups=h, bias=False)  # weight [h, 1, 7, 7]
        self.dw_bn = nn.BatchNorm2d(h)
        if se:
            m = make_divisible(h // 4, 8)
            self.se_reduce = nn.Conv2d(h, m, 1, bias=True)
            self.se_expand = nn.Conv2d(m, h, 1, bias=True)
        self.project_conv = nn.Conv2d(h, c_out, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(c_out)
        self.act: Callable[[torch.Tensor], torch.Tensor] = F.hardswish if hswish else F.relu

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.c_in == self.c_out

    def dw_weight(self, kernel: int) -> torch.Tensor:
        """The centre ``kernel x kernel`` of the shared 7x7 depthwise weights."""
        lo = (MAX_KERNEL - kernel) // 2
        return self.dw_conv.weight[:, :, lo:lo + kernel, lo:lo + kernel]

    def forward(self, x: torch.Tensor, kernel: int, expand: int, scale: torch.Tensor | None = None) -> torch.Tensor:
        """``scale`` (a scalar, 1 in value when straight-through) multiplies the block's own branch."""
        h = hidden_width(self.c_in, expand)
        y = self.act(_bn(F.conv2d(x, self.expand_conv.weight[:h]), self.expand_bn, h))
        y = F.conv2d(y, self.dw_weight(kernel)[:h], stride=self.stride, padding=kernel // 2, groups=h)
        y = self.act(_bn(y, self.dw_bn, h))
        if self.use_se:
            m = make_divisible(h // 4, 8)
            s = y.mean(dim=(2, 3), keepdim=True)
            s = F.relu(F.conv2d(s, self.se_reduce.weight[:m, :h], self.se_reduce.bias[:m]))
            y = y * F.hardsigmoid(F.conv2d(s, self.se_expand.weight[:h, :m], self.se_expand.bias[:h]))
        y = _bn(F.conv2d(y, self.project_conv.weight[:, :h]), self.project_bn, self.c_out)
        if scale is not None:
            y = y * scale
        return x + y if self.residual else y

    def sub_state(self, kernel: int, expand: int) -> dict[str, torch.Tensor]:
        """This block's weights for one choice, keyed as the standalone ``MBConv``'s state dict."""
        h = hidden_width(self.c_in, expand)
        out: dict[str, torch.Tensor] = {"expand.conv.weight": self.expand_conv.weight[:h]}
        out.update({f"expand.bn.{k}": v for k, v in _bn_state(self.expand_bn, h).items()})
        out["depthwise.conv.weight"] = self.dw_weight(kernel)[:h]
        out.update({f"depthwise.bn.{k}": v for k, v in _bn_state(self.dw_bn, h).items()})
        if self.use_se:
            m = make_divisible(h // 4, 8)
            out["se.reduce.weight"] = self.se_reduce.weight[:m, :h]
            out["se.reduce.bias"] = self.se_reduce.bias[:m]
            out["se.expand.weight"] = self.se_expand.weight[:h, :m]
            out["se.expand.bias"] = self.se_expand.bias[:h]
        out["project.conv.weight"] = self.project_conv.weight[:, :h]
        out.update({f"project.bn.{k}": v for k, v in _bn_state(self.project_bn, self.c_out).items()})
        return out


class OFASupernet(nn.Module):
    """Stem, first block and head as in the standalone net; 5 stages of 4 dynamic blocks."""

    def __init__(self, num_classes: int = 1000, width_mult: float = DEFAULT_WIDTH_MULT, dropout: float = 0.0) -> None:
        super().__init__()
        from modnas.toolkit.spaces import get_space

        self.space = get_space("ofa_mbv3")
        self.num_classes, self.width_mult, self.dropout = num_classes, width_mult, dropout
        w = widths(width_mult)
        self.stem = ConvBNAct(3, w.stem, 3, stride=2, act=nn.Hardswish())
        self.first = FirstBlock(w.stem)
        stages = []
        c = w.stem
        for s in range(N_STAGES):
            blocks = [DynamicMBConv(c if b == 0 else w.stages[s], w.stages[s], STAGE_STRIDES[s] if b == 0 else 1,
                                    STAGE_SE[s], STAGE_HSWISH[s]) for b in range(SLOTS)]
            stages.append(nn.ModuleList(blocks))
            c = w.stages[s]
        self.stages = nn.ModuleList(stages)
        self.head = Head(c, w.final, w.mix, num_classes, dropout)

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this supernet (to store beside its weights)."""
        return {"num_classes": self.num_classes, "width_mult": self.width_mult, "dropout": self.dropout}

    def _cfg(self, arch: str | OFAConfig | torch.Tensor) -> OFAConfig:
        if isinstance(arch, OFAConfig):
            return arch
        if isinstance(arch, torch.Tensor):
            return self.space.config(self.space.from_indices(self._choices(arch)))
        return self.space.config(arch)

    def _choices(self, onehot: torch.Tensor) -> list[int]:
        """Arg-max per decision of a flat one-hot ``[onehot_dim]`` laid out as ``space.encode``."""
        flat = onehot.reshape(-1)
        if flat.numel() != self.space.onehot_dim:
            raise BadInput(f"ofa_mbv3 one-hot needs {self.space.onehot_dim} entries, got {flat.numel()}")
        out, off = [], 0
        for d in self.space.decisions:
            out.append(int(flat[off:off + len(d.choices)].detach().argmax()))
            off += len(d.choices)
        return out

    def _forward_onehot(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Straight-through forward: each active block's branch is scaled by the weights of its chosen
        kernel and expand ratio, each stage's output by its chosen depth's weight (1 in value for an
        exact one-hot), so the loss has a gradient with respect to those entries. The resolution
        entry has no effect here (the input size is the caller's)."""
        flat = onehot.reshape(-1)
        idx = self._choices(flat)
        offsets = np.cumsum([0] + [len(d.choices) for d in self.space.decisions]).tolist()
        m = N_STAGES * SLOTS
        w = lambda k: flat[offsets[k] + idx[k]]  # noqa: E731  the chosen entry of decision k
        x = self.first(self.stem(x))
        for s in range(N_STAGES):
            depth = DEPTHS[idx[2 * m + s]]
            for b in range(depth):
                slot = s * SLOTS + b
                block = self.stages[s][b]
                x = block(x, KERNELS[idx[slot]], EXPANDS[idx[m + slot]], scale=w(slot) * w(m + slot))
            x = x * w(2 * m + s)
        return self.head(x)

    def _active(self, cfg: OFAConfig) -> list[tuple[DynamicMBConv, int, int]]:
        out, i = [], 0
        for s in range(N_STAGES):
            for b in range(cfg.d[s]):
                out.append((self.stages[s][b], cfg.ks[i], cfg.e[i]))
                i += 1
        return out

    def forward(self, x: torch.Tensor, arch: str | OFAConfig | torch.Tensor) -> torch.Tensor:
        """Logits of subnet ``arch``: a string, an :class:`OFAConfig`, or a (straight-through) one-hot."""
        if isinstance(arch, torch.Tensor):
            return self._forward_onehot(x, arch)
        x = self.first(self.stem(x))
        for block, k, e in self._active(self._cfg(arch)):
            x = block(x, k, e)
        return self.head(x)

    def extract(self, arch: str | OFAConfig | torch.Tensor) -> dict[str, torch.Tensor]:
        """Copies of the subnet's weights, loadable strictly into ``space.build(arch)``."""
        cfg = self._cfg(arch)
        state: dict[str, torch.Tensor] = {}
        for name in ("stem", "first", "head"):
            for key, value in getattr(self, name).state_dict().items():
                state[f"{name}.{key}"] = value
        for j, (block, k, e) in enumerate(self._active(cfg)):
            for key, value in block.sub_state(k, e).items():
                state[f"blocks.{j}.{key}"] = value
        return {key: value.detach().clone().contiguous() for key, value in state.items()}

    def subnet(self, arch: str | OFAConfig | torch.Tensor) -> nn.Module:
        """The standalone network of ``arch`` carrying the supernet's weights."""
        from modnas.toolkit.spaces.ofa_mbv3.net import OFAMobileNetV3

        cfg = self._cfg(arch)
        net = OFAMobileNetV3(cfg, num_classes=self.num_classes, width_mult=self.width_mult, dropout=self.dropout)
        net.load_state_dict(self.extract(cfg), strict=True)
        return net


# -- helpers for training and read-out -----------------------------------------------------------
def largest_arch(space: Any) -> str:
    """Kernel 7, expand 6 and depth 4 everywhere, at the largest resolution."""
    return space.from_indices([len(d.choices) - 1 for d in space.decisions])


def calibrate_bn(supernet: OFASupernet, images: torch.Tensor, arch: str) -> None:
    """Reset the running BN statistics that ``arch`` uses to those of ``images`` (one batch)."""
    bns = [m for m in supernet.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 1.0
    supernet.train()
    try:
        with torch.no_grad():
            supernet(images, arch)
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom

