"""The house: one installable namespace, no import circles, lower layers that never import the toolkit,
and the terminal output through rich."""
from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("toolkit", "profilers", "exporters")


def _modules() -> dict[str, Path]:
    """``modnas.<dotted name>`` of every module in the three directories."""
    out = {}
    for top in LAYERS:
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out["modnas." + ".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports anywhere in its body (lazy imports inside functions too)."""
    modules = _modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for name in names:
                target = owner(name)
                if target and target != mod:
                    graph[mod].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_cycle_finder_sees_a_circle_and_a_clean_chain() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_circle_in_the_project() -> None:
    graph = import_graph()
    assert len(graph) > 80 and "modnas.toolkit.cli" in graph  # the walk found the tree
    assert cycles(graph) == []


def test_lower_layers_never_import_the_toolkit() -> None:
    graph = import_graph()
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() if m.startswith(("modnas.profilers", "modnas.exporters"))
                    for t in targets if t.startswith("modnas.toolkit"))
    assert upward == []
    # and exporters sit above profilers, never the other way round
    assert not [m for m, targets in graph.items() if m.startswith("modnas.profilers")
                for t in targets if t.startswith("modnas.exporters")]


def test_pyproject_installs_every_package_under_the_namespace() -> None:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    tree = sorted("modnas." + ".".join(p.parent.relative_to(ROOT).parts) for top in LAYERS
                  for p in (ROOT / top).rglob("__init__.py"))
    assert sorted(conf["packages"]) == tree
    assert conf["package-dir"] == {f"modnas.{top}": top for top in LAYERS}
    assert all(name.startswith("modnas.") for name in conf["packages"])


def _python(code: str, cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_installed_next_to_unrelated_toolkit_and_exporters_packages(tmp_path: Path) -> None:
    """Other distributions named ``toolkit`` and ``exporters`` keep working beside modnas, and ours still import."""
    site = tmp_path / "site"
    for name in ("toolkit", "exporters", "profilers"):
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text(f"WHO = 'unrelated {name}'\n")
    code = ("import toolkit, exporters, profilers\n"
            "import modnas.toolkit.cli, modnas.exporters.onnx, modnas.profilers.connection\n"
            "print(toolkit.WHO, exporters.WHO, profilers.WHO, sep='|')\n"
            "print(modnas.toolkit.cli.__file__, modnas.exporters.onnx.__file__, sep='|')\n")
    done = _python(code, tmp_path, site)
    assert done.returncode == 0, done.stderr
    theirs, ours = done.stdout.splitlines()
    assert theirs == "unrelated toolkit|unrelated exporters|unrelated profilers"
    assert all(Path(p).resolve().is_relative_to(ROOT) for p in ours.split("|"))


def test_nothing_but_the_namespace_at_the_top_level(tmp_path: Path) -> None:
    code = ("import importlib.util, json\n"
            "print(json.dumps({n: getattr(importlib.util.find_spec(n), 'origin', None) for n in "
            "('toolkit', 'profilers', 'exporters')}))\n")
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    import json

    for name, origin in json.loads(done.stdout).items():
        assert origin is None or not Path(origin).resolve().is_relative_to(ROOT), name


def test_a_mistyped_option_names_the_program_once(capsys: pytest.CaptureFixture[str]) -> None:
    from modnas.toolkit.cli import main

    assert main(["pareto", "--device", "x", "--verify"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["modnas: unrecognized arguments: --verify"]
    assert main(["pareto"]) == 2
    assert capsys.readouterr().err.strip() == "modnas: pareto: the following arguments are required: --device"


def test_table_is_plain_ascii_aligned_text() -> None:
    from modnas.toolkit.cli import table

    text = table([["a", 1.5, "x" * 30], ["bb", 22, "y"]], ["name", "value", "arch"])
    lines = text.splitlines()
    assert lines[0].split() == ["name", "value", "arch"]
    assert set(lines[1]) == {"-"}
    assert lines[2].split() == ["a", "1.5", "x" * 30] and lines[3].split() == ["bb", "22", "y"]
    assert lines[2].index("1.5") == lines[3].index("22") == lines[0].index("value")
    text.encode("ascii")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream_kind", ["log", "terminal"])
def test_progress_goes_to_its_stream_only(stream_kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    from modnas.toolkit.progress import ProgressBar

    stream = _Terminal() if stream_kind == "terminal" else io.StringIO()
    bar = ProgressBar(4, "profile rpi4", stream=stream)
    bar.start -= 10.0  # as if the work had lasted a while
    for i in range(4):
        bar.step(f"arch {i}")
    bar.close()
    out = stream.getvalue()
    assert "profile rpi4" in out and "4/4" in out
    if stream_kind == "log":
        assert out.count("\n") <= 2  # one line now and then, and the last
    assert capsys.readouterr().out == ""
    quiet = io.StringIO()
    muted = ProgressBar(2, "x", stream=quiet, quiet=True)
    muted.start -= 10.0
    muted.step()
    muted.close()
    assert quiet.getvalue() == ""


def test_readme_code_map_matches_the_tree() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("Code map.")
    block = text[text.index("```", start) + 3: text.index("```", text.index("```", start) + 3)]
    import re

    files = set(re.findall(r"\b([a-z_0-9]+\.py)\b", block))
    dirs = set(re.findall(r"\b([a-z_0-9]+)/", block))
    tree_files = {p.name for top in LAYERS for p in (ROOT / top).rglob("*.py")}
    tree_dirs = {p.name for top in LAYERS for p in (ROOT / top).rglob("*") if p.is_dir() and (p / "__init__.py").exists()}
    assert files and files <= tree_files, files - tree_files
    assert dirs <= tree_dirs | set(LAYERS) | {"device_configs", "benchmarks", "docs"}, dirs - tree_dirs
    assert {p.name for p in (ROOT / "toolkit").iterdir() if (p / "__init__.py").exists()} <= dirs  # every room shown
    modules = {p.stem for top in LAYERS for p in (ROOT / top).rglob("*.py") if p.stem != "__init__"}
    named = set(re.findall(r"\b([a-z][a-z_0-9]+)\b", block))
    toolkit_modules = {p.stem for p in (ROOT / "toolkit").rglob("*.py") if p.stem not in ("__init__",)}
    assert toolkit_modules - named <= {"__main__"}, sorted(toolkit_modules - named)
    assert modules
