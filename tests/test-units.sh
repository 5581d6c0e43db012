#!/bin/bash
# SPDX-License-Identifier: MIT
# test-units.sh units|man
#
# units: the system integration as installed (meson install --destdir into a scratch root):
#   systemd-analyze verify of the units, silent (a warning fails too); the exposure figure of
#   systemd-analyze security (printed, and at most 1.0); sysusers.d and tmpfiles.d applied to
#   the scratch root; every setting of the unit source under a comment; the unit and the
#   daemon agreeing (ExecStart, bus names, polkit ids); p3samd.conf listing every key of
#   daemon-conf.c and, uncommented, loading in the daemon; the mesh importer installed in
#   libexecdir; the D-Bus policy on a private bus
#   that denies by default like the system bus (root owns the names, nobody may not, nobody
#   may call); the polkit and activation files.
# man: every page built, rendered without groff warnings and with EXAMPLES; the generated
#   interface section of org.p3sam.Segmenter1(5) listing every method, signal and property
#   of p3samd --introspect and of the committed XML, each also described by hand; every
#   option of p3samd --help in p3samd(8), every key in p3samd.conf(5), every verb and exit
#   code of p3samctl in p3samctl(1).
set -u
mode=${1:?usage: test-units.sh units|man}
src=${P3_SOURCE_ROOT:?}
build=${P3_BUILD_ROOT:?}
: "${P3SAMD:?}"

fails=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
skip() { echo "skip: $*"; }
check() { # check DESCRIPTION -- command...
        local what=$1
        shift 2
        if "$@"; then ok "$what"; else fail "$what"; fi
}

tmp=$(mktemp -d)
pids=()
cleanup() {
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
        wait 2>/dev/null
        rm -rf "$tmp"
}
trap cleanup EXIT

# The keys of daemon-conf.c's table, "Section Key" per line.
conf_keys() {
        grep -oE '\[KEY_[A-Z_]+\] = \{ "[A-Za-z]+", "[A-Za-z]+"' "$src/daemon/daemon-conf.c" |
                sed -E 's/.*\{ "([A-Za-z]+)", "([A-Za-z]+)"/\1 \2/'
}

