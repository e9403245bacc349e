"""Device files: every example loads; every mistake is one line naming the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from modnas.toolkit.config import DEVICE_CONFIG_DIR, load_device, read_device_file
from modnas.toolkit.errors import BadInput

EXAMPLES = sorted(DEVICE_CONFIG_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_load(path: Path) -> None:
    cfg = read_device_file(path)
    assert cfg.name and cfg.threads >= 1
    assert load_device(path.stem).name == cfg.name


@pytest.mark.parametrize("text, needle", [
    ("name: a\nhots: x\n", "unknown key 'hots'"),
    ("name: a\nmeasurement: {repeets: 3}\n", "unknown key 'measurement.repeets'"),
    ("host: x\n", "missing required key 'name'"),
    ("name: a\npassword: hunter2\n", "passwords are not accepted"),
    ("name: 'a;rm -rf /'\n", "name"),
    ("name: a\nhost: '-oProxyCommand=x'\n", "host"),
    ("name: a\nworkdir: '/tmp/$(reboot)'\n", "workdir"),
    ("name: a\nworkdir: '/tmp/../etc'\n", "workdir"),
    ("name: a\nport: 99999\n", "port"),
    ("name: a\nenergy: {sensor: geiger}\n", "energy.sensor"),
    ("name: a\nthreads: [1\n", "malformed YAML"),
    ("- just\n- a list\n", "expected a mapping"),
])
def test_bad_files_one_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "dev.yaml"
    path.write_text(text)
    with pytest.raises(BadInput) as err:
        read_device_file(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_unknown_device_reference() -> None:
    with pytest.raises(BadInput, match="unknown device"):
        load_device("no-such-board")
    with pytest.raises(BadInput, match="no such device file"):
        load_device("/nonexistent/board.yaml")
