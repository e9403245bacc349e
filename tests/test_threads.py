"""torch's thread count is process-wide: library calls change it for their own run only and put it back,
also when they raise."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
import torch

from modnas.toolkit.threads import torch_threads


@pytest.fixture()
def caller_threads() -> Iterator[int]:
    """A count no library call uses (so a leak shows), and the test process's own put back after."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)


def test_the_block_runs_with_n_and_the_count_comes_back_on_error(caller_threads: int) -> None:
    with pytest.raises(RuntimeError):
        with torch_threads(2):
            assert torch.get_num_threads() == 2
            raise RuntimeError("inside")
    assert torch.get_num_threads() == caller_threads
    with torch_threads(None):  # no count asked for: left as it is
        assert torch.get_num_threads() == caller_threads


def test_training_sets_its_threads_and_puts_them_back_when_it_raises(
        caller_threads: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modnas.toolkit.workflow import training

    seen: list[int] = []

    def stop(*args: Any, **kwargs: Any) -> float:
        seen.append(torch.get_num_threads())
        raise RuntimeError("stopped after the first epoch")

    monkeypatch.setattr(training, "top1_accuracy", stop)
    with pytest.raises(RuntimeError):
        training.train_arch("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|", space_name="nb201",
                            images="digits", out=tmp_path / "ckpt", epochs=1, max_images=40, quiet=True, threads=1)
    assert seen == [1] and torch.get_num_threads() == caller_threads


def test_search_runs_on_one_thread_and_puts_the_count_back_when_it_raises(
        caller_threads: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modnas.toolkit.search import api

    seen: list[int] = []

    def stop(*args: Any, **kwargs: Any) -> None:
        seen.append(torch.get_num_threads())
        raise RuntimeError("stopped before the search")

    monkeypatch.setattr(api, "make_config", stop)
    with pytest.raises(RuntimeError):
        api.run_search([SimpleNamespace(name="a")], out=tmp_path / "run")
    assert seen == [1] and torch.get_num_threads() == caller_threads
