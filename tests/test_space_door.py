"""One door for every search space: the rest of the toolkit asks the space and never compares its name."""
from __future__ import annotations

import ast
from pathlib import Path

from modnas.toolkit.spaces import SPACES

ROOT = Path(__file__).resolve().parents[1]


def _space_literals(node: ast.AST, names: set[str]) -> list[str]:
    """Space names written as string constants anywhere inside ``node``."""
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and n.value in names]


def name_comparisons(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, space name) of every comparison, membership test, match case or dict key that uses a
    space name as a constant: the ways code branches on which space it has."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            found += [(node.lineno, v) for v in _space_literals(node, names)]
        elif isinstance(node, ast.match_case):
            found += [(node.pattern.lineno, v) for v in _space_literals(node.pattern, names)]
        elif isinstance(node, ast.Dict):
            found += [(node.lineno, k.value) for k in node.keys if isinstance(k, ast.Constant) and k.value in names]
    return found


def test_the_finder_sees_each_way_of_branching_on_a_name() -> None:
    names = {"nb201", "ofa_mbv3"}
    src = ("if s == 'nb201': pass\n"
           "if s.name not in ('nb201', 'ofa_mbv3'): pass\n"
           "X = {'ofa_mbv3': 1}\n"
           "match s:\n    case 'nb201': pass\n"
           "def f(space='nb201'): return get_space('nb201')\n")
    assert [line for line, _ in name_comparisons(src, names)] == [1, 2, 2, 3, 5]


def test_no_space_name_is_compared_outside_the_spaces_package() -> None:
    names = set(SPACES)
    assert {"nb201", "ofa_mbv3"} <= names
    offenders = []
    for top in ("toolkit", "profilers", "exporters"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if (ROOT / "toolkit" / "spaces") in path.parents:
                continue
            for line, name in name_comparisons(path.read_text(encoding="utf-8"), names):
                offenders.append(f"{path.relative_to(ROOT)}:{line} {name!r}")
    assert offenders == []
