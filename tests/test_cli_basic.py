"""The command line: exit codes, one-line errors, JSON on stdout, import and devices."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modnas.toolkit.cli import main
from modnas.toolkit.spaces import get_space

COMMANDS = ["doctor", "profile", "devices", "import", "space", "predict", "search", "pareto", "select", "export",
            "validate", "onboard", "quickstart"]


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_interface_command() -> None:
    out = subprocess.run([sys.executable, "-m", "modnas.toolkit.cli", "--help"], capture_output=True, text=True).stdout
    for name in COMMANDS:
        assert name in out


def test_space_refs_json(capsys, modnas_home) -> None:
    code, out, _ = run(capsys, "space", "refs", "--json")
    assert code == 0 and json.loads(out) == get_space("nb201").reference_archs()


@pytest.mark.parametrize("argv, code, needle", [
    (["space", "refs", "--space", "nope"], 2, "unknown space"),
    (["profile", "nonexistent-board"], 2, "unknown device"),
    (["import", "/nonexistent.csv", "--device", "x"], 2, "no such file"),
    (["import", "x.csv", "--device", "bad name;"], 2, "invalid device name"),
    (["frobnicate"], 2, "invalid choice"),
    (["profile", "local", "--archs", "random:0"], 2, "random:N"),
])
def test_bad_input_exit_2_one_line(capsys, modnas_home, argv, code, needle) -> None:
    got, out, err = run(capsys, *argv)
    assert got == code and needle in err and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_import_then_devices(capsys, modnas_home, tmp_path: Path) -> None:
    space = get_space("nb201")
    refs = space.reference_archs()
    csv = tmp_path / "m.csv"
    lines = ["arch,value"] + [f"{a},{1.0 + i}" for i, a in enumerate(refs)]
    lines += ["|bogus~0|,1.0", f"{refs[0]},-3", f"{refs[1]},nan", "only-one-field"]
    csv.write_text("\n".join(lines) + "\n")
    code, out, err = run(capsys, "import", str(csv), "--device", "pi-x", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["device"] == "pi-x" and doc["imported"] == 10
    assert [r["line"] for r in doc["rejected"]] == [12, 13, 14, 15]
    code, out, _ = run(capsys, "devices", "--json")
    (row,) = json.loads(out)
    assert row["name"] == "pi-x" and row["measurements"]["latency"] == 10


def test_import_all_bad_writes_nothing(capsys, modnas_home, tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text("arch,value\nnot-an-arch,1\n")
    code, _, err = run(capsys, "import", str(csv), "--device", "d1")
    assert code == 2 and "nothing to import" in err
    code, out, _ = run(capsys, "devices", "--json")
    assert json.loads(out) == []
    csv.write_text("architecture;latency\n")
    code, _, err = run(capsys, "import", str(csv), "--device", "d1")
    assert code == 2 and "header" in err
