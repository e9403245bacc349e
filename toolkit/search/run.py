"""Run configuration (pydantic) and the run directory: config.json, hypernet.safetensors,
supernet.safetensors (supernet mode), the accuracy surrogate (benchmark mode; in supernet mode, one
distilled from the supernet's errors when the run ships without its supernet), metrics.jsonl, plots."""
from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modnas.toolkit.errors import BadInput

COST_OBJECTIVES = {"latency": "latency_ms", "energy": "energy_mj"}


class _Section(BaseModel):
    """One part of a run's configuration; an unknown field is refused. A section given as an instance
    is validated into a copy, so filling a run's defaults never changes the caller's."""

    model_config = ConfigDict(extra="forbid", revalidate_instances="always")


class BenchmarkConfig(_Section):
    """Benchmark mode: the error comes from an accuracy surrogate fitted on a benchmark table."""

    # the benchmark task (nb201: cifar10 | cifar100 | imagenet16-120) whose accuracy column is searched;
    # filled from accuracy_column when not given (runs saved before it: cifar10)
    task: str | None = None
    accuracy_column: str | None = None  # benchmark mode: default, the column of the space's first task
    # the error term is min-max scaled between the smallest predicted error and this quantile of the
    # predicted errors over the space (the maximum is chance level, 90 %, which would squeeze every
    # useful architecture into a sliver of the scale)
    error_quantile: float = Field(0.9, gt=0.0, le=1.0)
    surrogate_dir: str | None = None     # a fitted accuracy surrogate; default: the shipped one
    steps_per_epoch: int = Field(50, ge=1)
    prefs_per_step: int = Field(16, ge=1)       # preferences per device per step
    # weight of the hypernetwork's mean per-decision entropy subtracted from its loss, annealed
    # linearly to 0 at the last epoch, so the distribution stays informative while it trains
    entropy_bonus: float = Field(0.0, ge=0.0, le=1.0)


class SupernetConfig(_Section):
    """Supernet mode: the error comes from a weight-sharing supernet trained on images."""

    image_dir: str | None = None         # the images when data_dir holds the tables
    max_images: int | None = Field(None, ge=10)
    batch_size: int = Field(64, ge=2)
    # the first epochs train the supernet's weights on uniformly random subnets only (no hypernetwork
    # steps), so the hypernetwork later compares subnets that all had training
    # (None: the space's default share of the epochs, its warmup_share)
    warmup_epochs: int | None = Field(None, ge=0)
    prefs_per_step: int = Field(1, ge=1)        # preferences per device per hypernetwork step
    # extra uniformly random subnets per weight step (None: the space's default)
    random_subnets: int | None = Field(None, ge=0)
    # random subnets whose cross-entropy fixes the error term's scale (measured once, when the
    # hypernetwork starts training, then frozen)
    ce_range_subnets: int = Field(8, ge=2)
    lr: float = Field(0.025, gt=0.0)            # SGD on the weights, cosine-annealed to lr_min
    lr_min: float = Field(0.001, ge=0.0)
    momentum: float = Field(0.9, ge=0.0)
    weight_decay: float = Field(3e-4, ge=0.0)
    grad_clip: float = Field(5.0, gt=0.0)
    channels: int = Field(16, ge=1)             # nb201 supernet
    cells: int = Field(5, ge=1)                 # nb201 supernet


class HypernetConfig(_Section):
    """The hypernetwork (preference, device embedding) -> architecture logits, and its optimiser."""

    kind: str = "mlp"                    # modnas.toolkit.search.hypernet.HYPERNETS
    kwargs: dict[str, int | float] = Field(default_factory=lambda: {"hidden": 64})
    sampler: Literal["reinmax", "gdas"] = "reinmax"
    # 3e-2 (was 1e-2): benchmark mode's 20-epoch read-out on held-out devices rose from HV/exhaustive
    # 0.958 to 0.972 (benchmarks/scalarisation_eval.py); ofa_mbv3's shipped run sets its own
    lr: float = Field(3e-2, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)

    @field_validator("kind")
    @classmethod
    def _known(cls, v: str) -> str:
        from modnas.toolkit.search.hypernet import HYPERNETS

        if v not in HYPERNETS:
            raise BadInput(f"unknown hypernetwork {v!r}; known: {', '.join(sorted(HYPERNETS))}")
        return v


