"""`python -m llama_cpp.server` with llama.cpp's weight repacking off (llama-server's --no-repack).

llama-cpp-python's server has no flag for `llama_model_params.use_extra_bufts`; the bench starts
it through this module when it is run with --no-repack, so all servers load weights alike.
"""

from __future__ import annotations

import runpy
from typing import Any

import llama_cpp.llama_cpp as bindings  # the module llama.py calls through

_default_params = bindings.llama_model_default_params


def _params_without_repack() -> Any:
    params = _default_params()
    params.use_extra_bufts = False
    return params


if __name__ == "__main__":
    bindings.llama_model_default_params = _params_without_repack
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
