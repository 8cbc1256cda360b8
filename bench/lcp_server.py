"""`python -m llama_cpp.server`, started the way our venv's llama.cpp needs, for the benchmark.

The venv's llama.cpp carries its CPU code as one library per CPU variant (the Makefile's
CPU_VARIANTS), which llama-cpp-python's server cannot find on its own; this loads the best one
first, as the artifact does (runtime/llama/cpu.py). With `--no-repack` (llama-server's flag, which
llama-cpp-python's server lacks) weights are loaded without llama.cpp's repacking, so all
servers load them alike.
"""

from __future__ import annotations

import runpy
import sys
from typing import Any

# The whole package (its __init__ runs first), before runtime.llama.bindings: the server
# needs Llama.
import llama_cpp.llama_cpp as bindings  # the module llama.py calls through

from runtime.llama import cpu

_default_params = bindings.llama_model_default_params


def _params_without_repack() -> Any:
    params = _default_params()
    params.use_extra_bufts = False
    return params


if __name__ == "__main__":
    cpu.load()
    if "--no-repack" in sys.argv:
        sys.argv.remove("--no-repack")
        bindings.llama_model_default_params = _params_without_repack
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