class ScalarisationConfig(_Section):
    """How the losses combine: the normalised objectives under a preference r (``kind``, see
    modnas.toolkit.search.scalarise), then the devices' gradients by MGD."""

    # runs saved before this field existed trained with the weighted sum. The weighted sum is the
    # default because it measured best through the hypernetwork's read-out
    # (benchmarks/scalarisation_eval.py), though Tchebycheff's exact minimisers reach further
    kind: Literal["weighted_sum", "tchebycheff", "smooth_tchebycheff"] = "weighted_sum"
    smooth_mu: float = Field(0.02, gt=0.0)     # smooth Tchebycheff's temperature
    ideal_point: float = Field(-0.01, le=0.0)  # the fixed ideal point z of every normalised objective
    mgd_max_iter: int = Field(250, ge=0)
    mgd_tol: float = Field(1e-5, ge=0.0)


SECTIONS: dict[str, type[_Section]] = {"benchmark": BenchmarkConfig, "supernet": SupernetConfig,
                                       "hypernet": HypernetConfig, "scalarisation": ScalarisationConfig}

# The flat form (runs saved before the sections; keyword overrides of run_search and the command line):
# each old field name -> (section, field). ``hypernet`` and ``scalarisation`` name their section too:
# given a mapping (or a section) they are the section, given a value they are the old field.
FLAT_FIELDS: dict[str, tuple[str, str]] = {
    "task": ("benchmark", "task"), "accuracy_column": ("benchmark", "accuracy_column"),
    "error_quantile": ("benchmark", "error_quantile"), "surrogate_dir": ("benchmark", "surrogate_dir"),
    "steps_per_epoch": ("benchmark", "steps_per_epoch"), "prefs_per_step": ("benchmark", "prefs_per_step"),
    "entropy_bonus": ("benchmark", "entropy_bonus"),
    "image_dir": ("supernet", "image_dir"), "max_images": ("supernet", "max_images"),
    "batch_size": ("supernet", "batch_size"), "warmup_epochs": ("supernet", "warmup_epochs"),
    "supernet_prefs": ("supernet", "prefs_per_step"), "random_subnets": ("supernet", "random_subnets"),
    "ce_range_subnets": ("supernet", "ce_range_subnets"), "w_lr": ("supernet", "lr"),
    "w_lr_min": ("supernet", "lr_min"), "w_momentum": ("supernet", "momentum"),
    "w_weight_decay": ("supernet", "weight_decay"), "grad_clip": ("supernet", "grad_clip"),
    "channels": ("supernet", "channels"), "cells": ("supernet", "cells"),
    "hypernet": ("hypernet", "kind"), "hypernet_kwargs": ("hypernet", "kwargs"),
    "sampler": ("hypernet", "sampler"), "h_lr": ("hypernet", "lr"), "h_weight_decay": ("hypernet", "weight_decay"),
    "scalarisation": ("scalarisation", "kind"), "smooth_mu": ("scalarisation", "smooth_mu"),
    "ideal_point": ("scalarisation", "ideal_point"), "mgd_max_iter": ("scalarisation", "mgd_max_iter"),
    "mgd_tol": ("scalarisation", "mgd_tol"),
}


def lift_flat(data: dict[str, Any]) -> dict[str, Any]:
    """The nested form of a configuration that may hold flat fields: each flat field moves into its
    section, merged with what the section already holds (the same field given both ways is refused)."""
    out = dict(data)
    lifted: dict[str, dict[str, Any]] = {}
    for old, (section, name) in FLAT_FIELDS.items():
        if old not in out or (old in SECTIONS and isinstance(out[old], (dict, BaseModel))):
            continue
        lifted.setdefault(section, {})[name] = out.pop(old)
    for section, values in lifted.items():
        given = out.get(section)
        if isinstance(given, BaseModel):
            given = given.model_dump(exclude_unset=True)
        if given is not None and not isinstance(given, dict):
            continue  # not a section: validation names it
        given = dict(given or {})
        for name, value in values.items():
            if name in given and given[name] != value:
                old = next(k for k, v in FLAT_FIELDS.items() if v == (section, name))
                raise BadInput(f"{section}.{name} is given twice: as {old!r} and in the {section} section")
            given[name] = value
        out[section] = given
    return out


