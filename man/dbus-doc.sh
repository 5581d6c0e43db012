#!/bin/sh
# SPDX-License-Identifier: MIT
# dbus-doc.sh TEMPLATE OUTPUT COMMAND [ARGS...]
#
# Runs COMMAND (p3samd --introspect, or cat of the committed XML when the build cannot run
# what it built), turns the D-Bus introspection XML it prints into scdoc text, and writes
# TEMPLATE to OUTPUT with that text in place of the line "@INTERFACES@". The interface
# section of org.p3sam.Segmenter1(5) is made this way so that it cannot drift from the
# daemon's vtables.
#
# The text has one subsection per interface with a literal block in the notation of systemd's
# D-Bus man pages:
#
#   interface org.p3sam.Segmenter1 {
#     methods:
#       Segment(in  h mesh,
#               out o job);
#     signals:
#       JobNew(u id,
#              o job);
#     properties:
#       @org.freedesktop.DBus.Property.EmitsChangedSignal("const")
#       readonly s Version;
#   };
#
# Only POSIX sh and awk: the XML is read element by element (records split at "<"), so the
# layout of the daemon's output does not matter.
set -eu

if [ $# -lt 3 ]; then
        echo "usage: $0 TEMPLATE OUTPUT COMMAND [ARGS...]" >&2
        exit 2
fi
template=$1
output=$2
shift 2

xml=$(mktemp)
gen=$(mktemp)
trap 'rm -f "$xml" "$gen" "$output.tmp"' EXIT

if ! "$@" >"$xml"; then
        echo "$0: '$*' failed" >&2
        exit 1
fi

awk '
function attr(rec, name,    re, s) {
        re = " " name "=\"[^\"]*\""
        if (!match(rec, re))
                return ""
        s = substr(rec, RSTART + length(name) + 3, RLENGTH - length(name) - 4)
        gsub(/&quot;/, "\"", s); gsub(/&lt;/, "<", s); gsub(/&gt;/, ">", s); gsub(/&amp;/, "\\&", s)
        return s
}
function spaces(n,    s) {
        s = ""
        while (n-- > 0)
                s = s " "
        return s
}
# Flush the member being read (a method, signal or property) into its list.
function end_member(    line, pad, i, sep) {
        if (kind == "method" || kind == "signal") {
                line = notes "    " mname "("
                pad = spaces(length("    " mname "("))
                for (i = 1; i <= nargs; i++) {
                        sep = (i < nargs) ? ",\n" pad : ""
                        line = line args[i] sep
                }
                line = line ");\n"
                if (kind == "method") methods = methods line; else signals = signals line
                n_members++
        } else if (kind == "property") {
                props = props notes "    " (paccess == "read" ? "readonly" : paccess == "write" ? "writeonly" : "readwrite") " " ptype " " mname ";\n"
                n_members++
        }
        kind = ""; notes = ""; nargs = 0
}
BEGIN { RS = "<"; n_ifaces = 0 }
{
        rec = $0
        gsub(/[\n\t]/, " ", rec)
        sub(/>.*$/, "", rec)          # the element alone, not the text after it
        if (rec ~ /^interface[ >]/ || rec ~ /^interface$/) {
                iface = attr(rec, "name"); methods = ""; signals = ""; props = ""; kind = ""
                notes = ""; nargs = 0
        } else if (rec ~ /^\/interface/) {
                end_member()
                printf "## Interface %s\n\n```\ninterface %s {\n", iface, iface
                if (methods != "") printf "  methods:\n%s", methods
                if (signals != "") printf "  signals:\n%s", signals
                if (props != "") printf "  properties:\n%s", props
                printf "};\n```\n\n"
                n_ifaces++
        } else if (rec ~ /^(method|signal|property) /) {
                end_member()
                kind = rec; sub(/ .*/, "", kind)
                mname = attr(rec, "name"); nargs = 0; notes = ""
                if (kind == "property") {
                        ptype = attr(rec, "type"); paccess = attr(rec, "access")
                }
                if (rec ~ /\/$/)       # <method name="X"/>: no children
                        end_member()
        } else if (rec ~ /^\/(method|signal|property)/) {
                end_member()
        } else if (rec ~ /^arg /) {
                dir = attr(rec, "direction"); t = attr(rec, "type"); n = attr(rec, "name")
                if (kind == "method") {
                        if (dir == "") dir = "in"
                        t = sprintf("%-3s %s", dir, t)
                }
                args[++nargs] = (n == "") ? t : t " " n
        } else if (rec ~ /^annotation /) {
                if (kind != "")
                        notes = notes "    @" attr(rec, "name") "(\"" attr(rec, "value") "\")\n"
        }
}
END {
        if (n_ifaces == 0) {
                print "dbus-doc.sh: no interface in the introspection XML" > "/dev/stderr"
                exit 1
        }
}
' "$xml" >"$gen"

# Splice the generated text in place of the marker line (exactly one is required).
if [ "$(grep -c '^@INTERFACES@$' "$template")" -ne 1 ]; then
        echo "$0: $template must have exactly one line @INTERFACES@" >&2
        exit 1
fi
awk -v gen="$gen" '
$0 == "@INTERFACES@" { while ((getline line < gen) > 0) print line; next }
{ print }
' "$template" >"$output.tmp"
mv "$output.tmp" "$output"
trap 'rm -f "$xml" "$gen"' EXIT
