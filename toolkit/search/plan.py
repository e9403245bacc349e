"""What a ``search`` will do, decided and checked before any training: its configuration and its devices.

``plan_search`` fills in the defaults of ``modnas search`` (the accuracy source of the space, every
table device when none is named) and refuses bad combinations before the tables are read;
:func:`modnas.toolkit.search.api.search` then runs the plan's configuration.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modnas.toolkit.errors import BadInput
from modnas.toolkit.search.run import SearchConfig, make_config


@dataclass(frozen=True)
class SearchPlan:
    """A checked search configuration, and the table devices left out of the default device set
    (those without a table of every cost objective; empty when devices were named)."""

    config: SearchConfig
    left_out: list[str] = field(default_factory=list)

    @property
    def devices(self) -> list[str]:
        return list(self.config.devices)

    @property
    def objectives(self) -> list[str]:
        return list(self.config.objectives)


def plan_search(*, space: str = "nb201", objectives: list[str] | tuple[str, ...] = ("error", "latency"),
                devices: list[str] | None = None, accuracy: str | None = None,
                data_dir: str | Path | None = None, task: str | None = None, seed: int = 0,
                image_dir: str | None = None, max_images: int | None = None,
                epochs: int | None = None) -> SearchPlan:
    """The configuration of one search over ``devices`` (store or table devices; None or empty: every
    table device of ``data_dir`` that has every cost objective). ``accuracy`` defaults to the space's
    ``default_accuracy`` (its benchmark table, its supernet, or gpt's loss surrogate shipped with its run);
    ``data_dir`` is needed for benchmark accuracy and for table devices (not where the space ships its tables)."""
    from modnas.toolkit.config import data_dir as tables_dir
    from modnas.toolkit.spaces import get_space

    objectives = list(objectives)
    sp = get_space(space)
    benchmark = sp.benchmark_accuracy
    accuracy = accuracy or sp.default_accuracy
    surrogate: dict[str, Any] = {}
    if accuracy == "surrogate":  # the loss surrogate of the run shipped for the space (fitted to its supernet)
        surrogate = {"surrogate_dir": str(sp.shipped_run() / "surrogate")}
    make_config({"space": space, "objectives": objectives, "accuracy": accuracy, **surrogate})  # bad pairs first
    if task and (not benchmark or accuracy != "benchmark"):
        raise BadInput("`task` names a benchmark task: it needs a space with benchmark tasks (`space` nb201) "
                       "and `accuracy` benchmark", param=("task", "space", "accuracy"))
    named = list(devices or [])
    if sp.ships_tables and data_dir is None:  # its tables come with the package (gpt)
        data: str | None = None
    elif accuracy == "benchmark" or not named or any(":" in d for d in named):
        data = str(tables_dir(data_dir))
    else:
        data = None if data_dir is None else str(data_dir)
    left_out: list[str] = []
    if not named:
        from modnas.toolkit.search.default_run import objective_keys

        named, left_out = objective_keys(data, objectives, space=space)  # type: ignore[arg-type]
    config: dict[str, Any] = {"space": space, "objectives": objectives, "accuracy": accuracy, "data_dir": data,
                              "seed": seed, "devices": named, **surrogate}
    if task:
        config["task"] = task
    if image_dir:
        config["image_dir"] = image_dir
    if max_images is not None:
        config["max_images"] = max_images
    if epochs is not None:
        if epochs < 1:
            raise BadInput("`epochs` must be at least 1", param="epochs")
        config["epochs"] = epochs
    return SearchPlan(make_config(config), left_out)


__all__ = ["SearchPlan", "plan_search"]
