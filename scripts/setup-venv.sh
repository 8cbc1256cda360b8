#!/usr/bin/env bash
# Creates .venv with everything the project needs. llama-cpp-python is compiled from source once
# per (version, CMAKE_ARGS) and its wheel is kept under the user's cache dir: pip's own wheel
# cache ignores CMAKE_ARGS, so a changed compile setting would silently reuse a stale build.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
LLAMA_CPP_VERSION=${LLAMA_CPP_VERSION:?}
CMAKE_ARGS=${CMAKE_ARGS:?}
CPU_VARIANTS=${CPU_VARIANTS:-}
EXTRAS=${EXTRAS:-dev}

cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/llamabundle/wheels
key=$(printf '%s\n%s\n%s\n' "$LLAMA_CPP_VERSION" "$CMAKE_ARGS" "$CPU_VARIANTS" \
    | cat - scripts/cpu_variants.py | sha256sum | cut -c1-16)
wheel_dir=$cache_root/llama-cpp-python-$LLAMA_CPP_VERSION-$key
stamp=.venv/.installed-$key-$(cat pyproject.toml | sha256sum | cut -c1-16)

[ -f "$stamp" ] && exit 0
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --upgrade pip

if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "Compiling llama-cpp-python $LLAMA_CPP_VERSION (CMAKE_ARGS=$CMAKE_ARGS," \
         "CPU variants: ${CPU_VARIANTS:-none}); this takes minutes..."
    mkdir -p "$cache_root"
    tmp=$(mktemp -d "$cache_root/.tmp.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    .venv/bin/pip download -q --no-deps --no-binary :all: \
        "llama-cpp-python==$LLAMA_CPP_VERSION" -d "$tmp/sdist"
    tar -xzf "$tmp"/sdist/llama_cpp_python-*.tar.gz -C "$tmp"
    src=$tmp/llama_cpp_python-$LLAMA_CPP_VERSION
    if [ -n "$CPU_VARIANTS" ]; then
        # shellcheck disable=SC2086  # one argument per variant
        "$PYTHON" scripts/cpu_variants.py "$src" $CPU_VARIANTS
    fi
    CMAKE_ARGS="$CMAKE_ARGS" .venv/bin/pip wheel --no-deps --no-cache-dir "$src" -w "$tmp/wheel"
    mv -T "$tmp/wheel" "$wheel_dir"
    rm -rf "$tmp"
    trap - EXIT
fi

.venv/bin/pip install -q --force-reinstall --no-deps "$wheel_dir"/llama_cpp_python-*.whl
.venv/bin/pip install -q -e ".[$EXTRAS]"
rm -f .venv/.installed-*
touch "$stamp"
