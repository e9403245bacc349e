"""Shared fixtures: where the shared data lives, and the loopback sshd board."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from sshd_fixture import sshd_board  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``early`` run first, in their order. MetaSchedule's first tuning parses every tensor
    intrinsic TVM ships, and each parse scans all loaded modules: at the end of the slow suite the tiny
    tuning test took 259 s, run first 137 s (this 2-core machine)."""
    items.sort(key=lambda item: item.get_closest_marker("early") is None)


def _shared_dir() -> Path:
    env = os.environ.get("MODNAS_SHARED")
    return Path(env) if env else ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``shared/`` folder beside the repository (or ``$MODNAS_SHARED``)."""
    return _shared_dir()


@pytest.fixture(scope="session")
def data_dir(shared_dir: Path) -> Path:
    """The measured tables (``$MODNAS_DATA`` or ``../shared/data``)."""
    env = os.environ.get("MODNAS_DATA")
    return Path(env) if env else shared_dir / "data"


@pytest.fixture(scope="session")
def ofa_table(data_dir: Path):
    """HELP's OFA latency table (``modnas.toolkit.spaces.ofa_mbv3.tables``), read once; skips without the data."""
    from modnas.toolkit.spaces.ofa_mbv3 import tables as benchdata_ofa

    if not (data_dir / "help_ofa" / "help_ofa_latency.csv.gz").exists():
        pytest.skip(f"no help_ofa data under {data_dir}")
    return benchdata_ofa.load_latency(data_dir)


@pytest.fixture()
def modnas_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throw-away ``MODNAS_HOME`` so no test touches the user's store."""
    home = tmp_path / "modnas-home"
    home.mkdir()
    monkeypatch.setenv("MODNAS_HOME", str(home))
    return home


@pytest.fixture()
def one_torch_thread():
    """Torch on one thread for the test (device fits train small networks: on a shared two-core machine two
    threads make them several times slower), restored afterwards."""
    from modnas.toolkit.threads import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def agent_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The board agent as the zipapp a campaign uploads, written once per test module."""
    from modnas.profilers.pack import build_agent

    pack = build_agent()
    path = tmp_path_factory.mktemp("agent") / pack.filename
    path.write_bytes(pack.data)
    return path
