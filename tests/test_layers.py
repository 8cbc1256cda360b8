"""The rooms keep to themselves: the web layer and the shared knowledge terms never load
llama.cpp, and nothing in runtime/ imports the build tool."""

from __future__ import annotations

import ast
import collections
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys, importlib
importlib.import_module(sys.argv[1])
print(" ".join(sorted(m for m in sys.modules if m.startswith(("llama_cpp", "runtime.llama",
      "runtime.engine", "bundler")))))
"""


@pytest.mark.parametrize("module", ["runtime.web.app", "runtime.serve", "runtime.main",
                                    "runtime.knowledge.terms", "runtime.knowledge.search",
                                    "runtime.knowledge.format", "runtime.chat.tool_parse",
                                    "runtime.artifact.manifest", "runtime.terminal"])
def test_module_loads_neither_llama_cpp_nor_the_build_tool(module):
    proc = subprocess.run([sys.executable, "-c", PROBE, module], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip() == ""


def test_no_runtime_source_imports_bundler():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "runtime").rglob("*.py")
                 if "import bundler" in p.read_text() or "from bundler" in p.read_text()]
    assert offenders == []


def _modules(package: str) -> dict[str, Path]:
    """Every module of a package by dotted name (a package's own __init__ as the package)."""
    modules = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `path` imports, at the top or inside a function: a lazy
    import still ties the two together."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"  # `from runtime import settings`
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found & set(modules)


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle in `graph` (a path back to where it started), or []."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str]:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return []
        for dependency in sorted(graph[module] - {module}):
            if found := visit(dependency, path + [module]):
                return found
        done.add(module)
        return []

    for module in sorted(graph):
        if found := visit(module, []):
            return found
    return []


@pytest.mark.parametrize("package", ["runtime", "bundler"])
def test_no_import_cycles(package):
    # main.py, serve.py and terminal.py once imported each other for load_engine
    modules = _modules(package)
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    assert _cycle(graph) == []


def test_each_runtime_constant_has_one_home():
    # MARKERS (tool_parse.py and tool_grammar.py) and MAX_TOP_K (web and index) drifted apart
    # once; two formats each with its own FORMAT_VERSION are two things, not one written twice.
    homes = collections.defaultdict(list)
    for name, path in _modules("runtime").items():
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            for target in targets:
                if isinstance(target, ast.Name) and target.id.isupper() \
                        and not target.id.startswith("_"):
                    homes[target.id].append(name)
    twice = {constant: where for constant, where in homes.items()
             if len(where) > 1 and constant != "FORMAT_VERSION"}
    assert twice == {}
