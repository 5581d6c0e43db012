#!/bin/bash
# p3samd under a real systemd: a minimal Debian root (debootstrap, cached outside the source
# tree and reused), the runtime packages of `scripts/install-deps.sh --runtime-list`, this
# build installed into a copy of it with `meson install --destdir`, a tiny synthetic model as
# the configured one, booted with `systemd-nspawn --boot`. Inside, p3sam-systemtest.service
# runs checks.sh after multi-user.target, writes /results/log and powers the container off;
# this script prints the log and fails on any FAIL. Skips (exit 77) where nspawn cannot boot.
#
# P3_SYSTEMD_TEST_CACHE: where the root is kept (default /var/cache/p3samd-test).
set -u
: "${P3_SOURCE_ROOT:?}" "${P3_BUILD_ROOT:?}" "${P3SAM_RUN:?}" "${P3_TEST_DATA:?}"
here=$(dirname "$(readlink -f "$0")")
skip() { echo "SKIP: $*"; exit 77; }

[ -z "${P3_SANITIZE:-}" ] || skip "P3_SANITIZE: the sanitizer build is clang's (libomp.so.5, not in the \
container's runtime packages) and the booted service would not get the sanitizers' options; \
scripts/test.sh runs this test on the gcc build"
[ "$(id -u)" -eq 0 ] || skip "systemd-nspawn and debootstrap need root"
command -v systemd-nspawn >/dev/null || skip "systemd-nspawn is not installed (Debian: systemd-container)"
command -v debootstrap >/dev/null || skip "debootstrap is not installed"
prefix=$(meson introspect "$P3_BUILD_ROOT" --buildoptions |
        grep -o '"name": "prefix", "value": "[^"]*"' | sed 's/.*"value": "//; s/"$//')
[ "$prefix" = /usr ] || skip "this build's prefix is $prefix: the units, D-Bus and polkit files are installed where a system looks only with --prefix=/usr (scripts/test.sh configures so)"

cache=${P3_SYSTEMD_TEST_CACHE:-/var/cache/p3samd-test}
# debootstrap resolves no virtual package: polkitd's "default-logind | logind" is named here.
packages="systemd,systemd-sysv,dbus,libpam-systemd,$("$P3_SOURCE_ROOT/scripts/install-deps.sh" --runtime-list | tr '\n' ',' | sed 's/,$//')"
# One cached root per package list: a new runtime package makes a new root.
key=$(echo "$packages" | md5sum | cut -c1-12)
root=$cache/bookworm-$key
mirror=$(grep -rhoE 'https?://[^ ]*debian\.org/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null | grep -v security | head -n1)
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$cache" || skip "cannot make $cache"
if [ ! -x "$root/lib/systemd/systemd" ]; then
        echo "making the Debian root (once; kept in $root): debootstrap --variant=minbase --include=$packages"
        start=$(date +%s)
        rm -rf "$root.tmp"
        if ! debootstrap --variant=minbase --include="$packages" bookworm "$root.tmp" "$mirror" \
                >"$cache/debootstrap.log" 2>&1; then
                tail -n 5 "$cache/debootstrap.log"
                rm -rf "$root.tmp"
                skip "debootstrap failed (no Debian mirror reachable?); see $cache/debootstrap.log"
        fi
        rm -rf "$root.tmp/var/cache/apt/archives/"*.deb
        mv "$root.tmp" "$root"
        echo "   made in $(($(date +%s) - start)) s"
fi

work=$(mktemp -d "$cache/run.XXXXXX")
results=$(mktemp -d)
chmod 755 "$results"
cleanup() { rm -rf "$work" "$results"; }
trap cleanup EXIT

t0=$(date +%s)
cp -a --reflink=auto "$root/." "$work/" || exit 1
DESTDIR=$work meson install -C "$P3_BUILD_ROOT" --no-rebuild --quiet >"$results/install.log" 2>&1 ||
        { cat "$results/install.log"; exit 1; }

# The model and the meshes; the test's configuration and unit drop-ins; the checks.
mkdir -p "$work/usr/share/p3sam-test" "$work/etc/p3sam/p3samd.conf.d" \
        "$work/etc/systemd/system/p3samd.service.d" "$work/etc/systemd/system/p3samd@.service.d" \
        "$work/etc/systemd/system/p3sam-httpd.service.d" \
        "$work/usr/local/lib/p3sam-systemtest"
"$P3SAM_RUN" synth --config "$P3_TEST_DATA/tiny_config.json" \
        --out "$work/usr/share/p3sam-test/tiny.safetensors" >/dev/null || exit 1
cp "$P3_TEST_DATA/tiny_config.json" "$P3_TEST_DATA/meshes/alien.glb" \
        "$P3_TEST_DATA/meshes/CesiumMilkTruck.glb" "$P3_TEST_DATA/meshes/bad/Fox_truncated.glb" \
        "$work/usr/share/p3sam-test/"
cp "$here/p3samd-test-conf.conf" "$work/etc/p3sam/p3samd.conf.d/50-test.conf"
cp "$here/p3samd-test.conf" "$work/etc/systemd/system/p3samd.service.d/50-test.conf"
cp "$here/p3samd-test.conf" "$work/etc/systemd/system/p3samd@.service.d/50-test.conf"
cp "$here/p3sam-httpd-test.conf" "$work/etc/systemd/system/p3sam-httpd.service.d/50-test.conf"
cp "$here/p3sam-systemtest.service" "$here/p3sam-systemtest.target" "$work/etc/systemd/system/"
install -m 755 "$here/checks.sh" "$work/usr/local/lib/p3sam-systemtest/checks.sh"
echo "root prepared in $(($(date +%s) - t0)) s"

# Boot it. No network inside; the results directory bound in; bounded in time.
t0=$(date +%s)
timeout 900 systemd-nspawn --quiet --boot --directory="$work" --machine="p3samtest$$" \
        --private-network --register=no --keep-unit --console=pipe --bind="$results:/results" \
        systemd.unit=p3sam-systemtest.target </dev/null >"$results/console.log" 2>&1
rc=$?
echo "booted, checked and powered off in $(($(date +%s) - t0)) s (systemd-nspawn exit $rc)"

if [ ! -s "$results/log" ]; then
        tail -n 30 "$results/console.log"
        grep -qiE 'cgroup|Failed to .*mount|not supported' "$results/console.log" &&
                skip "systemd-nspawn cannot boot a container here (see above)"
        echo "FAIL: the checks did not run (console above)"
        exit 1
fi
cat "$results/log"
if ! grep -q '^done ' "$results/log"; then
        echo "FAIL: the checks did not finish (timeout?)"
        tail -n 30 "$results/console.log"
        exit 1
fi
if grep -q '^FAIL' "$results/log"; then
        echo "--- commands"; tail -n 60 "$results/commands.log" 2>/dev/null
        exit 1
fi
exit 0
