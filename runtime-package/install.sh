#!/usr/bin/env bash
# Installs the runtime package built for the checkout's sources into a venv, unless the one
# installed there already is it (same content key): `make runtime`, scripts/setup-venv.sh.
#     runtime-package/install.sh VENV WHEEL
set -euo pipefail
venv=$1 wheel=$2
# The key is in the wheel's file name's folder: the cache keeps one folder per key.
key=$(basename "$(dirname "$wheel")")
# The Linux or the Windows runtime package (llamabundle_runtime[_windows]-VERSION-TAG.whl).
module=$(basename "$wheel" | cut -d- -f1)
installed=$("$venv/bin/python" -c "import $module as r; print(r.SOURCE_KEY)" 2>/dev/null || true)
if [ -z "$key" ] || [ "$key" != "$installed" ]; then
    "$venv/bin/pip" install -q --no-deps --force-reinstall "$wheel"
fi
