#!/bin/bash
# Several outputs from one job (p3samctl segment -o ... -o ..., the D-Bus option "outputs"),
# against p3samd on a private bus with the tiny model: every format in one job and what NumPy,
# a glTF reader and a PNG decoder make of them, upstream's five names, nothing left by a failed
# or cancelled job, and the refusals (17 descriptors, an output that is the mesh).
set -u
: "${P3SAMCTL:?}" "${P3SAMD:?}" "${P3SAM_RUN:?}" "${P3_TEST_DATA:?}"
src=${P3_SOURCE_ROOT:?}
. "$(dirname "$0")/lib-test.sh"
need_dbus
py=/usr/bin/python3 # Debian's, with python3-numpy and python3-dbus (a pyenv's may lack them)
"$py" -c 'import numpy, dbus' 2>/dev/null ||
        { echo "SKIP: /usr/bin/python3 lacks numpy or dbus (python3-numpy, python3-dbus)"; exit 77; }
ctl() { timeout 300 "$P3SAMCTL" "$@"; }
run_ctl() { # run_ctl NAME ARGS...: stdout in $tmp/NAME.out, stderr in $tmp/NAME.err, code in $rc
        local name=$1; shift
        ctl "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
        rc=$?
}
one_sentence() { [ "$(wc -l <"$1")" -eq 1 ] && grep -q '^p3samctl: [^ ].*[.)]$' "$1"; }
listing() { ls -A "$1" | tr '\n' ' '; }

# The system bus passes 16 descriptors a message; this bus passes 64, so that the daemon's own
# limit is what a 17-descriptor call meets.
sed 's|</busconfig>|  <limit name="max_message_unix_fds">64</limit>\n</busconfig>|' \
        "$src/tests/dbus-test.conf" >"$tmp/bus.conf"
dbus-daemon --config-file="$tmp/bus.conf" --nofork --print-address=3 3>"$tmp/address" \
        >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -s "$tmp/address" ] && break; sleep 0.1; done
A=$(head -n1 "$tmp/address")
export DBUS_SYSTEM_BUS_ADDRESS=$A

tiny_model_conf "$tmp/p3samd.conf"
cat >>"$tmp/p3samd.conf" <<EOF
[Daemon]
IdleTimeoutSec=1h
JobLingerSec=120
[Segment]
CpuPointNum=2000
CpuPromptNum=8
PromptBatch=4
EOF
start_daemon org.p3sam.Segmenter1 "$tmp/daemon.log"

mesh=$P3_TEST_DATA/meshes/alien.glb
big=$P3_TEST_DATA/meshes/CesiumMilkTruck.glb
mkdir -p "$tmp/all" "$tmp/up" "$tmp/fail" "$tmp/int" "$tmp/nw" "$tmp/refused" "$tmp/m"
cp "$mesh" "$tmp/m/alien.glb"

# ---- one job, every format ----
run_ctl all segment "$mesh" -o "$tmp/all/x.glb" -o "$tmp/all/x.ply" -o "$tmp/all/x.json" \
        -o "$tmp/all/x.png" -o "$tmp/all/x_face_ids.npy" -o "$tmp/all/x_aabb.npy" \
        -o "$tmp/all/x_aabb.glb" -o "$tmp/all/small" --format glb --format ply --format json \
        --format png --format face-ids --format aabb --format aabb-glb --format png --png-size 256
check "one job with every format: exit 0" -- [ $rc -eq 0 ]
cat "$tmp/all.err" >&2
check "...the eight files and nothing else (no temporary)" -- eval \
        '[ "$(listing "$tmp/all")" = "small x.glb x.json x.ply x.png x_aabb.glb x_aabb.npy x_face_ids.npy " ]'
check "...each named on stdout" -- eval '[ "$(wc -l <"$tmp/all.out")" -eq 8 ]'
run_ctl png segment "$mesh" -o "$tmp/all/default.png"
check "a PNG alone, default size" -- [ $rc -eq 0 ]

cat >"$tmp/check.py" <<'EOF'
# What a user's script makes of the outputs: NumPy loads the .npy files; the face ids are the
# JSON report's labels, each box the min/max of its part's vertices in the PLY; the GLBs parse
# as glTF 2.0 with a node per part (and boxes in x_aabb.glb); the PNGs decode to their size.
import json, struct, sys, zlib
import numpy as np
d = sys.argv[1]
fails = 0
def check(what, ok):
    global fails
    print(("ok: " if ok else "FAIL: ") + what)
    fails += not ok

rep = json.load(open(d + "/x.json"))
labels = np.array(rep["face_labels"], dtype=np.int64)
ids = np.load(d + "/x_face_ids.npy")
check("face ids: int64, one per face of the report", ids.dtype == np.int64 and
      ids.shape == (rep["faces"],))
