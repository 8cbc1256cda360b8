"""llama-cpp-python's ctypes bindings to llama.cpp, without its high-level layer.

`import llama_cpp` runs the package's __init__, which imports the high-level `Llama` and with it
numpy: numpy and its OpenBLAS are 40 MB that PyInstaller would unpack at every launch, and
0.15 s of import, for nothing the runtime uses (it drives llama.cpp's C API itself, in this
package). Registering a bare package object first lets Python import the two
modules we need, the bindings and the JSON-schema-to-grammar converter, on their own.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import sys
import types


def _bare_package() -> None:
    if "llama_cpp" in sys.modules:  # already imported whole (tests, benchmarks): use it
        return
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError("llama-cpp-python is not installed")
    package = types.ModuleType("llama_cpp")
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    package.__spec__ = spec  # importlib.util.find_spec("llama_cpp") (the freezer) needs it
    sys.modules["llama_cpp"] = package


_bare_package()

from llama_cpp import llama_cpp  # noqa: E402  (after the package is registered)
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf  # noqa: E402

__all__ = ["llama_cpp", "JSON_GBNF", "json_schema_to_gbnf"]

_llama_log = logging.getLogger("llama.cpp")
GGML_LOG_LEVEL_ERROR = 4  # ggml.h of the pinned llama.cpp (llama-cpp-python maps 3, WARN)


@llama_cpp.llama_log_callback
def _log_callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    # llama.cpp's chatter (model facts, which CPU library it loaded, "this is probably a bug
    # in the model") is for developers; an end user sees only its errors. LOGLEVEL=DEBUG shows
    # it all.
    _llama_log.log(logging.ERROR if level == GGML_LOG_LEVEL_ERROR else logging.DEBUG,
                   "%s", text.decode("utf-8", errors="replace").rstrip())


llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))  # before anything loads
