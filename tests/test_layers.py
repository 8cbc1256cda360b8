"""The rooms keep to themselves: the web layer and the shared knowledge terms never load
llama.cpp, and nothing in runtime/ imports the build tool."""

from __future__ import annotations

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
                                    "runtime.knowledge.terms", "runtime.chat.tool_parse",
                                    "runtime.artifact.manifest", "runtime.terminal"])
def test_module_loads_neither_llama_cpp_nor_the_build_tool(module):
    proc = subprocess.run([sys.executable, "-c", PROBE, module], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip() == ""


def test_no_runtime_source_imports_bundler():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "runtime").rglob("*.py")
                 if "import bundler" in p.read_text() or "from bundler" in p.read_text()]
    assert offenders == []