class SearchConfig(BaseModel):
    """Everything that determines a search run; stored in the run's config.json. The run's identity is
    flat; what configures one part of the search is its section. The flat form of runs saved before
    the sections (and flat keyword overrides) is accepted: see ``FLAT_FIELDS``."""

    model_config = ConfigDict(extra="forbid")

    space: str = "nb201"  # a registered space (modnas.toolkit.spaces)
    objectives: list[str] = Field(default_factory=lambda: ["error", "latency"])
    # benchmark: a surrogate fitted to the space's accuracy table; supernet: a supernet trained with the
    # hypernetwork on images; surrogate: a frozen surrogate fitted to the space's own quality measurements
    # (``benchmark.surrogate_dir``; gpt: a sandwich-trained supernet's held-out losses), no table needed
    accuracy: Literal["benchmark", "supernet", "surrogate"] = "benchmark"
    data_dir: str | None = None          # tables (benchmark) or images / "digits" (supernet)
    epochs: int = Field(20, ge=1)
    seed: int = 0
    devices: list[str] = Field(default_factory=list)
    cost_source: str = "DeviceCost"
    note: str = ""
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig)
    supernet: SupernetConfig = Field(default_factory=SupernetConfig)
    hypernet: HypernetConfig = Field(default_factory=HypernetConfig)
    scalarisation: ScalarisationConfig = Field(default_factory=ScalarisationConfig)

    @model_validator(mode="before")
    @classmethod
    def _lift_flat(cls, data: Any) -> Any:
        return lift_flat(data) if isinstance(data, dict) else data

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        if not v or v[0] != "error" or len(v) < 2:
            raise BadInput("objectives must start with 'error' and name at least one cost, e.g. error,latency")
        for name in v[1:]:
            if name not in COST_OBJECTIVES:
                raise BadInput(f"unknown objective {name!r}; known: error, {', '.join(COST_OBJECTIVES)}")
        if len(set(v)) != len(v):
            raise BadInput("objectives must not repeat")
        return v

    @model_validator(mode="after")
    def _space_defaults(self) -> "SearchConfig":
        """Refuse benchmark mode where the space has no accuracy table; fill the space's defaults."""
        from modnas.toolkit.spaces import get_space

        support = get_space(self.space)
        if self.accuracy == "benchmark" and not support.benchmark_accuracy:
            hint = ("`accuracy` surrogate (its loss surrogate)" if support.default_accuracy == "surrogate" else
                    "`accuracy` supernet on your images (`image_dir` DIR, or 'digits')")
            raise BadInput(f"no accuracy table for the {self.space} space: search it with {hint}",
                           param=("accuracy", "image_dir"))
        if self.accuracy == "surrogate" and support.default_accuracy != "surrogate":
            raise BadInput(f"`accuracy` surrogate is for spaces searched on a loss surrogate (gpt); the {self.space} "
                           f"space's is {support.default_accuracy}", param="accuracy")
        if self.benchmark.task is not None:
            support.task_column(self.benchmark.task)  # a task the space does not have is bad input naming its tasks
            if self.accuracy != "benchmark":
                raise BadInput(f"task {self.benchmark.task!r} is a benchmark task: it needs the benchmark accuracy")
        if self.accuracy == "benchmark":
            self._reconcile_task(support)
        if self.accuracy == "surrogate" and self.benchmark.accuracy_column is None:
            self.benchmark.accuracy_column = support.quality
        if self.supernet.warmup_epochs is None:
            self.supernet.warmup_epochs = int(support.warmup_share * self.epochs)
        if self.supernet.random_subnets is None:
            self.supernet.random_subnets = support.random_subnets
        return self

    def _reconcile_task(self, space: Any) -> None:
        """``task`` picks the accuracy column unless the column is given; both given must agree."""
        bench = self.benchmark
        if bench.accuracy_column is None:
            bench.task = bench.task or space.tasks[0]
            bench.accuracy_column = space.task_column(bench.task)
        elif bench.task is None:
            bench.task = space.task_of_column(bench.accuracy_column)
        elif space.task_of_column(bench.accuracy_column) != bench.task:
            raise BadInput(f"accuracy_column {bench.accuracy_column!r} is not a column of the {bench.task} task")


def image_source(cfg: SearchConfig) -> str:
    """Where supernet mode reads images: ``supernet.image_dir``, else ``data_dir``, else the digits."""
    if cfg.supernet.image_dir:
        return cfg.supernet.image_dir
    if cfg.data_dir and (Path(cfg.data_dir) / "combined" / "nb201_wide.csv.gz").exists():
        raise BadInput("supernet mode needs images: data_dir holds the benchmark tables; set image_dir "
                       "(an .npz, an ImageFolder, a CIFAR-10 folder or 'digits')")
    return cfg.data_dir or "digits"


def make_config(data: dict[str, Any]) -> SearchConfig:
    """Validate a run configuration, nested or flat (see ``FLAT_FIELDS``); a bad or unknown field is a
    one-line ``BadInput`` naming it (``search config supernet.lr: ...``)."""
    from pydantic import ValidationError

    try:
        return SearchConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        params = getattr((err.get("ctx") or {}).get("error"), "params", ())  # those a BadInput raised inside named
        raise BadInput(f"search config {where}: {msg}" if where else f"search config: {msg}", param=params) from None