check("face ids equal the report's face labels", np.array_equal(ids, labels))

# the binary PLY: float x y z; faces: uchar count, 3 int, uchar r g b, int part
raw = open(d + "/x.ply", "rb").read()
head, body = raw.split(b"end_header\n", 1)
nv = int(head.split(b"element vertex ")[1].split(b"\n")[0])
nf = int(head.split(b"element face ")[1].split(b"\n")[0])
v = np.frombuffer(body, dtype="<f4", count=nv * 3).reshape(nv, 3)
ft = np.dtype([("n", "u1"), ("i", "<i4", 3), ("rgb", "u1", 3), ("part", "<i4")])
f = np.frombuffer(body, dtype=ft, count=nf, offset=nv * 12)
check("the PLY's faces carry the same labels", np.array_equal(f["part"], ids))

aabb = np.load(d + "/x_aabb.npy")
parts = [p for p in np.unique(ids) if p >= 0]
check("aabb: float64 [K, 2, 3], K = %d parts" % len(parts),
      aabb.dtype == np.float64 and aabb.shape == (len(parts), 2, 3) and len(parts) > 0)
ok = True
for k, p in enumerate(parts):
    pv = v[np.unique(f["i"][ids == p].ravel())].astype(np.float64)
    ok &= np.allclose(aabb[k, 0], pv.min(0), atol=1e-6) and \
          np.allclose(aabb[k, 1], pv.max(0), atol=1e-6)
check("each box is the min/max of its part's vertices (parts in np.unique order)", ok)

def glb(path):
    b = open(path, "rb").read()
    magic, ver, length = struct.unpack_from("<4sII", b)
    clen, ctype = struct.unpack_from("<II", b, 12)
    assert magic == b"glTF" and ver == 2 and length == len(b) and ctype == 0x4E4F534A
    return json.loads(b[20:20 + clen])
g, ga = glb(d + "/x.glb"), glb(d + "/x_aabb.glb")
names = [n.get("name", "") for n in g["nodes"]]
check("x.glb: glTF 2.0, a node per part",
      all("part_%d" % p in names for p in parts))
anames = [n.get("name", "") for n in ga["nodes"]]
lines = [pr for m in ga["meshes"] for pr in m["primitives"] if pr.get("mode") == 1]
check("x_aabb.glb: the parts and a box of lines per part",
      all("box_%d" % p in anames for p in parts) and len(lines) >= len(parts))

