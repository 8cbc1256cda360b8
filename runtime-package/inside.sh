#!/usr/bin/env bash
# Runs inside the build root (runtime-package/build.sh chroots into it): builds what the runtime
# is made of, each stage once per root and kept there, then freezes the runtime.
#     /build/src/runtime-package/inside.sh  (the checkout's sources copied to /build/src)
# Stages: CPython from Debian's python3.11 source package (bookworm's, Debian's patches and
# security fixes included), compiled here against glibc 2.31; a venv with the runtime's pinned
# dependencies and PyInstaller; llama-cpp-python compiled with clang-19 and the chosen CPU
# variants; then PyInstaller freezes runtime/ + templates/ into /build/out/runtime.
set -euo pipefail
export LC_ALL=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
src=/build/src
jobs=$(nproc)
# shellcheck source=llama.env
. "$src/runtime-package/llama.env"

stage() { echo "runtime-package: $* ($(date +%T))"; }

# 1. CPython. --enable-shared: PyInstaller carries libpython. No PGO: the runtime spends its
#    time in llama.cpp, and PGO would triple a compile that already takes minutes.
# The marker is keyed by this stage's own text (the lines between "1." and "2."), so an edit to
# how CPython is built rebuilds it instead of reusing a stale one.
cpython_key=$(sed -n '/^# 1\. CPython/,/^# 2\. llama/p' "$0" | sha256sum | cut -c1-16)
if [ ! -f "/opt/python/.built-$cpython_key" ]; then
    stage "compiling CPython 3.11 from Debian's source package"
    rm -rf /build/cpython && mkdir -p /build/cpython && cd /build/cpython
    apt-get source -qq python3.11 >/dev/null 2>&1 || apt-get source python3.11
    cd python3.11-*/
    # Debian's security fix to pyexpat includes an internal header (pycore_ceval.h), fine in
    # Debian's build, where pyexpat is built into python, but not as a shared module: say it
    # is a core module, as CPython 3.12's pyexpat.c does itself.
    for module in Modules/pyexpat.c Modules/_elementtree.c; do
        grep -q Py_BUILD_CORE_MODULE "$module" \
            || sed -i '1i #ifndef Py_BUILD_CORE_BUILTIN\n#  define Py_BUILD_CORE_MODULE 1\n#endif' "$module"
    done
    ./configure -q --prefix=/opt/python --enable-shared --with-ensurepip=no \
        --disable-test-modules >/dev/null
    make -s -j"$jobs" >/build/cpython/make.log 2>&1 || { tail -40 /build/cpython/make.log; exit 1; }
    rm -rf /opt/python  # a leftover install makes Debian's sysconfigdata link fail
    make -s install >>/build/cpython/make.log 2>&1 || { tail -40 /build/cpython/make.log; exit 1; }
    # libpython is found through the root's loader cache (it lives only in this root)
    echo /opt/python/lib >/etc/ld.so.conf.d/opt-python.conf && /sbin/ldconfig
    /opt/python/bin/python3.11 -c "import ssl, sqlite3, ctypes, zlib, bz2, lzma, uuid, pyexpat; \
        sqlite3.connect(':memory:').execute('create virtual table t using fts5(x)')"
    rm -rf /build/cpython
    touch "/opt/python/.built-$cpython_key"
fi

# 2. llama-cpp-python, compiled once per (version, CMAKE_ARGS, CPU variants): llama.env.
#    The key covers this stage's text too (compiler, flags) and CPython's key.
llama_key=$( (cat "$src/runtime-package/llama.env" "$src/scripts/cpu_variants.py"; echo "$cpython_key"
    sed -n '/^# 2\. llama/,/^# 3\. The venv/p' "$0") | sha256sum | cut -c1-16)
wheels=/build/wheels/llama-$llama_key
if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    stage "compiling llama-cpp-python $LLAMA_CPP_VERSION with clang-19 (variants: $CPU_VARIANTS)"
    rm -rf /build/llama && mkdir -p /build/llama && cd /build/llama
    /opt/python/bin/python3.11 -m venv tools
    # --no-binary for llama-cpp-python alone: ":all:" would compile its build tools too (cmake)
    tools/bin/pip download -q --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==$LLAMA_CPP_VERSION" -d sdist
    tar -xzf sdist/llama_cpp_python-*.tar.gz
    # shellcheck disable=SC2086  # one argument per variant
    /opt/python/bin/python3.11 "$src/scripts/cpu_variants.py" "llama_cpp_python-$LLAMA_CPP_VERSION" $CPU_VARIANTS
    CC=clang-19 CXX=clang++-19 CMAKE_ARGS="$CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$jobs \
        tools/bin/pip wheel -q --no-deps --no-cache-dir "./llama_cpp_python-$LLAMA_CPP_VERSION" \
        -w wheel >build.log 2>&1 || { tail -60 build.log; exit 1; }
    # llama.cpp's own license travels with its libraries (the wheel carries only its binding's)
    cp "llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp/LICENSE" wheel/llama.cpp-LICENSE
    mkdir -p /build/wheels && mv -T wheel "$wheels"
    cd / && rm -rf /build/llama
fi

# 3. The venv the runtime is frozen from: exactly the pins in the checkout's pyproject.toml.
pins=$(/opt/python/bin/python3.11 "$src/runtime-package/pins.py" "$src/pyproject.toml")
venv_key=$(printf '%s\n%s\n' "$pins" "$llama_key" | sha256sum | cut -c1-16)
if [ ! -f "/opt/venv/.key-$venv_key" ]; then
    stage "installing the runtime's dependencies"
    rm -rf /opt/venv
    /opt/python/bin/python3.11 -m venv /opt/venv
    # shellcheck disable=SC2086  # one argument per pin
    /opt/venv/bin/pip install -q --only-binary :all: $pins
    /opt/venv/bin/pip install -q --no-deps "$wheels"/llama_cpp_python-*.whl
    touch "/opt/venv/.key-$venv_key"
fi

# 4. Freeze.
stage "freezing the runtime"
rm -rf /build/out /build/freeze && mkdir -p /build/out/licenses
# The notices of what the runtime carries beyond Python packages: llama.cpp, and the Debian 11
# libraries PyInstaller collects (OpenSSL, libffi, zlib, SQLite, bzip2, xz, libstdc++, ...);
# freeze.py adds CPython's and the packages', and freezes them all into the runtime.
cp "$wheels/llama.cpp-LICENSE" /build/out/licenses/
for package in libssl1.1 libffi7 zlib1g libsqlite3-0 libbz2-1.0 liblzma5 libstdc++6 \
        libgcc-s1 libuuid1; do
    cp "/usr/share/doc/$package/copyright" "/build/out/licenses/debian-$package-copyright"
done
/opt/venv/bin/python "$src/runtime-package/freeze.py" "$src" /build/freeze /build/out
cp "$wheels"/llama_cpp_python-*.whl /build/out/
stage "done"
