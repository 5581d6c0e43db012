#!/bin/bash
# p3samctl setup-swap, for real, as root: a swap file in a temporary directory under /var/tmp,
# active in /proc/swaps, then swapoff and removal; every refusal creates nothing; --persist
# writes a unit that systemd-analyze accepts. Parts the host cannot do (swapon in a container,
# mounting tmpfs or loop filesystems, systemd-analyze) print SKIP and the rest still runs.
# Whatever happens, the trap leaves no swap active and no file behind.
set -u
: "${P3SAMCTL:?}"
[ "$(id -u)" = 0 ] || { echo "SKIP: setup-swap needs root; run this test as root"; exit 77; }

# No "-" in the name: the expected unit names below are then plain substitutions.
tmp=$(mktemp -d /var/tmp/p3samswap.XXXXXX) || exit 1
chmod 755 "$tmp"
mkdir "$tmp/log" "$tmp/w"
w=$tmp/w
mounts=()
shm_path=/dev/shm/p3samswap-test.$$

cleanup() {
        local f i
        while IFS= read -r -d '' f; do
                swapoff "$f" 2>/dev/null
        done < <(find "$tmp" -type f -print0 2>/dev/null)
        for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[i]}"; done
        rm -rf "$tmp" "$shm_path"
}
trap cleanup EXIT

fails=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
skip() { echo "SKIP: $*"; }
check() { # check DESCRIPTION -- command...
        local what=$1; shift 2
        if "$@"; then ok "$what"; else fail "$what"; fi
}
run() { # run ARGS...: p3samctl ARGS; sets rc, output in $tmp/log/{out,err}
        "$P3SAMCTL" "$@" >"$tmp/log/out" 2>"$tmp/log/err"
        rc=$?
}
show() { sed 's/^/  | /' "$tmp/log/out" "$tmp/log/err"; }
expect_exit() { # expect_exit CODE DESCRIPTION
        if [ "$rc" = "$1" ]; then ok "$2 (exit $rc)"; else fail "$2: exit $rc, expected $1"; fi
        show
}
said() { grep -qF -- "$1" "$tmp/log/out" "$tmp/log/err"; }
absent() { [ ! -e "$1" ] && [ ! -L "$1" ]; }
# /proc/swaps writes a space in a path as \040.
active() { awk 'NR > 1 { print $1 }' /proc/swaps | grep -qxF -- "${1// /\\040}"; }
swapon_refused() { [ "$rc" = 1 ] && said "cannot enable swap on"; }

fstype=$(stat -f -c %T "$tmp")
case $fstype in
tmpfs | overlayfs | ramfs | squashfs | nfs* | fuse* | cifs | smb2) fit=false ;;
*) fit=true ;;
esac
echo "# $tmp is on $fstype; kernel $(uname -r)"

# ---- refusals: each one creates nothing ----
run setup-swap 8M --path "$w/small"
expect_exit 2 "a size under 16M is a usage error"
check "nothing created for 8M" -- absent "$w/small"
run setup-swap lots --path "$w/bad"
expect_exit 2 "a size that does not parse is a usage error"
run setup-swap 32M --path relative/swapfile
expect_exit 2 "a relative --path is a usage error"
run setup-swap -5M --path "$w/negative"
expect_exit 2 "a negative size is a usage error"
check "-5M: says the size cannot be negative (not 'unknown option')" -- \
        said "a swap size cannot be negative ('-5M')"
check "nothing created for -5M" -- absent "$w/negative"
run setup-swap 32M -xy --path "$w/xy"
expect_exit 2 "an unknown option is a usage error"
check "names the unknown option -x, not the verb" -- said "unknown option -x for setup-swap"

nobody_gid=$(id -g nobody 2>/dev/null)
if ! command -v setpriv >/dev/null || [ -z "$nobody_gid" ]; then
        skip "not root: setpriv or the user nobody is missing"
elif ! setpriv --reuid=nobody --regid="$nobody_gid" --clear-groups test -x "$P3SAMCTL" 2>/dev/null
then
        skip "not root: cannot run $P3SAMCTL as nobody here (no such uid in this namespace, or a private build directory)"
else
        setpriv --reuid=nobody --regid="$nobody_gid" --clear-groups \
                "$P3SAMCTL" setup-swap 32M --path "$w/notroot" >"$tmp/log/out" 2>"$tmp/log/err"
        rc=$?
        expect_exit 4 "not root is access denied"
        check "not root: says how to run it as root" -- said "run it as root: sudo p3samctl setup-swap 32M"
        check "not root: nothing created" -- absent "$w/notroot"
fi

