#!/bin/sh
# Install every Debian package that building and testing p3samd needs.
# Idempotent: packages already present are skipped, `apt-get update` runs at most once.
#
#   scripts/install-deps.sh                 install what building, testing and running need
#   scripts/install-deps.sh --runtime-list  print what the installed programs need to run, one
#                                           Debian package a line (the real-systemd test puts
#                                           exactly these into its container; bootstrap
#                                           installs them with the rest)
set -eu

# What p3samd, p3samctl, p3sam-httpd and the units need at run time: the shared libraries they
# link (oneDNN for the matrix products, libmicrohttpd for the HTTP gateway), the system bus,
# polkit, systemd's busctl.
RUNTIME="libjson-c5 libsystemd0 libuv1 libassimp5 libseccomp2 libpng16-16 libinih1 libcurl4 libssl3
libgomp1 libdnnl2 libmicrohttpd12 dbus polkitd systemd"

# Building and testing; systemd-container and debootstrap boot the real-systemd test,
# slurm-wlm and munge the one-node Slurm cluster of the slurm test (its own daemons on their
# own ports and configuration; the packages' services are not used). clang and
# libclang-rt-14-dev (libFuzzer, ASan and UBSan runtimes; plain clang only recommends it) build
# the fuzz targets (-Dfuzz=true, scripts/fuzz.sh). python3-numpy loads the .npy outputs the
# way X-Part's users will; python3-dbus passes descriptors in D-Bus calls (busctl cannot); curl
# and jq are the HTTP gateway test's client; valgrind checks one whole segmentation.
BUILD="meson ninja-build pkg-config gcc libc6-dev clang libclang-rt-14-dev libomp-dev
libjson-c-dev libssl-dev libsystemd-dev libuv1-dev libassimp-dev libseccomp-dev libpng-dev
libinih-dev libcurl4-openssl-dev libdnnl-dev libmicrohttpd-dev
scdoc util-linux systemd-container debootstrap slurm-wlm munge python3-numpy python3-dbus curl jq valgrind"

if [ "${1:-}" = "--runtime-list" ]; then
    for p in $RUNTIME; do echo "$p"; done
    exit 0
fi
if [ $# -gt 0 ]; then
    echo "usage: $0 [--runtime-list]" >&2
    exit 2
fi

missing=""
for p in $BUILD $RUNTIME; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done

if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages:$missing; run this script as root (sudo $0)." >&2
    exit 1
fi

echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
