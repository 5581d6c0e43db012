#!/bin/sh
# Install every Debian package that building and testing p3samd needs.
# Idempotent: packages already present are skipped, `apt-get update` runs at most once.
set -eu

PKGS="meson ninja-build pkg-config gcc libc6-dev
libjson-c-dev libopenblas-dev libblas-dev
libsystemd-dev libuv1-dev libassimp-dev libinih-dev libcurl4-openssl-dev
scdoc dbus polkitd systemd util-linux"

missing=""
for p in $PKGS; do
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