# ------------------------------------------------------------------------------------------
units() {
        local root=$tmp/root unitdir=${P3_UNITDIR:?} sbin=${P3_SBINDIR:?}
        mkdir -p "$root"
        if ! meson install -C "$build" --no-rebuild --quiet --destdir "$root" >"$tmp/install.log" 2>&1; then
                cat "$tmp/install.log"
                fail "meson install --destdir"
                return
        fi
        ok "meson install --destdir $root"

        local f
        for f in "$unitdir/p3samd.service" "$unitdir/p3samd@.service" \
                "$unitdir/p3samd-gpu-setup.service" "$P3_SYSUSERSDIR/p3samd.conf" \
                "$P3_TMPFILESDIR/p3samd.conf" "$P3_DBUSPOLICYDIR/org.p3sam.Segmenter1.conf" \
                "$P3_DBUSSERVICEDIR/org.p3sam.Segmenter1.service" \
                "$P3_POLKITDIR/org.p3sam.policy" "$P3_CONF_PATH" \
                "$unitdir/p3sam-httpd.service" "$unitdir/p3sam-httpd.socket"; do
                check "installed $f" -- test -s "$root$f"
        done
        check "ExecStart= is the installed p3samd" -- \
                grep -qE "^ExecStart=$sbin/p3samd( |\$)" "$root$unitdir/p3samd.service"
        check "p3samd installed where ExecStart= says" -- test -x "$root$sbin/p3samd"
        check "p3sam-httpd.service's ExecStart= is the installed gateway" -- \
                eval 'grep -qx "ExecStart=$sbin/p3sam-httpd" "$root$unitdir/p3sam-httpd.service" &&
                      test -x "$root$sbin/p3sam-httpd"'
        check "p3sam-httpd.socket listens on loopback port 5000 only" -- \
                eval '[ "$(grep ^ListenStream= "$root$unitdir/p3sam-httpd.socket")" = ListenStream=127.0.0.1:5000 ]'
        check "the gateway's polkit rule ships as an example only (not in a rules.d)" -- \
                eval '[ -n "$(find "$root" -name p3sam-httpd-manage.rules -path "*/doc/*")" ] &&
                      [ -z "$(find "$root" -path "*rules.d*" -name "*p3sam*")" ]'
        check "the mesh importer p3sam-import installed in libexecdir" -- \
                test -n "$(find "$root" -path '*/libexec/p3sam-import' -type f -perm -u+x)"

        # -- systemd-analyze verify --
        # --root makes verify resolve everything inside the scratch root: the units we depend
        # on (sysinit.target, ...: the host's, copied beside ours), the executables of
        # ExecStart= and friends (ours, installed; busctl and /bin/sh copied from the host;
        # nvidia-modprobe, which belongs to the NVIDIA driver, stood in for by true), and,
        # with MANPATH pointing into the root, the man pages of Documentation=.
        if ! command -v systemd-analyze >/dev/null; then
                skip "systemd-analyze is not installed"
        else
                mkdir -p "$root$unitdir" "$root/usr/bin"
                cp -an /lib/systemd/system/. "$root$unitdir/" 2>/dev/null
                [ -d /usr/lib/systemd/system ] && cp -an /usr/lib/systemd/system/. "$root$unitdir/" 2>/dev/null
                cp "$(type -P busctl)" "$root/usr/bin/busctl"
                cp "$(type -P sh)" "$root/usr/bin/sh"
                cp "$(type -P true)" "$root/usr/bin/nvidia-modprobe"
                [ -e "$root/bin" ] || ln -s usr/bin "$root/bin"
                local man_opt=--man=yes mandir
                mandir=$(find "$root" -type d -name man8 -path '*/man/*' | head -n1)
                if [ -z "$mandir" ] || ! command -v man >/dev/null; then
                        man_opt=--man=no
                        skip "Documentation= pages not checked (no man, or the pages were not built)"
                fi
                MANPATH=${mandir%/man8} systemd-analyze verify --root="$root" "$man_opt" \
                        "$unitdir/p3samd.service" "$unitdir/p3samd-gpu-setup.service" \
                        p3samd@0.service p3samd@1.service "$unitdir/p3sam-httpd.socket" \
                        "$unitdir/p3sam-httpd.service" >"$tmp/verify.log" 2>&1
                local rc=$?
                cat "$tmp/verify.log"
                check "systemd-analyze verify: exit 0" -- test "$rc" -eq 0
                check "systemd-analyze verify: no warning" -- test ! -s "$tmp/verify.log"

                # The figure for the notes; what each point is for is in the unit's comments.
                local u
                for u in p3samd.service p3samd@0.service p3sam-httpd.service; do
                        if systemd-analyze security --offline=true --root="$root" "$u" \
                                >"$tmp/security.log" 2>&1; then
                                grep -E '^[^✓]' "$tmp/security.log" | grep -v '^NAME' | sed 's/ \{2,\}/  /g'
                                # with the mesh importer's helper (seccomp allowed for it)
                                local level
                                level=$(sed -n 's/.*exposure level for [^:]*: \([0-9.]*\).*/\1/p' \
                                        "$tmp/security.log")
                                check "$u: exposure $level <= 1.0" -- \
                                        awk -v l="$level" 'BEGIN { exit !(l != "" && l <= 1.0) }'
                        else
                                cat "$tmp/security.log"
                                fail "systemd-analyze security --offline=true $u"
                        fi
                done
        fi

        # -- every setting under a comment --
        # A setting is explained by the comment right above it, or shares the comment of
        # the settings it directly follows; a setting after a blank line or a section header
        # has none.
        local bare
        bare=$(awk '
                /^#/ { explained = 1; next }
                /^(Description|Documentation)=/ { next }   # self-describing
                /^$/ || /^\[/ { explained = 0; next }
                /^@INSTANCE_SETTINGS@$/ { next }
                /=/ && !explained { print FILENAME ":" FNR ": " $0 }
        ' "$src/systemd/p3samd.service.in" "$src/systemd/p3samd-gpu-setup.service" \
                "$src/systemd/p3sam-httpd.service.in" "$src/systemd/p3sam-httpd.socket")
        check "every unit setting has a comment${bare:+ (not: $bare)}" -- test -z "$bare"

        # -- the unit and the daemon agree --
        local busname
        busname=$(sed -n 's/^#define P3_BUS_NAME "\(.*\)"/\1/p' "$src/daemon/manager.h")
        check "BusName=$busname as in manager.h" -- \
                grep -qx "BusName=$busname" "$root$unitdir/p3samd.service"
        check "the template owns $busname.gpu%i and says so" -- \
                grep -q -- "--bus-name $busname.gpu%i\$" "$root$unitdir/p3samd@.service"
        check "the template's BusName= matches its --bus-name" -- \
                grep -qx "BusName=$busname.gpu%i" "$root$unitdir/p3samd@.service"
        check "the template confines CUDA to GPU %i" -- \
                grep -qx "Environment=CUDA_VISIBLE_DEVICES=%i" "$root$unitdir/p3samd@.service"
        # oneDNN writes its kernels at run time and then executes them, and asks for the AMX
        # tile state with arch_prctl: the sandbox must allow both (the real-systemd test runs a
        # BF16 job under it where the CPU has BF16).
        check "MemoryDenyWriteExecute=no (oneDNN's run-time kernels)" -- \
                grep -qx "MemoryDenyWriteExecute=no" "$root$unitdir/p3samd.service"
        check "SystemCallFilter=@system-service allows arch_prctl (AMX tile state)" -- \
                bash -c "systemd-analyze syscall-filter @default | grep -qx '    arch_prctl' &&
                         systemd-analyze syscall-filter @system-service | grep -qx '    @default' &&
                         ! systemd-analyze syscall-filter @privileged | grep -qx '    arch_prctl'"
        local id
        for id in $(sed -n 's/^#define P3_ACTION_[A-Z]* "\(.*\)"/\1/p' "$src/daemon/manager.h"); do
                check "polkit action $id defined" -- \
                        grep -q "<action id=\"$id\">" "$root$P3_POLKITDIR/org.p3sam.policy"
        done
        if command -v xmllint >/dev/null; then
                check "polkit file is well-formed XML" -- \
                        xmllint --noout "$root$P3_POLKITDIR/org.p3sam.policy"
                check "D-Bus policy is well-formed XML" -- \
                        xmllint --noout "$root$P3_DBUSPOLICYDIR/org.p3sam.Segmenter1.conf"
        fi
        local act=$root$P3_DBUSSERVICEDIR/org.p3sam.Segmenter1.service
        check "activation: Name=$busname" -- grep -qx "Name=$busname" "$act"
        check "activation: SystemdService= is our unit" -- \
                grep -qx "SystemdService=p3samd.service" "$act"
        check "activation: Exec=/bin/false, User=root" -- \
                sh -c "grep -qx 'Exec=/bin/false' '$act' && grep -qx 'User=root' '$act'"

        # -- sysusers.d and tmpfiles.d, applied to the scratch root --
        if command -v systemd-sysusers >/dev/null && command -v systemd-tmpfiles >/dev/null; then
                mkdir -p "$root/etc"
                systemd-sysusers --root="$root" "$root$P3_SYSUSERSDIR/p3samd.conf" >/dev/null 2>&1
                check "sysusers: user p3sam, home /var/lib/p3sam, no login" -- \
                        grep -qE '^p3sam:x:[0-9]+:[0-9]+:P3-SAM segmentation daemon:/var/lib/p3sam:/usr/sbin/nologin$' \
                        "$root/etc/passwd"
                check "sysusers: group p3sam" -- grep -qE '^p3sam:x:[0-9]+:' "$root/etc/group"
                local gid
                gid=$(awk -F: '$1 == "p3sam" { print $3 }' "$root/etc/group")
                check "sysusers: user p3sam-httpd (the gateway) in group p3sam, no login" -- \
                        grep -qE "^p3sam-httpd:x:[0-9]+:$gid:P3-SAM HTTP gateway:/:/usr/sbin/nologin\$" \
                        "$root/etc/passwd"
                systemd-tmpfiles --root="$root" --create "$root$P3_TMPFILESDIR/p3samd.conf" >/dev/null 2>&1
                local uid
                uid=$(awk -F: '$1 == "p3sam" { print $3 }' "$root/etc/passwd")
                check "tmpfiles: /var/lib/p3sam 0750 p3sam:p3sam" -- \
                        test "$(stat -c '%a %u' "$root/var/lib/p3sam")" = "750 $uid"
                check "tmpfiles: ${P3_CONF_PATH}.d 0755 root" -- \
                        test "$(stat -c '%a %u' "$root$P3_CONF_PATH.d")" = "755 0"
        else
                skip "systemd-sysusers or systemd-tmpfiles is not installed"
        fi

        # -- p3samd.conf: every key, each with its section --
        local conf=$src/systemd/p3samd.conf section key missing=""
        while read -r section key; do
                awk -v s="[$section]" -v k="#$key=" '
                        /^\[/ { cur = $0 } index($0, k) == 1 && cur == s { found = 1 }
                        END { exit !found }' "$conf" || missing="$missing [$section]$key"
        done < <(conf_keys)
        check "p3samd.conf lists every key of daemon-conf.c${missing:+ (missing:$missing)}" -- \
                test -z "$missing"
        local extra
        extra=$(grep -oE '^#[A-Z][A-Za-z]+=' "$conf" | tr -d '#=' | sort |
                comm -23 - <(conf_keys | cut -d' ' -f2 | sort))
        check "p3samd.conf has no key the daemon lacks${extra:+ ($extra)}" -- test -z "$extra"
        check "p3samd.conf sets nothing as shipped" -- \
                test -z "$(grep -vE '^(#|;|\[|$)' "$conf")"

        dbus_checks "$root"
}

# The D-Bus policy on a private bus that denies like the system bus: p3samd loads the shipped
# p3samd.conf with every key uncommented (the defaults must all be valid) and owns its name.
dbus_checks() {
        local root=$1
        if ! command -v dbus-daemon >/dev/null || ! command -v busctl >/dev/null; then
                skip "dbus-daemon or busctl is not installed: no D-Bus policy checks"
                return
        fi
        chmod 755 "$tmp"
        cat >"$tmp/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$tmp/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>$root$P3_DBUSPOLICYDIR/org.p3sam.Segmenter1.conf</include>
</busconfig>
EOF
        dbus-daemon --config-file="$tmp/bus.conf" --nofork --print-address=3 3>"$tmp/address" \
                2>"$tmp/bus.log" &
        pids+=($!)
        for _ in $(seq 50); do [ -s "$tmp/address" ] && break; sleep 0.1; done
        if [ ! -s "$tmp/address" ]; then
                cat "$tmp/bus.log"
                fail "dbus-daemon accepts the policy file"
                return
        fi
        ok "dbus-daemon accepts the policy file"
        export DBUS_SYSTEM_BUS_ADDRESS
        DBUS_SYSTEM_BUS_ADDRESS=$(head -n1 "$tmp/address")
        chmod 666 "$tmp/bus"

        # The shipped file with every key set to its documented default, the weights
        # nowhere (the daemon serves without a model).
        sed -E 's/^#([A-Z][A-Za-z]*=)/\1/' "$src/systemd/p3samd.conf" |
                sed -E "s|^Path=.*|Path=$tmp/none.safetensors|; s|^Backend=.*|Backend=cpu|" \
                        >"$tmp/p3samd.conf"
        chmod 644 "$tmp/p3samd.conf"

        if [ "$(id -u)" -ne 0 ]; then
                skip "not root: the ownership rules of the policy are not checked"
                "$P3SAMD" --config "$tmp/p3samd.conf" >"$tmp/d.log" 2>&1 &
                local pid=$!
                pids+=("$pid")
                sleep 2
                check "a non-root daemon may not own the name (the bus says AccessDenied)" -- \
                        sh -c "! kill -0 $pid 2>/dev/null && grep -q 'cannot own the bus name.*(is the D-Bus policy file installed?)' '$tmp/d.log'"
                return
        fi

        local nobody="setpriv --reuid=nobody --regid=nogroup --clear-groups"
        "$P3SAMD" --config "$tmp/p3samd.conf" --keep-user >"$tmp/d0.log" 2>&1 &
        pids+=($!)
        "$P3SAMD" --config "$tmp/p3samd.conf" --keep-user \
                --bus-name org.p3sam.Segmenter1.gpu1 >"$tmp/d1.log" 2>&1 &
        pids+=($!)
        local up0=no up1=no
        for _ in $(seq 100); do
                busctl status org.p3sam.Segmenter1 >/dev/null 2>&1 && up0=yes
                busctl status org.p3sam.Segmenter1.gpu1 >/dev/null 2>&1 && up1=yes
                [ $up0 = yes ] && [ $up1 = yes ] && break
                sleep 0.1
        done
        [ $up0 = yes ] || cat "$tmp/d0.log"
        check "root owns org.p3sam.Segmenter1 (the shipped p3samd.conf, uncommented, loads)" -- \
                test $up0 = yes
        check "root owns org.p3sam.Segmenter1.gpu1 (own_prefix)" -- test $up1 = yes
        check "the uncommented defaults are the daemon's (IdleTimeoutUSec 5min)" -- \
                test "$(busctl get-property org.p3sam.Segmenter1 /org/p3sam/Segmenter1 \
                        org.p3sam.Segmenter1 IdleTimeoutUSec)" = "t 300000000"

        if ! $nobody true 2>/dev/null; then
                skip "cannot run as nobody: the rules for others are not checked"
                return
        fi
        check "nobody may read properties" -- \
                test "$($nobody busctl get-property org.p3sam.Segmenter1 /org/p3sam/Segmenter1 \
                        org.p3sam.Segmenter1 State)" = 's "failed"'
        check "nobody may introspect the gpu1 instance" -- \
                sh -c "$nobody busctl introspect org.p3sam.Segmenter1.gpu1 /org/p3sam/Segmenter1 |
                        grep -q '^.Segment '"
        # dbus-send shows the error's own message (busctl only "Access denied"): the
        # daemon's sentence proves the call got through the bus.
        if command -v dbus-send >/dev/null; then
                $nobody dbus-send --system --print-reply --dest=org.p3sam.Segmenter1 \
                        /org/p3sam/Segmenter1 org.p3sam.Segmenter1.Reload >"$tmp/reload.err" 2>&1
                check "nobody's Reload reaches the daemon, which refuses it" -- \
                        grep -q 'Reloading needs root or the polkit action' "$tmp/reload.err"
                cat "$tmp/reload.err"
        fi
        $nobody "$P3SAMD" --config "$tmp/p3samd.conf" --bus-name org.p3sam.Segmenter1.gpu7 \
                >"$tmp/d7.log" 2>&1
        check "nobody may not own org.p3sam.Segmenter1.gpu7 (the bus says AccessDenied)" -- \
                grep -q 'cannot own the bus name.*(is the D-Bus policy file installed?)' "$tmp/d7.log"
}

# ------------------------------------------------------------------------------------------
man_pages() {
        local dir=$build/man page
        if [ ! -f "$dir/p3samd.8" ]; then
                echo "SKIP: the man pages were not built (no scdoc)"
                exit 77
        fi
        for page in p3samd.8 p3samctl.1 p3samd.conf.5 org.p3sam.Segmenter1.5 p3sam-httpd.8; do
                check "$page built" -- test -s "$dir/$page"
                check "$page has EXAMPLES" -- grep -q '^\.SH EXAMPLES' "$dir/$page"
                if command -v groff >/dev/null; then
                        groff -man -Tutf8 -ww -z "$dir/$page" >"$tmp/groff.log" 2>&1
                        check "$page renders without groff warnings" -- test ! -s "$tmp/groff.log"
                        cat "$tmp/groff.log"
                fi
        done

        # The D-Bus page: its generated section and the hand-written descriptions.
        local scd=$dir/org.p3sam.Segmenter1.5.scd
        awk '/^# THE INTERFACES/ { g = 1 } /^# METHODS/ { g = 0 } g' "$scd" >"$tmp/generated"
        awk '/^# THE INTERFACES/ { g = 1 } /^# METHODS/ { g = 0 } !g' "$scd" >"$tmp/described"
        "$P3SAMD" --introspect >"$tmp/live.xml"
        local xml what name kind
        for xml in "$tmp/live.xml" "$src/daemon/org.p3sam.Segmenter1.xml"; do
                what=$([ "$xml" = "$tmp/live.xml" ] && echo "p3samd --introspect" || echo "the committed XML")
                local n=0 missing="" undescribed=""
                while read -r kind name; do
                        n=$((n + 1))
                        case $kind in
                        method | signal) grep -qE "^ +$name\(" "$tmp/generated" ;;
                        property) grep -qE "^ +(readonly|readwrite|writeonly) [^ ]+ $name;" "$tmp/generated" ;;
                        interface) grep -q "^interface $name {" "$tmp/generated" ;;
                        esac || missing="$missing $name"
                        # described: named on a term line of METHODS, SIGNALS or PROPERTIES
                        # (a line that begins with a bold word; the text is tab-indented)
                        [ "$kind" = interface ] || grep -qE "^\*(.*\*)?$name\*" "$tmp/described" ||
                                undescribed="$undescribed $name"
                done < <(grep -oE '<(interface|method|signal|property) name="[^"]+"' "$xml" |
                        sed -E 's/<([a-z]+) name="([^"]+)"/\1 \2/')
                check "generated section lists all $n interfaces and members of $what${missing:+ (missing:$missing)}" -- \
                        test -n "$n" -a -z "$missing"
                check "every member of $what is described by hand${undescribed:+ (not:$undescribed)}" -- \
                        test -z "$undescribed"
        done

        # p3samd(8): every long option of --help.
        local opt missing=""
        for opt in $("$P3SAMD" --help | grep -oE -- '--[a-z-]+' | sort -u); do
                grep -q -- "\*$opt\*" "$src/man/p3samd.8.scd" || missing="$missing $opt"
        done
        check "p3samd(8) documents every option of p3samd --help${missing:+ (missing:$missing)}" -- \
                test -z "$missing"

        # p3sam-httpd(8): every long option of --help, every endpoint of the code.
        if [ -x "${P3SAM_HTTPD:-}" ]; then
                missing=""
                for opt in $("$P3SAM_HTTPD" --help | grep -oE -- '--[a-z-]+' | sort -u); do
                        grep -q -- "\*$opt\*" "$src/man/p3sam-httpd.8.scd" || missing="$missing $opt"
                done
                check "p3sam-httpd(8) documents every option of p3sam-httpd --help${missing:+ (missing:$missing)}" -- \
                        test -z "$missing"
        fi
        missing=""
        for key in $(grep -oE '"/api/[a-z_/]+"' "$src/daemon/httpd/httpd-request.c" | tr -d '"'); do
                grep -qE "^\*(GET|POST) $key\*" "$src/man/p3sam-httpd.8.scd" || missing="$missing $key"
        done
        check "p3sam-httpd(8) documents every endpoint${missing:+ (missing:$missing)}" -- test -z "$missing"

        # p3samd.conf(5): every key of daemon-conf.c.
        local section key
        missing=""
        while read -r section key; do
                grep -q "^\*$key=\*" "$src/man/p3samd.conf.5.scd" || missing="$missing $key"
        done < <(conf_keys)
        check "p3samd.conf(5) documents every key${missing:+ (missing:$missing)}" -- test -z "$missing"

        # p3samctl(1): the verbs (from p3samctl --help once it is built, else the brief's
        # list) and the exit codes of ctl.h.
        local verbs
        if [ -x "${P3SAMCTL:-}" ]; then
                verbs=$("$P3SAMCTL" --help | awk '/^Verbs:/ { v = 1; next } /^$/ { v = 0 } v { print $1 }')
        else
                verbs="segment predict status jobs cancel clear-gpu reload set-idle-timeout setup-swap fetch-model"
        fi
        missing=""
        for key in $verbs; do
                grep -q "^\*$key\*" "$src/man/p3samctl.1.scd" || missing="$missing $key"
        done
        check "p3samctl(1) documents every verb${missing:+ (missing:$missing)}" -- test -z "$missing"
        missing=""
        for key in $(sed -n 's/^ *CTL_EXIT_[A-Z_]* = \([0-9]*\),/\1/p' "$src/ctl/ctl.h"); do
                grep -q "^\*$key\*\$" "$src/man/p3samctl.1.scd" || missing="$missing $key"
        done
        check "p3samctl(1) documents every exit code of ctl.h${missing:+ (missing:$missing)}" -- \
                test -z "$missing"
}

case $mode in
units) units ;;
man) man_pages ;;
*) echo "usage: test-units.sh units|man" >&2; exit 2 ;;
esac

echo "$fails failed"
[ "$fails" -eq 0 ]
