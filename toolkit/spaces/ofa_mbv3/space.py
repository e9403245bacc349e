"""The OFA-style MobileNetV3 space: 5 stages of 2-4 MBConv blocks, per-block kernel and expansion.

Architecture strings are ``ks=<20 kernels>;e=<20 expand ratios>;d=<5 depths>;r=<resolution>``
with lists joined by ``-`` and 4 slots per stage, stage-major. Stage ``s`` uses only its first
``d[s]`` slots; the canonical string writes the first choice (3) into the slots it does not use,
so two strings that build the same network print, and encode, the same.
"""
from __future__ import annotations

from typing import Any

from modnas.toolkit.errors import BadInput
from modnas.toolkit.spaces.base import Decision, Space, parse_int_fields
from modnas.toolkit.spaces.ofa_mbv3.blocks import (DEFAULT_WIDTH_MULT, DEPTHS, EXPANDS, KERNELS, N_STAGES, RESOLUTIONS,
                                              SLOTS, OFAConfig, count_macs)

# HELP's ten reference architectures of the hardware embedding: the rows of
# shared/data/help_ofa/help_ofa_archs.csv.gz with hw_embedding_ref == 1 (HELP's
# hardware_embedding_index.pt), in the order of their ofa_arch_id, written here in canonical form.
REFERENCE_IDS: tuple[int, ...] = (1316, 1587, 1621, 1636, 1980, 2329, 2487, 3355, 3740, 4948)
REFERENCE_ARCHS: tuple[str, ...] = (
    "ks=7-7-5-5-7-7-3-3-7-7-5-3-3-5-3-3-3-5-3-3;e=3-6-3-6-6-4-3-3-4-6-6-3-3-4-4-3-3-3-3-3;d=4-3-3-4-2;r=196",
    "ks=7-3-3-3-5-3-3-3-5-7-3-3-3-7-5-3-3-5-3-3;e=4-3-6-3-6-6-3-3-3-6-3-3-6-3-3-3-6-3-3-3;d=3-2-2-3-2;r=172",
    "ks=7-5-3-3-3-3-3-3-7-7-3-3-5-5-3-3-7-7-7-3;e=4-4-3-3-4-4-3-3-6-3-3-3-3-6-3-3-3-6-4-3;d=2-2-2-2-3;r=204",
    "ks=3-7-5-7-3-3-5-3-3-3-5-3-7-5-3-7-7-5-5-3;e=4-3-3-6-3-3-4-3-6-6-4-6-3-6-6-6-4-4-4-6;d=4-3-4-4-4;r=200",
    "ks=5-7-3-3-7-7-3-3-7-3-3-3-7-7-7-3-7-7-3-3;e=4-6-3-3-4-6-3-3-4-3-3-3-6-4-4-3-4-6-3-3;d=2-2-2-3-2;r=136",
    "ks=7-7-5-7-3-7-3-3-3-7-7-3-3-3-7-7-3-5-7-7;e=6-4-3-6-6-6-3-3-6-4-6-3-6-6-4-3-4-6-6-3;d=4-2-3-4-4;r=224",
    "ks=5-5-7-3-3-3-3-3-7-3-3-5-7-3-3-3-3-3-3-3;e=6-3-4-4-3-3-3-3-3-3-4-4-3-3-3-3-3-6-6-3;d=4-2-4-2-3;r=132",
    "ks=7-3-3-3-3-7-5-7-7-3-3-3-3-3-3-7-7-7-3-7;e=3-6-3-3-6-4-3-4-6-4-3-3-6-3-4-3-4-3-3-6;d=2-4-2-4-4;r=152",
    "ks=7-3-3-3-3-7-3-5-5-5-5-3-5-5-3-5-5-5-3-7;e=4-4-3-3-6-3-6-4-4-4-4-3-3-4-6-4-6-3-3-3;d=2-4-3-4-4;r=152",
    "ks=3-3-7-7-7-7-7-7-5-7-3-3-3-5-5-3-3-7-3-3;e=3-3-4-6-6-6-4-3-6-3-3-3-3-3-6-3-6-6-3-3;d=4-4-3-4-2;r=200",
)



