#!/usr/bin/env bash
# Creates .venv with everything the project needs: the build tool (editable), its runtime
# package and the test tools. The runtime package (runtime-package/build.sh) is built once per
# content in a Debian 11 root; llama-cpp-python's wheel from the same compile goes into the
# venv too, for the tests that drive llama.cpp in-process, so nothing is compiled twice.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-dev}

wheel=$(runtime-package/build.sh)  # cached by content: seconds when nothing changed
wheels=$(dirname "$wheel")
stamp=.venv/.installed-$(cat pyproject.toml "$wheels"/llama_cpp_python-*.whl | sha256sum | cut -c1-16)

if [ ! -f "$stamp" ]; then
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q --force-reinstall --no-deps "$wheels"/llama_cpp_python-*.whl
    .venv/bin/pip install -q --find-links "$wheels" -e ".[$EXTRAS]"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
runtime-package/install.sh .venv "$wheel"
# The Windows runtime package (`build --os windows`), where wine is here to build it.
if command -v wine >/dev/null; then
    runtime-package/install.sh .venv "$(runtime-package/windows/build.sh)"
fi