printf 'keep me\n' >"$w/existing"
run setup-swap 32M --path "$w/existing"
expect_exit 1 "an existing file is refused"
check "the existing file is untouched" -- [ "$(cat "$w/existing")" = "keep me" ]
ln -s "$w/nowhere" "$w/dangling"
run setup-swap 32M --path "$w/dangling"
expect_exit 1 "a dangling symlink at --path is refused"
check "nothing created through the symlink" -- absent "$w/nowhere"

run setup-swap 1024T --path "$w/huge"
expect_exit 1 "more than the free space is refused"
check "says there is not enough space" -- said "not enough space"
check "nothing created for 1024T" -- absent "$w/huge"

run setup-swap 32M --path "$w/nodir/swapfile"
expect_exit 1 "a missing directory is refused"

run setup-swap 32M --path "$w/dry" --persist --unit-dir "$tmp/dry-units" --dry-run
if $fit; then
        expect_exit 0 "--dry-run"
        check "--dry-run says what it would do" -- said "Would create $w/dry (32.0 MiB"
        check "--dry-run names the unit" -- said "Would write $tmp/dry-units/"
else
        expect_exit 1 "--dry-run on $fstype reports the filesystem"
fi
check "--dry-run creates no file" -- absent "$w/dry"
check "--dry-run creates no unit directory" -- absent "$tmp/dry-units"

# tmpfs: a small one of our own, else /dev/shm (usually tmpfs).
mkdir "$tmp/tmpfs"
if mount -t tmpfs -o size=64m tmpfs "$tmp/tmpfs" 2>/dev/null; then
        mounts+=("$tmp/tmpfs")
        tmpfs_path=$tmp/tmpfs/swapfile
