"""The search-space interface: everything the toolkit knows of a space, asked of the space.

A space is one package under ``toolkit/spaces/`` and one entry in the registry
(:data:`modnas.toolkit.spaces.SPACES`). It says:

- **strings**: its decisions, the canonical string of an architecture and how it is validated
  (``to_indices`` / ``from_indices``), its reference architectures (the hardware embedding);
- **networks**: ``build`` (a ``torch.nn.Module``), ``input_shape`` and ``example_input`` (what an
  export feeds it), ``flops``, and what a board times (``board_export``: one graph, or a language
  model's decode and prefill graphs);
- **enumeration**: whether every architecture can be listed (``all_archs``) and which ones are worth
  scoring (``candidates``, ``span``, ``usable``);
- **tables**: the measured device tables it reads from a data directory (``table_metrics``,
  ``load_table``, ``predictor_table``) and how well a table column must cover the space;
- **objective**: benchmark tasks with an accuracy table (``tasks``), else the supernet's error on
  the user's images, or a surrogate fitted to a trained supernet's held-out losses (``quality``
  names the objective in read-outs: ``error`` or ``loss``);
- **search**: its supernet (``build_supernet``, ``load_supernet``, ``supernet_logits``,
  ``prepare_eval``, ``subnet``), its training recipe (``warmup_share``, ``random_subnets``) and the
  build arguments a run's supernet fixes for its subnets (``run_build_kwargs``);
- **shipped runs**: the search runs the package ships for it (``shipped_runs``).

Every capability has a default: a space with no tables, tasks or supernet says so in one line
(``BadInput``) when asked for one.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from modnas.toolkit.errors import BadInput


@dataclass(frozen=True)
class Decision:
    """One categorical choice of the space (an edge's op, a block's kernel size, ...)."""

    name: str
    choices: tuple[str, ...]


_FIELD = re.compile(r"^\s*([A-Za-z_]+)\s*=\s*(.*?)\s*$")


def parse_int_fields(arch: Any, space: str, keys: Sequence[str]) -> tuple[dict[str, list[int]], str]:
    """``k1=1-2;k2=3;...`` (every key of ``keys`` once, integers joined by ``-``) as ``{key: [ints]}``,
    with the message prefix naming the architecture; a malformed string is one ``BadInput`` line."""
    if not isinstance(arch, str):
        raise BadInput(f"architecture must be a string, got {type(arch).__name__}")
    text = " ".join(arch.split())
    shown = text if len(text) <= 120 else text[:117] + "..."
    where = f"malformed {space} architecture {shown!r}"
    fields: dict[str, list[int]] = {}
    for part in text.split(";"):
        match = _FIELD.match(part)
        if not match:
            raise BadInput(f"{where}: expected '{';'.join(k + '=...' for k in keys)}', got part {part.strip()!r}")
        key, value = match.group(1), match.group(2)
        if key not in keys:
            raise BadInput(f"{where}: unknown field {key!r} (known: {', '.join(keys)})")
        if key in fields:
            raise BadInput(f"{where}: field {key!r} given twice")
        items = [x.strip() for x in value.split("-")]
        if not all(x.isdigit() for x in items):
            raise BadInput(f"{where}: field {key!r} must be integers joined by '-', got {value!r}")
        fields[key] = [int(x) for x in items]
    missing = [k for k in keys if k not in fields]
    if missing:
        raise BadInput(f"{where}: missing field(s) {', '.join(missing)}")
    return fields, where


class Table(Protocol):
    """Devices x architectures for one metric: column ``j`` of ``values`` is ``archs[j]``; NaN where
    not measured."""

    metric: str
    keys: list[str]
    values: np.ndarray
    digest: str

    @property
    def archs(self) -> list[str]: ...

    def row(self, key: str) -> np.ndarray: ...

    def values_by_arch(self, key: str) -> dict[str, float]: ...

    def subset(self, keys: list[str]) -> "Table": ...


class Space(ABC):
    """A categorical architecture space with a canonical string form."""

    name: str = ""
    inputs: str = "images"  # what the networks take: "images", or "tokens" (language models)
    decisions: list[Decision]

    # -- strings -----------------------------------------------------------------------------------
    @abstractmethod
    def to_indices(self, arch: str) -> list[int]:
        """Choice index per decision; raises ``BadInput`` on a malformed string."""

    @abstractmethod
    def from_indices(self, indices: list[int] | np.ndarray) -> str:
        """The canonical string of the architecture with these choices."""

    @abstractmethod
    def reference_archs(self) -> list[str]:
        """The fixed architectures whose measurements form a device's hardware embedding."""

    def canonical(self, arch: str) -> str:
        """Parse and print back, so equal networks share one string."""
        return self.from_indices(self.to_indices(arch))

    @property
    def onehot_dim(self) -> int:
        return sum(len(d.choices) for d in self.decisions)

    def encode(self, archs: Sequence[str]) -> np.ndarray:
        """Decision-major one-hot rows, float32 ``[n, onehot_dim]``."""
        out = np.zeros((len(archs), self.onehot_dim), dtype=np.float32)
        offsets = np.cumsum([0] + [len(d.choices) for d in self.decisions[:-1]])
        for row, arch in enumerate(archs):
            for off, idx in zip(offsets, self.to_indices(arch)):
                out[row, off + idx] = 1.0
        return out

    def decode(self, onehot: np.ndarray) -> str:
        """Arg-max per decision of a (soft) one-hot row."""
        idx, off = [], 0
        for d in self.decisions:
            idx.append(int(np.argmax(onehot[off:off + len(d.choices)])))
            off += len(d.choices)
        return self.from_indices(idx)

    def sample(self, n: int, seed: int = 0) -> list[str]:
        """``n`` distinct random architectures, the same ones for the same seed."""
        rng = np.random.default_rng(seed)
        seen: dict[str, None] = {}
        sizes = [len(d.choices) for d in self.decisions]
        tries = 0
        while len(seen) < n and tries < 100 * max(n, 1):
            seen.setdefault(self.from_indices([int(rng.integers(s)) for s in sizes]), None)
            tries += 1
        return list(seen)

    # -- networks ----------------------------------------------------------------------------------
    @abstractmethod
    def build(self, arch: str, **kwargs: Any) -> Any:
        """A standalone ``torch.nn.Module`` for the architecture."""

    @abstractmethod
    def input_shape(self, arch: str) -> tuple[int, ...]:
        """The batch-1 input shape the network takes."""

    @abstractmethod
    def flops(self, arch: str) -> float:
        """Multiply-accumulates in millions, the simplest cost proxy."""

    def example_input(self, arch: str) -> Any:
        """What an export feeds the network: zeros of ``input_shape``."""
        import torch

        return torch.zeros(self.input_shape(arch))

    def board_export(self) -> Callable[..., dict[str, Any]] | None:
        """What a board times for this space. None (the default): one ONNX graph of ``input_shape`` (an
        image network). Else a function ``export(model, out_dir, stem, **options)`` writing the graphs of
        a language model, as :func:`modnas.exporters.lm_onnx.export_lm_onnx`: the decode graph keyed
        ``onnx`` (what ``latency`` measures) and its ``onnx_prefill`` companion (``prefill``)."""
        return None

    # -- enumeration -------------------------------------------------------------------------------
    enumerable: bool = False  # ``all_archs`` lists the whole space

    def all_archs(self) -> list[str]:
        """Every architecture, in the space's own order (enumerable spaces only)."""
        raise BadInput(f"the {self.name} space is too large to list every architecture")

    def usable(self, archs: Sequence[str]) -> np.ndarray:
        """Boolean per architecture: worth measuring, predicting and searching (default: all)."""
        return np.ones(len(archs), dtype=bool)

    def candidates(self, n: int, seed: int = 0) -> list[str]:
        """Architectures to score when choosing among many: every usable one where the space is
        enumerable, else ``n`` seeded random ones."""
        if self.enumerable:
            archs = self.all_archs()
            return [a for a, ok in zip(archs, self.usable(archs)) if ok]
        return self.sample(n, seed)

    def span(self, n: int = 20000) -> list[str]:
        """Architectures over which a model's range is taken: all where enumerable, else a seeded sample."""
        return self.all_archs() if self.enumerable else self.sample(n, seed=0)

    # -- measured tables ---------------------------------------------------------------------------
    table_metrics: tuple[str, ...] = ()  # metrics with device tables in a data directory
    table_coverage: float = 0.0          # share of the table's columns a device must have measured
    ships_tables: bool = False            # its tables come with the package (no data directory needed)
    predictor_defaults: dict[str, Any] = {}  # PredictorConfig fields this space's tables need changed

    def load_table(self, data_dir: str | Path, metric: str = "latency") -> Table:
        """The device table of ``metric`` under ``data_dir``."""
        raise BadInput(self._no_table(metric))

    def predictor_table(self, table: Table) -> Table:
        """The table as predictors train and are scored on it (default: unchanged)."""
        return table

    def _no_table(self, metric: str) -> str:
        if self.table_metrics:
            return f"no {metric} table for the {self.name} space (its tables: {', '.join(self.table_metrics)})"
        return f"no measured tables for the {self.name} space"

    def reference_columns(self, table: Table) -> list[int]:
        """The column of each reference architecture in ``table`` (BadInput when one is missing)."""
        pos = {a: i for i, a in enumerate(table.archs)}
        refs = [self.canonical(r) for r in self.reference_archs()]
        missing = [r for r in refs if r not in pos]
        if missing:
            raise BadInput(f"the {self.name} {table.metric} table lacks {len(missing)} of the {len(refs)} "
                           "reference architectures")
        return [pos[r] for r in refs]

    def usable_table_keys(self, table: Table) -> list[str]:
        """Table devices with every reference measured and at least ``table_coverage`` of the columns."""
        refs = self.reference_columns(table)
        need = self.table_coverage * len(table.archs)
        out = []
        for key in table.keys:
            row = table.row(key)
            if np.all(np.isfinite(row[refs])) and np.isfinite(row).sum() >= need:
                out.append(key)
        return out

    # -- the accuracy objective --------------------------------------------------------------------
    tasks: tuple[str, ...] = ()  # benchmark tasks with an accuracy table (benchmark-mode search)
    # the name of the first objective in read-outs (``predicted``): "error" (percent, image spaces) or
    # "loss" (held-out nats per token, language models); searches call the objective "error" either way
    quality: str = "error"
    quality_unit: str = "%"

    @property
    def benchmark_accuracy(self) -> bool:
        """Whether an accuracy table exists for a benchmark-mode search."""
        return bool(self.tasks)

    @property
    def default_accuracy(self) -> str:
        """Where a search's error term comes from by default: ``benchmark`` (an accuracy table) or
        ``supernet`` (trained on the user's images); gpt's is ``surrogate`` (its shipped loss surrogate)."""
        return "benchmark" if self.benchmark_accuracy else "supernet"

    def task_column(self, task: str) -> str:
        """The accuracy-table column of a benchmark ``task``."""
        raise BadInput(f"the {self.name} space has no benchmark tasks (it is searched on your images)")

    def task_of_column(self, column: str) -> str | None:
        return None

    def accuracy_column(self, data_dir: str | Path, column: str) -> np.ndarray:
        """Accuracy (%) of every architecture (``all_archs`` order) from the space's accuracy table."""
        raise BadInput(f"the {self.name} space has no accuracy table")

    # -- the predictor's architecture features -----------------------------------------------------
    def cell_graph(self) -> tuple[np.ndarray, int] | None:
        """For graph predictors: the op-node DAG ``adj[dst, src]`` and the number of op nodes whose
        features are consecutive equal-width slices of the one-hot (None: no graph, use the MLP)."""
        return None

    # -- kernels: what a network runs, for the structural device model -----------------------------
    def kernel_names(self) -> list[str]:
        """The kernels networks of this space are made of (the default: each choice of each set of
        decisions that share their choices, ``<first decision>*=<choice>``)."""
        names: dict[tuple[str, ...], str] = {}
        for d in self.decisions:
            names.setdefault(tuple(d.choices), d.name)
        return [f"{first}*={c}" for choices, first in names.items() for c in choices]

    def choice_count_matrix(self) -> np.ndarray:
        """``[onehot_dim, K]``: one-hot -> how many decisions take each choice, decisions that share a choice
        set counted together (the columns of the default :meth:`kernel_names`)."""
        groups: dict[tuple[str, ...], int] = {}
        for d in self.decisions:
            groups.setdefault(tuple(d.choices), len(groups))
        base = np.cumsum([0] + [len(c) for c in groups])[:-1]
        mat = np.zeros((self.onehot_dim, int(sum(len(c) for c in groups))), np.float64)
        row = 0
        for d in self.decisions:
            col = base[groups[tuple(d.choices)]]
            for j in range(len(d.choices)):
                mat[row + j, col + j] = 1.0
            row += len(d.choices)
        return mat

    def kernel_counts(self, archs: Sequence[str]) -> np.ndarray:
        """``[len(archs), len(kernel_names())]``: how many of each kernel each network runs (the default
        counts the choices, which is right where every decision is one block that always runs)."""
        return self.encode(list(archs)).astype(np.float64) @ self.choice_count_matrix()

    def kernel_network(self, name: str) -> tuple[Any, tuple[int, ...]] | None:
        """A small network of the one kernel ``name`` and its input shape, for measuring kernels on a board
        (``onboard --kernels``); None where the space does not say how to build its kernels."""
        return None

    # -- search: the supernet and its training recipe ----------------------------------------------
    warmup_share: float = 0.0  # supernet mode: share of the epochs trained on random subnets first
    random_subnets: int = 0    # supernet mode: extra random subnets per weight step

    def build_supernet(self, num_classes: int, cfg: Any) -> Any:
        """A fresh supernet; ``cfg`` is the run's supernet section (``SupernetConfig``)."""
        raise BadInput(f"space {self.name} has no supernet")

    def load_supernet(self, args: dict[str, Any]) -> Any:
        raise BadInput(f"space {self.name} has no supernet")

    def supernet_logits(self, supernet: Any, x: Any, onehot: Any) -> Any:
        """Class logits of the subnet a flat (straight-through) one-hot ``[onehot_dim]`` picks."""
        raise BadInput(f"space {self.name} has no supernet")

    def prepare_eval(self, supernet: Any, x: Any, onehot: Any) -> None:
        """Before scoring one subnet in eval mode (e.g. recompute its BN statistics)."""

    def subnet(self, supernet: Any, arch: str) -> Any:
        """The standalone network of ``arch`` carrying the supernet's shared weights."""
        raise BadInput(f"space {self.name} has no supernet")

    def run_build_kwargs(self, config: Any, supernet_args: dict[str, Any] | None) -> dict[str, Any]:
        """``build`` arguments that a run's supernet section (``config``, a ``SupernetConfig``) and its
        supernet's arguments fix for its subnets."""
        return {}

    # -- shipped runs ------------------------------------------------------------------------------
    # the search runs shipped in toolkit/assets/runs: task (None: the space's default) -> directory
    shipped_runs: dict[str | None, str] = {}
    # files a run passes on to a search that reuses its surrogate (gpt: the supernet and its held-out text)
    run_carries: tuple[str, ...] = ()

    def shipped_run(self, task: str | None = None) -> Path:
        """The run shipped with the package for this space (or one of its benchmark ``task``s)."""
        from importlib import resources

        if task is not None:
            self.task_column(task)  # an unknown task is bad input naming the known ones
        if task not in self.shipped_runs:
            raise BadInput(f"no search run is shipped for the {self.name} space"
                           + (f" and task {task}" if task else "") + "; name a run directory")
        return Path(str(resources.files("modnas.toolkit") / "assets" / "runs" / self.shipped_runs[task]))


__all__ = ["Decision", "Space", "Table", "parse_int_fields"]
