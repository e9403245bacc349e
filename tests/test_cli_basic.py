"""The command line: exit codes, one-line errors, JSON on stdout, import and devices."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modnas.toolkit.cli import HANDLERS, build_parser, main
from modnas.toolkit.spaces import get_space

COMMANDS = ["doctor", "profile", "devices", "import", "space", "predict", "predictor", "search", "pareto", "select",
            "export", "train", "sample", "validate", "onboard", "quickstart"]


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_interface_command(capsys) -> None:
    """The parser's subcommands are exactly COMMANDS, --help lists each one as a command (not as a word of the
    description), each has its own --help and a handler of its own (none is a "not available yet" stub)."""
    parser = build_parser(HANDLERS)
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(subparsers.choices) == COMMANDS
    proc = subprocess.run([sys.executable, "-m", "modnas.toolkit.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert re.findall(r"^ {4}([a-z]\S*)", proc.stdout, re.M) == COMMANDS  # the command column of the help
    for name in COMMANDS:
        code, out, err = run(capsys, name, "--help")
        assert code == 0 and out.startswith(f"usage: modnas {name} ") and err == "", (name, err)
        assert name in HANDLERS or any(key.startswith(f"{name} ") for key in HANDLERS), name


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