elif [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
        tmpfs_path=$shm_path
else
        tmpfs_path=
fi
if [ -n "$tmpfs_path" ]; then
        run setup-swap 16M --path "$tmpfs_path"
        expect_exit 1 "tmpfs is refused"
        check "names tmpfs" -- said "is on tmpfs"
        check "nothing created on tmpfs" -- absent "$tmpfs_path"
else
        skip "tmpfs: cannot mount one and /dev/shm is not tmpfs"
fi

if ! $fit; then
        skip "swap files: $tmp is on $fstype; swapon, --persist and the undo are not tested"
        exit $((fails > 0))
fi

# ---- mkswap fails: the file goes again ----
real_mkswap=$(PATH=$PATH:/usr/sbin:/sbin command -v mkswap)
mkdir "$tmp/fakebin" "$tmp/fakebin2"
printf '#!/bin/sh\necho "fake mkswap: no such luck" >&2\nexit 3\n' >"$tmp/fakebin/mkswap"
# Runs the real mkswap, then puts a file where the unit directory is to go: --persist then
# fails after swapon, which must be taken back too.
printf '#!/bin/sh\n"$REAL_MKSWAP" "$@" || exit\n: >"$BLOCK_UNITS"\n' >"$tmp/fakebin2/mkswap"
chmod +x "$tmp/fakebin/mkswap" "$tmp/fakebin2/mkswap"
PATH=$tmp/fakebin:$PATH run setup-swap 32M --path "$w/badmkswap"
expect_exit 1 "a failing mkswap fails the command"
check "mkswap's own output is shown when it fails" -- said "fake mkswap: no such luck"
check "the file is removed after mkswap failed" -- absent "$w/badmkswap"

# ---- a swap file: created 0600 root, a page-size multiple, active ----
page=$(getconf PAGESIZE)
run setup-swap 33554433 --path "$w/swapfile"
swapon_ok=false
if [ "$rc" = 0 ]; then
        swapon_ok=true
        expect_exit 0 "setup-swap 32M+1 bytes"
        check "says what it created" -- said "Created $w/swapfile (32.0 MiB, "
        check "mode 0600, owned by root:root" -- [ "$(stat -c %a:%u:%g "$w/swapfile")" = 600:0:0 ]
        check "size rounded up to the page size" -- \
                [ "$(stat -c %s "$w/swapfile")" = $((32 * 1024 * 1024 + page)) ]
        check "active in /proc/swaps" -- active "$w/swapfile"
        swapoff "$w/swapfile" && rm -f "$w/swapfile"
elif swapon_refused; then
        show
        skip "active in /proc/swaps: the kernel refused swapon here ($(tail -n1 "$tmp/log/err"))"
        check "refused swapon: the file is removed" -- absent "$w/swapfile"
else
        expect_exit 0 "setup-swap 32M+1 bytes"
fi

# ---- --persist: the unit, its link, systemd-analyze ----
mkdir "$w/swap dir"
swap="$w/swap dir/swap file"
units=$tmp/units
tmp_escaped=${tmp#/}
name="${tmp_escaped//\//-}-w-swap\\x20dir-swap\\x20file.swap"
run setup-swap 32M --path "$swap" --persist --unit-dir "$units"
if [ "$rc" = 0 ]; then
        expect_exit 0 "setup-swap --persist"
        check "active in /proc/swaps" -- active "$swap"
        check "the unit has the escaped name $name" -- [ -f "$units/$name" ]
        if command -v systemd-escape >/dev/null; then
                check "systemd-escape agrees on the name" -- \
                        [ "$(systemd-escape --path --suffix=swap "$swap")" = "$name" ]
        fi
        check "the unit says What=$swap" -- grep -qxF "What=$swap" "$units/$name"
        check "linked into swap.target.wants" -- \
                [ "$(readlink -f "$units/swap.target.wants/$name")" = "$(readlink -f "$units/$name")" ]
        check "says it wrote and enabled the unit" -- said "Wrote $units/$name and enabled it"
        if command -v systemd-analyze >/dev/null; then
                # What= must exist for verify: the swap file stays until here.
                check "systemd-analyze verify accepts the unit" -- \
                        systemd-analyze verify --man=no "$units/$name"
        else
                skip "systemd-analyze verify: systemd-analyze is not installed"
        fi
        swapoff "$swap" && rm -f "$swap"
elif swapon_refused; then
        show
        skip "--persist unit: the kernel refused swapon here"
        check "refused swapon: no file, no unit, no link" -- \
                eval 'absent "$swap" && absent "$units/$name" && absent "$units/swap.target.wants"'
else
        expect_exit 0 "setup-swap --persist"
fi

# ---- a failure after swapon: swapoff, then the file goes ----
if $swapon_ok; then
        PATH=$tmp/fakebin2:$PATH REAL_MKSWAP=$real_mkswap BLOCK_UNITS=$tmp/blocked \
                run setup-swap 32M --path "$w/undo" --persist --unit-dir "$tmp/blocked/units"
        expect_exit 1 "a --persist that fails after swapon fails the command"
        check "swap on the file is disabled again" -- eval '! active "$w/undo"'
        check "the file is removed again" -- absent "$w/undo"
        check "says it took swap back" -- said "Disabled swap on $w/undo again"
else
        skip "undo after swapon: swapon is refused here"
fi

# ---- other allocation paths, on loop filesystems where the host lets us mount them ----
loop_fs() { # loop_fs NAME MKFS ARGS...: an image of 300M mounted on $tmp/NAME
        local name=$1; shift
        command -v "$1" >/dev/null || { skip "$name: $1 is not installed"; return 1; }
        truncate -s 300M "$tmp/$name.img" && mkdir "$tmp/$name" &&
                "$@" "$tmp/$name.img" >/dev/null 2>&1 &&
                mount -o loop "$tmp/$name.img" "$tmp/$name" 2>/dev/null ||
                { skip "$name: cannot make or mount a loop filesystem here"; return 1; }
        mounts+=("$tmp/$name")
}
loop_swap() { # loop_swap NAME: setup-swap 64M on it; 0 when swap was on
        run setup-swap 64M --path "$tmp/$1/swapfile"
        if [ "$rc" = 0 ]; then
                check "$1: active in /proc/swaps" -- active "$tmp/$1/swapfile"
                return 0
        fi
        if swapon_refused; then
                skip "$1: the kernel refused swapon here"
                check "$1: the file is removed" -- absent "$tmp/$1/swapfile"
        else
                expect_exit 0 "$1: setup-swap 64M"
        fi
        return 1
}
# ext4 without extents cannot fallocate: the fallback writes zeros.
if loop_fs ext4-noextents mkfs.ext4 -q -F -O ^extents,^64bit; then
        if loop_swap ext4-noextents; then
                check "ext4 without extents: zero-filled" -- said "(64.0 MiB, zero-fill)"
                swapoff "$tmp/ext4-noextents/swapfile"
        fi
fi
# btrfs takes swap only on a NOCOW file.
if loop_fs btrfs mkfs.btrfs -q -f; then
        if loop_swap btrfs; then
                check "btrfs: the file is NOCOW" -- \
                        eval 'lsattr "$tmp/btrfs/swapfile" | cut -d" " -f1 | grep -q C'
                swapoff "$tmp/btrfs/swapfile"
        fi
fi

check "no swap of this test is left active" -- eval '! grep -qF "$tmp" /proc/swaps'
echo "# $fails failure(s)"
exit $((fails > 0))