class OFAMobileNetV3Space(Space):
    """Kernel 3/5/7 and expand 3/4/6 per block, depth 2/3/4 per stage, input 128..224 step 4."""

    name = "ofa_mbv3"
    table_metrics = ("latency",)  # HELP's OFA settings (GPUs at several batch sizes)
    shipped_runs = {None: "ofa_mbv3"}
    # supernet mode: with 46 decisions the hypernetwork collapses onto whatever the supernet trained
    # first, hence a warm-up on random subnets and one random subnet in every weight step
    warmup_share = 0.3
    random_subnets = 1

    def __init__(self) -> None:
        self.decisions = (
            [Decision(f"ks{i}", tuple(str(k) for k in KERNELS)) for i in range(N_STAGES * SLOTS)]
            + [Decision(f"e{i}", tuple(str(e) for e in EXPANDS)) for i in range(N_STAGES * SLOTS)]
            + [Decision(f"d{s}", tuple(str(d) for d in DEPTHS)) for s in range(N_STAGES)]
            + [Decision("r", tuple(str(r) for r in RESOLUTIONS))]
        )

    # -- strings -----------------------------------------------------------------------------
    @staticmethod
    def _parse(arch: Any) -> tuple[list[int], list[int], list[int], int]:
        fields, where = parse_int_fields(arch, "ofa_mbv3", ("ks", "e", "d", "r"))
        ks, e, d, r = fields["ks"], fields["e"], fields["d"], fields["r"]
        for key, vals, n in (("ks", ks, N_STAGES * SLOTS), ("e", e, N_STAGES * SLOTS), ("d", d, N_STAGES), ("r", r, 1)):
            if len(vals) != n:
                raise BadInput(f"{where}: field {key!r} needs {n} value(s), got {len(vals)}")
        bad_d = [x for x in d if x not in DEPTHS]
        if bad_d:
            raise BadInput(f"{where}: depth {bad_d[0]} not in {list(DEPTHS)}")
        if r[0] not in RESOLUTIONS:
            raise BadInput(f"{where}: resolution {r[0]} not in 128..224 step 4")
        for s in range(N_STAGES):
            for b in range(d[s]):
                i = s * SLOTS + b
                if ks[i] not in KERNELS:
                    raise BadInput(f"{where}: kernel {ks[i]} of stage {s + 1} block {b + 1} not in {list(KERNELS)}")
                if e[i] not in EXPANDS:
                    raise BadInput(f"{where}: expand ratio {e[i]} of stage {s + 1} block {b + 1} not in {list(EXPANDS)}")
        return ks, e, d, r[0]

    def to_indices(self, arch: str) -> list[int]:
        ks, e, d, r = self._parse(arch)
        ks_idx, e_idx = [0] * (N_STAGES * SLOTS), [0] * (N_STAGES * SLOTS)
        for s in range(N_STAGES):
            for b in range(d[s]):
                i = s * SLOTS + b
                ks_idx[i], e_idx[i] = KERNELS.index(ks[i]), EXPANDS.index(e[i])
        return ks_idx + e_idx + [DEPTHS.index(x) for x in d] + [RESOLUTIONS.index(r)]

    def from_indices(self, indices: Any) -> str:
        idx = [int(x) for x in indices]
        n = 2 * N_STAGES * SLOTS + N_STAGES + 1
        if len(idx) != n:
            raise BadInput(f"ofa_mbv3 needs {n} choice indices, got {len(idx)}")
        for dec, x in zip(self.decisions, idx):
            if not 0 <= x < len(dec.choices):
                raise BadInput(f"ofa_mbv3 choice index {x} for {dec.name} is outside 0..{len(dec.choices) - 1}")
        m = N_STAGES * SLOTS
        d = [DEPTHS[x] for x in idx[2 * m:2 * m + N_STAGES]]
        ks, e = [KERNELS[0]] * m, [EXPANDS[0]] * m
        for s in range(N_STAGES):
            for b in range(d[s]):
                i = s * SLOTS + b
                ks[i], e[i] = KERNELS[idx[i]], EXPANDS[idx[m + i]]
        r = RESOLUTIONS[idx[-1]]
        return self.format(ks, e, d, r)

    @staticmethod
    def format(ks: list[int], e: list[int], d: list[int], r: int) -> str:
        """The string of 20 kernels, 20 expand ratios, 5 depths and a resolution (not canonicalized)."""
        join = lambda xs: "-".join(str(int(x)) for x in xs)  # noqa: E731
        return f"ks={join(ks)};e={join(e)};d={join(d)};r={int(r)}"

    def config(self, arch: str) -> OFAConfig:
        """The active blocks' kernels and expand ratios in network order, the depths and the size."""
        ks, e, d, r = self._parse(arch)
        act = [s * SLOTS + b for s in range(N_STAGES) for b in range(d[s])]
        return OFAConfig(tuple(ks[i] for i in act), tuple(e[i] for i in act), tuple(d), r)

    def from_active(self, ks_active: list[int], e_active: list[int], d: list[int], r: int) -> str:
        """The canonical string from the active lists (``sum(d)`` entries each, network order)."""
        if len(d) != N_STAGES or len(ks_active) != sum(d) or len(e_active) != sum(d):
            raise BadInput(f"ofa_mbv3 active lists need {N_STAGES} depths and sum(d) kernels/expands")
        m = N_STAGES * SLOTS
        ks, e = [KERNELS[0]] * m, [EXPANDS[0]] * m
        j = 0
        for s in range(N_STAGES):
            for b in range(d[s]):
                ks[s * SLOTS + b], e[s * SLOTS + b] = ks_active[j], e_active[j]
                j += 1
        return self.canonical(self.format(ks, e, d, r))

    def reference_archs(self) -> list[str]:
        return list(REFERENCE_ARCHS)

    # -- properties of the network -------------------------------------------------------------
    def input_shape(self, arch: str) -> tuple[int, ...]:
        r = self._parse(arch)[3]
        return (1, 3, r, r)

    def flops(self, arch: str, width_mult: float = DEFAULT_WIDTH_MULT) -> float:
        """MACs in millions at ``width_mult`` (1.2 by default), 1000 classes."""
        return count_macs(self.config(arch), width_mult) / 1e6

    def kernel_names(self) -> list[str]:
        from modnas.toolkit.spaces.ofa_mbv3.blocks import kernel_names

        return kernel_names()

    def kernel_counts(self, archs: Any) -> Any:
        import numpy as np

        from modnas.toolkit.spaces.ofa_mbv3.blocks import kernel_row

        index = {n: i for i, n in enumerate(self.kernel_names())}
        return np.array([kernel_row(self.config(a), index) for a in archs], dtype=np.float64).reshape(len(archs), -1)

    def build(self, arch: str, num_classes: int = 1000, width_mult: float = DEFAULT_WIDTH_MULT,
              dropout: float = 0.0) -> Any:
        from modnas.toolkit.spaces.ofa_mbv3.net import OFAMobileNetV3

        return OFAMobileNetV3(self.config(arch), num_classes=num_classes, width_mult=width_mult, dropout=dropout)

    # -- tables ------------------------------------------------------------------------------------
    def load_table(self, data_dir: Any, metric: str = "latency") -> Any:
        if metric not in self.table_metrics:
            raise BadInput(self._no_table(metric))
        from modnas.toolkit.spaces.ofa_mbv3.tables import load_latency

        return load_latency(data_dir)

    # -- the supernet ------------------------------------------------------------------------------
    # Resolution is a decision: the user's images (side ``S``) are resized to ``S * r / 224`` for a
    # subnet of resolution ``r``, so smaller inputs cost accuracy as they do at full size.
    def build_supernet(self, num_classes: int, cfg: Any) -> Any:
        from modnas.toolkit.spaces.ofa_mbv3.supernet import OFASupernet

        return OFASupernet(num_classes=num_classes)  # the width the predictors and exports use

    def load_supernet(self, args: dict[str, Any]) -> Any:
        from modnas.toolkit.spaces.ofa_mbv3.supernet import OFASupernet

        return OFASupernet(**args)

    def _resized(self, x: Any, onehot: Any) -> tuple[Any, Any]:
        """The input at the subnet's scaled resolution, and the chosen resolution's one-hot entry."""
        import torch.nn.functional as F

        flat = onehot.reshape(-1)
        offset = self.onehot_dim - len(RESOLUTIONS)
        idx = int(flat[offset:].detach().argmax())
        side = max(8, int(round(x.shape[-1] * RESOLUTIONS[idx] / max(RESOLUTIONS))))
        if side != x.shape[-1]:
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        return x, flat[offset + idx]

    def supernet_logits(self, supernet: Any, x: Any, onehot: Any) -> Any:
        x, weight = self._resized(x, onehot)
        return supernet(x, onehot.reshape(-1)) * weight  # straight-through: 1 in value

    def prepare_eval(self, supernet: Any, x: Any, onehot: Any) -> None:
        from modnas.toolkit.spaces.ofa_mbv3.supernet import calibrate_bn

        arch = self.decode(onehot.reshape(-1).detach().numpy())
        calibrate_bn(supernet, self._resized(x, onehot)[0], arch)
        supernet.eval()

    def subnet(self, supernet: Any, arch: str) -> Any:
        return supernet.subnet(arch)

    def run_build_kwargs(self, config: Any, supernet_args: dict[str, Any] | None) -> dict[str, Any]:
        return {"width_mult": float(supernet_args["width_mult"])} if supernet_args else {}
