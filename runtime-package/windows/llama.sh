#!/usr/bin/env bash
# llama.cpp for Windows: the vendored llama.cpp of llama-cpp-python $LLAMA_CPP_VERSION (the same
# sources, the same cpu_variants.py patch as the Linux runtime) cross-compiled with mingw-w64 as
# DLLs, llama.cpp's CPU backend once per CPU variant (GGML_BACKEND_DL), cached by content.
#     runtime-package/windows/llama.sh   ->  prints the folder: lib/*.dll, llama_cpp/, LICENSE
# Needs Debian's g++-mingw-w64-x86-64-posix, cmake, ninja, and PyPI (the sdist).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec 3>&1 1>&2
PYTHON=${PYTHON:-python3}
# shellcheck source=../llama.env
. runtime-package/llama.env
# Linux's CPU variants (llama.env), the AVX-512 ones included (mingw.cmake: their stack).
variants=${WINDOWS_CPU_VARIANTS:-$CPU_VARIANTS}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/llamabundle/windows
key=$( (cat runtime-package/llama.env scripts/cpu_variants.py runtime-package/windows/llama.sh \
        runtime-package/windows/mingw_shim.py runtime-package/windows/mingw.cmake
        echo "$variants"; x86_64-w64-mingw32-g++-posix --version | head -1) | sha256sum | cut -c1-16)
out=$cache/llama-$key
if [ -f "$out/.done" ]; then echo "$out" >&3; exit 0; fi
mkdir -p "$cache"
exec 9>"$out.lock"
flock 9
if [ -f "$out/.done" ]; then echo "$out" >&3; exit 0; fi
echo "runtime-windows: cross-compiling llama.cpp $LLAMA_CPP_VERSION for Windows (variants: $variants) ($(date +%T))"
# The build folder stays after a failure, so that a second try resumes where it stopped.
work=$out.build
mkdir -p "$work"
rm -rf "$work/sdist"
"$PYTHON" -m pip download -q --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$LLAMA_CPP_VERSION" -d "$work/sdist"
src=$work/llama_cpp_python-$LLAMA_CPP_VERSION
if [ ! -f "$src/.patched" ]; then  # patched once: a resumed build keeps its sources' times
    rm -rf "$src" && tar -xzf "$work"/sdist/llama_cpp_python-*.tar.gz -C "$work"
    # shellcheck disable=SC2086  # one argument per variant
    "$PYTHON" scripts/cpu_variants.py "$src" $variants
    "$PYTHON" runtime-package/windows/mingw_shim.py "$src"
    touch "$src/.patched"
fi
# The Linux runtime's CMAKE_ARGS, plus what a llama-cpp-python build sets itself (no common
# library, no tools) and pthreads rather than OpenMP, as on Linux (no libgomp DLL to ship).
# shellcheck disable=SC2086  # CMAKE_ARGS is a list of arguments
cmake -S "$src/vendor/llama.cpp" -B "$work/build" -G Ninja \
    -DCMAKE_TOOLCHAIN_FILE="$PWD/runtime-package/windows/mingw.cmake" \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON $CMAKE_ARGS \
    -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_APP=OFF >"$work/cmake.log" \
    || { tail -40 "$work/cmake.log"; exit 1; }
nice -n 10 cmake --build "$work/build" -j "$(nproc)" >"$work/build.log" 2>&1 \
    || { tail -60 "$work/build.log"; exit 1; }
rm -rf "$out" && mkdir -p "$out/lib"
cp "$work"/build/bin/*.dll "$out/lib/"
x86_64-w64-mingw32-strip --strip-unneeded "$out"/lib/*.dll
cp -r "$src/llama_cpp" "$out/llama_cpp"
cp "$src/vendor/llama.cpp/LICENSE" "$out/LICENSE"
cp "$src/LICENSE.md" "$out/llama_cpp_python-LICENSE.md" 2>/dev/null || true
touch "$out/.done"
rm -rf "$work"
echo "$out" >&3