def default_run_path(space: str = "nb201", task: str | None = None) -> Path:
    """The run shipped with the package for a space, or for one of its benchmark ``task``s (used when
    no run is named)."""
    from modnas.toolkit.spaces import get_space

    return get_space(space).shipped_run(task)


def shipped_surrogate_dir() -> Path:
    return Path(str(resources.files("modnas.toolkit") / "assets" / "surrogates" / "nb201_cifar10"))


def append_metrics(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Run:
    """A loaded run: hypernetwork (eval mode) plus the accuracy source used for read-out."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        from modnas.toolkit.search.hypernet import build_hypernet

        self.path = path
        self.meta = meta
        saved = dict(meta["config"])
        saved.setdefault("scalarisation", "weighted_sum")   # what runs saved before the field used (flat form)
        try:
            self.config = make_config(saved)
        except BadInput as err:
            raise BadInput(f"run {path}: {err}") from None
        self.objectives: list[str] = list(self.config.objectives)
        self.hypernet = build_hypernet(self.config.hypernet.kind, **meta["hypernet_args"])
        self.hypernet.load_state_dict(_load_tensors(path / "hypernet.safetensors"), strict=True)
        self.hypernet.eval()
        self._surrogate: Any = None
        self._supernet: Any = None
        self._val: Any = None
        self._bn_images: Any = None
        self._error_cache: dict[str, float] = {}

    # -- architectures ---------------------------------------------------------------------
    def logits(self, prefs: np.ndarray, embedding: np.ndarray) -> torch.Tensor:
        r = torch.as_tensor(np.asarray(prefs, dtype=np.float32))
        d = torch.as_tensor(np.asarray(embedding, dtype=np.float32)).reshape(1, -1).expand(len(r), -1)
        with torch.no_grad():
            return self.hypernet(r, d)

    def archs(self, prefs: np.ndarray, embedding: np.ndarray) -> list[str]:
        from modnas.toolkit.spaces import get_space

        space = get_space(self.config.space)
        idx = self.logits(prefs, embedding).argmax(dim=-1).numpy()
        return [space.from_indices(list(map(int, row))) for row in idx]

    # -- accuracy --------------------------------------------------------------------------
    @property
    def surrogate(self) -> Any:
        """The accuracy surrogate the read-out uses: always in benchmark and surrogate mode; in supernet
        mode only when the supernet weights are absent and a surrogate was distilled from them."""
        if self._surrogate is None:
            distilled = self.config.accuracy == "supernet" and not (self.path / "supernet.safetensors").exists() \
                and (self.path / "surrogate").is_dir()
            if self.config.accuracy in ("benchmark", "surrogate") or distilled:
                from modnas.toolkit.search.surrogate import load_surrogate

                self._surrogate = load_surrogate(self.path / "surrogate")
        return self._surrogate

    @property
    def space(self) -> Any:
        from modnas.toolkit.spaces import get_space

        return get_space(self.config.space)

    @property
    def supernet(self) -> Any:
        if self._supernet is None and (self.path / "supernet.safetensors").exists():

            self._supernet = self.space.load_supernet(self.meta["supernet_args"])
            self._supernet.load_state_dict(_load_tensors(self.path / "supernet.safetensors"), strict=True)
            self._supernet.eval()
        return self._supernet

    def predict_error(self, archs: list[str]) -> np.ndarray:
        """Predicted test error in percent: the surrogate (benchmark mode) or the supernet's error
        on the run's held-back images (supernet mode; the space may first recompute the subnet's
        batch-norm statistics on training images, restored afterwards)."""
        space = self.space
        if self.surrogate is not None:
            with torch.no_grad():
                x = torch.as_tensor(space.encode(archs))
                return self.surrogate.error(x).numpy().astype(np.float64)
        if self.supernet is None:
            raise BadInput(f"run {self.path} has neither an accuracy surrogate nor supernet weights")
        from modnas.toolkit.search.layout import bn_state, encode_one, restore_buffers

        if self._val is None:
            from modnas.toolkit.data.datasets import load_images, split_three

            data = load_images(image_source(self.config), max_images=self.config.supernet.max_images,
                               seed=self.config.seed)
            train, _, self._val = split_three(data, self.config.seed)
            self._bn_images = train[0][:256]
        support = self.space
        saved = bn_state(self.supernet)
        out = []
        x_val, y_val = self._val
        try:
            for arch in archs:
                if arch not in self._error_cache:
                    onehot = encode_one(space, arch)
                    with torch.no_grad():
                        support.prepare_eval(self.supernet, self._bn_images, onehot)
                        wrong = 0
                        for s in range(0, len(x_val), 256):
                            pred = support.supernet_logits(self.supernet, x_val[s:s + 256], onehot).argmax(dim=1)
                            wrong += int((pred != y_val[s:s + 256]).sum())
                    self._error_cache[arch] = 100.0 * wrong / max(len(x_val), 1)
                out.append(self._error_cache[arch])
        finally:
            restore_buffers(self.supernet, saved)
            self.supernet.eval()
        return np.asarray(out, dtype=np.float64)

    def subnet(self, arch: str) -> torch.nn.Module | None:
        """The standalone network of ``arch`` with the supernet's weights; None without a supernet."""
        if self.supernet is None:
            return None
        return self.space.subnet(self.supernet, self.space.canonical(arch))


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def save_tensors(module: torch.nn.Module, path: Path, meta: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(path), metadata=meta)


