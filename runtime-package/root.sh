#!/usr/bin/env bash
# Makes the build root: a Debian 11 (bullseye, glibc 2.31) file system with the compilers and
# the headers CPython and llama.cpp need. Everything built inside it links against glibc 2.31,
# so the runtime runs on 2.31 and newer whatever machine ran this.
#     runtime-package/root.sh ROOT
# Needs root (debootstrap, chroot) and Debian's package mirror; about 5 minutes, ~1.5 GB.
set -euo pipefail
root=$1
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# gcc-10 builds CPython (bullseye's own compiler for it); clang-19 (from bullseye-security,
# as Firefox ESR needs it) builds llama.cpp: gcc 10 cannot compile the alderlake variant's
# AVX-VNNI code (-mavxvnni is gcc 11+). Both use bullseye's libstdc++ and glibc.
packages="build-essential clang-19 dpkg-dev ca-certificates xz-utils binutils pkg-config
 libssl-dev libffi-dev zlib1g-dev libsqlite3-dev libbz2-dev liblzma-dev uuid-dev libgdbm-dev"

staging=$root.staging
rm -rf "$staging"
debootstrap --variant=minbase bullseye "$staging" "$mirror" >"$staging.log" 2>&1 \
    || { tail -20 "$staging.log"; exit 1; }
cat >"$staging/etc/apt/sources.list" <<LIST
deb $mirror bullseye main
deb $security bullseye-security main
deb-src $mirror bookworm main
LIST
cp /etc/resolv.conf "$staging/etc/resolv.conf"
chroot "$staging" sh -c "apt-get update -qq && apt-get -y -qq dist-upgrade \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(echo $packages) \
    && apt-get clean" >>"$staging.log" 2>&1 || { tail -20 "$staging.log"; exit 1; }
rm -f "$staging.log"
mv -T "$staging" "$root"
