"""The search configuration's sections: the flat form of runs saved before them still loads, flat
keyword overrides land in their section, and a bad or unknown field is one line naming it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from modnas.toolkit.errors import BadInput
from modnas.toolkit.search.run import (FLAT_FIELDS, SECTIONS, SearchConfig, default_run_path, load_run,
                                       make_config)

SHIPPED = [("nb201", None), ("nb201", "cifar100"), ("ofa_mbv3", None)]


@pytest.mark.parametrize(("space", "task"), SHIPPED)
def test_a_shipped_flat_config_loads_into_its_sections(space: str, task: str | None) -> None:
    path = default_run_path(space, task)
    flat = json.loads((path / "config.json").read_text())["config"]
    assert "h_lr" in flat and "hypernet_kwargs" in flat and "benchmark" not in flat  # saved before the sections
    cfg = make_config(flat)
    for old, value in flat.items():
        if old in FLAT_FIELDS:
            section, name = FLAT_FIELDS[old]
            assert getattr(getattr(cfg, section), name) == value, old
        else:
            assert getattr(cfg, old) == value, old
    assert load_run(path).config == cfg
    top = {k: v for k, v in cfg.model_dump().items() if k not in SECTIONS}
    # the nested form saved by new runs, and the overrides search() hands run_search, give it back
    assert make_config(cfg.model_dump()) == cfg
    assert make_config({**top, **{s: getattr(cfg, s).model_dump() for s in SECTIONS}}) == cfg


def test_flat_overrides_land_in_their_sections() -> None:
    cfg = make_config({"accuracy": "supernet", "epochs": 4, "h_lr": 0.01, "w_lr": 0.05, "supernet_prefs": 3,
                       "warmup_epochs": 1, "cells": 1, "steps_per_epoch": 3, "scalarisation": "tchebycheff",
                       "mgd_tol": 1e-4, "hypernet": "experts", "sampler": "gdas"})
    assert (cfg.hypernet.lr, cfg.hypernet.kind, cfg.hypernet.sampler) == (0.01, "experts", "gdas")
    assert (cfg.supernet.lr, cfg.supernet.prefs_per_step, cfg.supernet.warmup_epochs, cfg.supernet.cells) == (0.05, 3, 1, 1)
    assert cfg.benchmark.steps_per_epoch == 3 and cfg.benchmark.prefs_per_step == 16
    assert (cfg.scalarisation.kind, cfg.scalarisation.mgd_tol) == ("tchebycheff", 1e-4)
    nested = make_config({"hypernet": {"kind": "experts", "lr": 0.01}, "scalarisation": {"kind": "tchebycheff"}})
    assert nested.hypernet.kind == "experts" and nested.scalarisation.kind == "tchebycheff"
    # a flat field merges into a section given as a mapping; the same field given both ways must agree
    assert make_config({"hypernet": {"kind": "experts"}, "h_lr": 0.2}).hypernet.lr == 0.2
    assert make_config({"hypernet": {"lr": 0.2}, "h_lr": 0.2}).hypernet.lr == 0.2
    with pytest.raises(BadInput, match=r"hypernet\.lr is given twice: as 'h_lr'"):
        make_config({"hypernet": {"lr": 0.3}, "h_lr": 0.2})
    # the space fills what it decides, in the section
    ofa = make_config({"space": "ofa_mbv3", "accuracy": "supernet", "epochs": 10})
    assert ofa.supernet.warmup_epochs is not None and ofa.supernet.random_subnets is not None
    assert ofa.benchmark.task is None
    assert SearchConfig().model_dump().keys() >= set(SECTIONS)


@pytest.mark.parametrize(("data", "where"), [
    ({"h_lrr": 0.1}, "search config h_lrr: Extra inputs are not permitted"),
    ({"supernet": {"lr_max": 1.0}}, "search config supernet.lr_max: Extra inputs are not permitted"),
    ({"w_lr": 0.0}, "search config supernet.lr: "),
    ({"hypernet": "nope"}, "search config hypernet.kind: unknown hypernetwork 'nope'"),
    ({"scalarisation": 3}, "search config scalarisation.kind: "),
])
def test_a_bad_or_unknown_field_is_one_line_naming_it(data: dict[str, object], where: str) -> None:
    with pytest.raises(BadInput) as err:
        make_config(data)
    text = str(err.value)
    assert text.startswith(where) and "\n" not in text


def test_a_saved_run_with_an_unknown_field_is_one_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(default_run_path("nb201"), run_dir)
    meta = json.loads((run_dir / "config.json").read_text())
    meta["config"]["hypernet_size"] = 32
    (run_dir / "config.json").write_text(json.dumps(meta))
    with pytest.raises(BadInput) as err:
        load_run(run_dir)
    text = str(err.value)
    assert text == f"run {run_dir}: search config hypernet_size: Extra inputs are not permitted"