def png_size(path):
    b = open(path, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(b):
        n, t = struct.unpack_from(">I4s", b, pos)
        data = b[pos + 8:pos + 8 + n]
        assert zlib.crc32(t + data) == struct.unpack_from(">I", b, pos + 8 + n)[0]
        if t == b"IHDR":
            w, h, depth, colour = struct.unpack_from(">IIBB", data)
        elif t == b"IDAT":
            idat += data
        pos += 12 + n
    px = zlib.decompress(idat)
    bpp = 4 if colour == 6 else 3
    assert depth == 8 and len(px) == h * (1 + w * bpp)
    return w, h
check("x.png decodes to 256 x 256", png_size(d + "/x.png") == (256, 256))
check("small (--format png) decodes to 256 x 256", png_size(d + "/small") == (256, 256))
check("default.png decodes to 1024 x 1024", png_size(d + "/default.png") == (1024, 1024))
sys.exit(1 if fails else 0)
EOF
"$py" "$tmp/check.py" "$tmp/all"
[ $? -eq 0 ] || fails=$((fails + 1))

if command -v gltf_validator >/dev/null; then
        for f in x.glb x_aabb.glb; do
                gltf_validator -o "$tmp/all/$f" >"$tmp/val.json" 2>&1
                check "glTF-Validator: 0 errors in $f" -- \
                        grep -q '"numErrors": *0' "$tmp/val.json"
        done
else
        echo "gltf_validator (Khronos) is not installed: tests/gltf-validate.py checks the GLBs"
        for f in x.glb x_aabb.glb; do
                check "gltf-validate.py: 0 errors in $f" -- \
                        python3 "$src/tests/gltf-validate.py" "$tmp/all/$f"
        done
fi

# ---- --upstream-files: upstream's five names from the first -o ----
run_ctl up segment "$mesh" -o "$tmp/up/x.glb" --upstream-files
check "--upstream-files: exit 0" -- [ $rc -eq 0 ]
check "...exactly upstream's five names" -- eval \
        '[ "$(listing "$tmp/up")" = "x.glb x.ply x_aabb.glb x_aabb.npy x_face_ids.npy " ]'

# ---- refusals, before any job ----
many=()
for i in $(seq 16); do many+=(-o "$tmp/refused/$i.glb"); done
run_ctl many segment "$mesh" "${many[@]}"
check "16 outputs (17 descriptors): exit 2, one sentence naming the limit" -- eval \
        '[ $rc -eq 2 ] && one_sentence "$tmp/many.err" && grep -q "at most 16" "$tmp/many.err"'
cat "$tmp/many.err"
run_ctl self segment "$tmp/m/alien.glb" -o "$tmp/refused/a.glb" -o "$tmp/m/alien.glb"
check "an extra output that is the mesh: exit 2, one sentence" -- eval \
        '[ $rc -eq 2 ] && one_sentence "$tmp/self.err" && cmp -s "$mesh" "$tmp/m/alien.glb"'
cat "$tmp/self.err"
run_ctl twofmt segment "$mesh" -o "$tmp/refused/a.glb" -o "$tmp/refused/b" --format glb
check "one --format for two -o: exit 2" -- eval '[ $rc -eq 2 ] && one_sentence "$tmp/twofmt.err"'
check "...and no file was made" -- eval '[ -z "$(listing "$tmp/refused")" ]'

# ---- a failed job leaves none of its outputs ----
run_ctl fail segment "$P3_TEST_DATA/meshes/bad/Fox_truncated.glb" -o "$tmp/fail/x.glb" \
        -o "$tmp/fail/x.png" -o "$tmp/fail/x.json" --upstream-files
check "a broken mesh: exit 1" -- [ $rc -eq 1 ]
check "...none of its outputs, no temporary" -- eval '[ -z "$(listing "$tmp/fail")" ]'

# ---- an output that cannot take its name: none of the others takes theirs either ----
# The job succeeds, then the last output's name is a directory: every output was given a
# temporary name beside its own before any of them was renamed into place.
mkdir -p "$tmp/half/x.png"
echo old >"$tmp/half/x.json"
run_ctl half segment "$mesh" -o "$tmp/half/x.glb" -o "$tmp/half/x.json" -o "$tmp/half/x.png"
echo "   $(tail -n1 "$tmp/half.err")"
check "the last output's name is a directory: exit 1, one sentence naming it" -- eval \
        '[ $rc -eq 1 ] && tail -n1 "$tmp/half.err" | grep -q "^p3samctl: .*x\.png.*\.$" &&
         [ "$(grep -c "^p3samctl: " "$tmp/half.err")" -eq 1 ]'
check "...the first not created, the second still the old file, no temporary" -- eval \
        '[ "$(listing "$tmp/half")" = "x.json x.png " ] && [ "$(cat "$tmp/half/x.json")" = old ]'

# ---- a job cancelled half-way (Ctrl-C) leaves none ----
"$P3SAMCTL" segment "$big" -o "$tmp/int/x.glb" -o "$tmp/int/x.png" --upstream-files \
        --points 20000 --prompts 64 >"$tmp/int.out" 2>"$tmp/int.err" &
cpid=$!
for _ in $(seq 300); do grep -q '^features' "$tmp/int.err" && break; sleep 0.1; done
kill -INT $cpid
wait $cpid
rc=$?
check "Ctrl-C half-way: exit 3" -- [ $rc -eq 3 ]
check "...none of the outputs, no temporary" -- eval '[ -z "$(listing "$tmp/int")" ]'

# ---- --no-wait: the outputs are the daemon's to fill, or to empty when the job is cancelled ----
run_ctl nw segment "$big" -o "$tmp/nw/x.glb" --upstream-files --points 20000 --prompts 64 \
        --no-wait
id=$(grep -o 'job/[0-9]*' "$tmp/nw.out" | head -n1 | cut -d/ -f2)
check "--no-wait with several outputs: exit 0, each named" -- eval \
        '[ $rc -eq 0 ] && [ "$(grep -c "fills when" "$tmp/nw.out")" -eq 5 ]'
for _ in $(seq 300); do
        st=$(prop Stage "/org/p3sam/Segmenter1/job/$id" org.p3sam.Segmenter1.Job 2>/dev/null)
        [ "$st" = features ] && break
        sleep 0.1
done
run_ctl cancel cancel "$id"
for _ in $(seq 600); do
        [ "$(prop State "/org/p3sam/Segmenter1/job/$id" org.p3sam.Segmenter1.Job)" = cancelled ] &&
                break
        sleep 0.1
done
check "...cancelled half-way: every output empty" -- eval \
        '[ "$st" = features ] && [ "$(prop State "/org/p3sam/Segmenter1/job/$id" org.p3sam.Segmenter1.Job)" = cancelled ] &&
         [ -z "$(find "$tmp/nw" -type f -size +0c)" ] && [ "$(ls "$tmp/nw" | wc -l)" -eq 5 ]'

# ---- the D-Bus API itself ----
cat >"$tmp/bus.py" <<'EOF'
# Segment(h s h s a{sv}) as another client would call it: the old way (no "outputs"), with
# "outputs", 17 descriptors, an extra output that is the mesh.
import os, sys, time
import dbus
tmp, mesh = sys.argv[1], sys.argv[2]
bus = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
mgr = dbus.Interface(bus.get_object("org.p3sam.Segmenter1", "/org/p3sam/Segmenter1"),
                     "org.p3sam.Segmenter1")
fails = 0
def check(what, ok):
    global fails
    print(("ok: " if ok else "FAIL: ") + what)
    fails += not ok
def out(name):
    return os.open(os.path.join(tmp, name), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
def wait(path):
    job = bus.get_object("org.p3sam.Segmenter1", path)
    for _ in range(1200):
        s = job.Get("org.p3sam.Segmenter1.Job", "State",
                    dbus_interface="org.freedesktop.DBus.Properties")
        if s in ("done", "failed", "cancelled"):
            return s
        time.sleep(0.1)
m = os.open(mesh, os.O_RDONLY)
p = mgr.Segment(dbus.types.UnixFd(m), "", dbus.types.UnixFd(out("old.glb")), "glb",
                dbus.Dictionary({}, signature="sv"))
check("the old call, no outputs: done", wait(p) == "done" and
      open(os.path.join(tmp, "old.glb"), "rb").read(4) == b"glTF")
extra = dbus.Array([dbus.Struct((dbus.types.UnixFd(out("new_aabb.npy")), "aabb")),
                    dbus.Struct((dbus.types.UnixFd(out("new.png")), "png"))], signature="(hs)")
p = mgr.Segment(dbus.types.UnixFd(m), "", dbus.types.UnixFd(out("new.ply")), "ply",
                {"outputs": extra, "png_size": dbus.UInt32(128)})
check("outputs a(hs): done, each written", wait(p) == "done" and
      open(os.path.join(tmp, "new_aabb.npy"), "rb").read(6) == b"\x93NUMPY" and
      open(os.path.join(tmp, "new.png"), "rb").read(4) == b"\x89PNG" and
      open(os.path.join(tmp, "new.ply"), "rb").read(3) == b"ply")
def refused(what, opts, fmt="glb", needle=""):
    try:
        mgr.Segment(dbus.types.UnixFd(m), "", dbus.types.UnixFd(out("r.glb")), fmt, opts)
        check(what + ": refused", False)
    except dbus.exceptions.DBusException as e:
        msg = e.get_dbus_message() or ""
        print("   " + e.get_dbus_name() + ": " + msg)
        check(what + ": InvalidArgs with a sentence",
              e.get_dbus_name() == "org.freedesktop.DBus.Error.InvalidArgs" and
              msg.endswith(".") and needle in msg)
many = dbus.Array([dbus.Struct((dbus.types.UnixFd(out("m%d.glb" % i)), "glb"))
                   for i in range(15)], signature="(hs)")
refused("17 descriptors", {"outputs": many}, needle="16")
rw = os.open(mesh, os.O_RDWR)
before = open(mesh, "rb").read()
refused("an extra output that is the mesh",
        {"outputs": dbus.Array([dbus.Struct((dbus.types.UnixFd(rw), "glb"))], signature="(hs)")},
        needle="mesh")
check("...and the mesh is untouched", open(mesh, "rb").read() == before)
refused("an unknown format in outputs",
        {"outputs": dbus.Array([dbus.Struct((dbus.types.UnixFd(out("u.x")), "obj"))],
                               signature="(hs)")}, needle="obj")
# an unusable descriptor is the job's failure, as for the first output
ro = os.open(os.path.join(tmp, "old.glb"), os.O_RDONLY)
p = mgr.Segment(dbus.types.UnixFd(m), "", dbus.types.UnixFd(out("ro.glb")), "glb",
                {"outputs": dbus.Array([dbus.Struct((dbus.types.UnixFd(ro), "glb"))],
                                       signature="(hs)")})
err = bus.get_object("org.p3sam.Segmenter1", p).Get(
    "org.p3sam.Segmenter1.Job", "Error", dbus_interface="org.freedesktop.DBus.Properties")
print("   " + err)
check("an extra output not open for writing: the job fails at once, naming it",
      wait(p) == "failed" and "output 2" in err and "writing" in err and
      open(os.path.join(tmp, "old.glb"), "rb").read(4) == b"glTF")
sys.exit(1 if fails else 0)
EOF
mkdir "$tmp/bus"
"$py" "$tmp/bus.py" "$tmp/bus" "$tmp/m/alien.glb"
[ $? -eq 0 ] || fails=$((fails + 1))

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