def run_subnet(run_dir: str | Path | None, space_name: str, arch: str) -> torch.nn.Module | None:
    """The standalone network of ``arch`` with the inherited weights of a run's supernet; None when
    the run has no trained supernet (benchmark mode), so the exporter builds untrained weights."""
    return load_run(run_dir, space_name).subnet(arch)


def extract_subnet_weights(run_dir: str | Path | None, space_name: str, arch: str) -> dict[str, torch.Tensor] | None:
    """The state dict of :func:`run_subnet` (None without a supernet)."""
    net = run_subnet(run_dir, space_name, arch)
    return None if net is None else {k: v.detach().clone() for k, v in net.state_dict().items()}


def load_run(path: str | Path | None = None, space: str | None = None, task: str | None = None) -> Run:
    """Load a run directory (default: the run shipped for ``space``, NB201's when not given, or for the
    benchmark ``task``); with ``space`` or ``task``, a run that searched another is bad input."""
    p = Path(path) if path is not None else default_run_path(space or "nb201", task)
    cfg = p / "config.json"
    if path is None and task is not None and not cfg.exists():
        raise BadInput(f"no run is shipped for the {task} task in this installation; give `run` RUN", param="run")
    if not cfg.exists():
        raise BadInput(f"not a search run: {p} has no config.json")
    if not (p / "hypernet.safetensors").exists():
        raise BadInput(f"run {p} has no hypernet.safetensors")
    try:
        meta = json.loads(cfg.read_text())
    except json.JSONDecodeError as exc:
        raise BadInput(f"run config {cfg} is not JSON: {exc.msg}") from None
    run = Run(p, meta)
    if space is not None and run.config.space != space:
        raise BadInput(f"run {p} searched the {run.config.space} space, not {space}")
    if task is not None and run.config.benchmark.task != task:
        bench = run.config.benchmark
        raise BadInput(f"run {p} searched the {bench.task or bench.accuracy_column} task, not {task}")
    return run


__all__ = ["BenchmarkConfig", "COST_OBJECTIVES", "FLAT_FIELDS", "HypernetConfig", "Run", "SECTIONS",
           "ScalarisationConfig", "SearchConfig", "SupernetConfig", "append_metrics", "default_run_path",
           "extract_subnet_weights", "image_source", "lift_flat", "load_run", "make_config", "read_metrics",
           "run_subnet", "save_tensors", "shipped_surrogate_dir"]


def check_run_dir(run: str | None) -> None:
    """A ``--run`` directory whose config.json or tensors are damaged is bad input (exit 2), named in one line."""
    if run is None:
        return
    path = Path(os.path.expanduser(run))
    if not path.is_dir():
        raise BadInput(f"`run` {run!r}: not a directory", param="run")
    cfg = path / "config.json"
    if cfg.is_file():
        try:
            meta = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise BadInput(f"run config {cfg} is not JSON: {str(err).splitlines()[0]}") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or "hypernet_args" not in meta:
            raise BadInput(f"run config {cfg}: not a search run's configuration (needs 'config' and 'hypernet_args')")
    from safetensors import safe_open

    for tensors in sorted(path.rglob("*.safetensors")):
        try:
            with safe_open(str(tensors), framework="numpy") as fh:  # checks the header against the file size
                list(fh.keys())
        except Exception as err:  # SafetensorError has no importable base class
            raise BadInput(f"{tensors}: damaged or truncated safetensors file: {str(err).splitlines()[0]}") from None
