#!/usr/bin/env bash
# `make runtime`: builds the runtime package (a wheel holding the frozen runtime, tagged for
# the glibc it needs) inside a Debian 11 root, once per content: the same sources give no
# rebuild. See runtime-package/README.md.
#     runtime-package/build.sh   ->  prints the wheel's path
# Needs root (debootstrap, chroot), Debian's package mirror and PyPI. Cold (no root, no
# compiled CPython or llama.cpp): ~13 min of CPU on 2 cores; a changed runtime/ alone: ~1 min.
set -euo pipefail
cd "$(dirname "$0")/.."
exec 3>&1 1>&2  # progress on stderr; stdout is the wheel's path alone
PYTHON=${PYTHON:-python3}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/llamabundle
key=$("$PYTHON" -m bundler.runtime_package key)
wheel_dir=$cache/runtime-package/$key
if ls "$wheel_dir"/llamabundle_runtime-*.whl >/dev/null 2>&1; then
    ls "$wheel_dir"/llamabundle_runtime-*.whl >&3
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "make runtime: needs root (debootstrap and chroot)" >&2; exit 1; }

# The root is kept between builds (CPython and llama.cpp compiled in it), one per root.sh.
root=$cache/rootfs/bullseye-build-$(sha256sum runtime-package/root.sh | cut -c1-12)
mkdir -p "$cache/rootfs" "$cache/runtime-package"
exec 9>"$root.lock"
flock 9
if [ ! -d "$root" ]; then
    echo "runtime-package: making the Debian 11 build root ($(date +%T))"
    runtime-package/root.sh "$root"
fi
rm -rf "$root/build/src" "$root/build/out"
mkdir -p "$root/build/src"
cp -r runtime templates runtime-package scripts pyproject.toml "$root/build/src/"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# pip inside trusts what this machine trusts (a proxy's own CA, say) and uses its index.
cp "${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}" "$root/build/ca.crt"
pass=(PIP_CERT=/build/ca.crt SSL_CERT_FILE=/build/ca.crt)
for var in PIP_INDEX_URL http_proxy https_proxy HTTP_PROXY HTTPS_PROXY no_proxy NO_PROXY; do
    [ -z "${!var:-}" ] || pass+=("$var=${!var}")
done
# A private mount namespace: /proc and /dev are mounted for the chroot and vanish with it.
unshare --mount --propagation private sh -c '
    root=$1 && shift
    mount -t proc proc "$root/proc" && mount --rbind /dev "$root/dev"
    exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@" \
        /build/src/runtime-package/inside.sh
' sh "$root" "${pass[@]}"
rm -rf "$wheel_dir.tmp"
"$PYTHON" runtime-package/wheel.py "$root/build/out" "$key" "$wheel_dir.tmp" >/dev/null
# llama-cpp-python's wheel from the same compile, for the development venv's in-process tests.
cp "$root"/build/out/llama_cpp_python-*.whl "$wheel_dir.tmp/"
rm -rf "$wheel_dir" && mv -T "$wheel_dir.tmp" "$wheel_dir"
ls "$wheel_dir"/llamabundle_runtime-*.whl >&3
