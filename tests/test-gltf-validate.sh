#!/bin/bash
# SPDX-License-Identifier: MIT
# tests/gltf-validate.py, the stand-in for the Khronos glTF-Validator: the Khronos sample GLBs
# pass with 0 errors, each broken variant of one fails (exit 1) with the Khronos code for what
# was broken, and the GLBs p3sam-run writes with the tiny model pass.
set -u
: "${P3SAM_RUN:?}" "${P3_TEST_DATA:?}"
here=$(dirname "$0")
. "$here/lib-test.sh"
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
validate() { python3 "$here/gltf-validate.py" "$@"; }
meshes=$P3_TEST_DATA/meshes

# ---- usage ----
validate >/dev/null 2>&1
check "no file: exit 2" -- [ $? -eq 2 ]
validate "$tmp/absent.glb" >/dev/null 2>&1
check "a file that is not there: exit 2" -- [ $? -eq 2 ]

# ---- real sample files: no error ----
for f in alien.glb CesiumMilkTruck.glb Fox.glb DenseSphere.glb SimpleSparseAccessor.gltf; do
        validate "$meshes/$f" >"$tmp/ok.out"
        rc=$?
        check "$f: exit 0 and '0 errors'" -- eval \
                '[ $rc -eq 0 ] && grep -qx "$meshes/$f: 0 errors" "$tmp/ok.out"'
        [ $rc -eq 0 ] || cat "$tmp/ok.out"
done
validate "$meshes/bad/Fox_truncated.glb" >"$tmp/trunc.out"
rc=$?
check "a truncated Fox.glb: exit 1, GLB_UNEXPECTED_END_OF_CHUNK_DATA" -- eval \
        '[ $rc -eq 1 ] && grep -q "^  GLB_UNEXPECTED_END_OF_CHUNK_DATA: " "$tmp/trunc.out"'

# ---- broken variants of alien.glb: NAME CODE [POINTER] per line, made by break.py ----
cat >"$tmp/break.py" <<'EOF'
import json, struct, sys
src, out, how = sys.argv[1:4]
b = open(src, 'rb').read()
jlen = struct.unpack_from('<I', b, 12)[0]
gltf = json.loads(b[20:20 + jlen])
blen = struct.unpack_from('<I', b, 20 + jlen)[0]
bin_ = bytearray(b[28 + jlen:28 + jlen + blen])
magic, fix_length, bin_extra = b'glTF', 0, b''
prim = gltf['meshes'][0]['primitives'][0]
pos = gltf['accessors'][prim['attributes']['POSITION']]
if how == 'magic':
    magic = b'gLTF'
elif how == 'length':
    fix_length = 4
elif how == 'index':  # the first index one past the last vertex
    ind = gltf['accessors'][prim['indices']]
    view = gltf['bufferViews'][ind['bufferView']]
    ch = {5121: 'B', 5123: 'H', 5125: 'I'}[ind['componentType']]
    struct.pack_into('<' + ch, bin_, view.get('byteOffset', 0) + ind.get('byteOffset', 0),
                     pos['count'])
elif how == 'max':
    pos['max'][1] += 1.0
elif how == 'view':
    gltf['bufferViews'][0]['byteLength'] = gltf['buffers'][0]['byteLength'] + 4
elif how == 'loop':  # nodes 0 and 1 each other's only parent
    for o in gltf['nodes'] + gltf['scenes']:
        key = 'children' if 'children' in o else 'nodes'
        o[key] = [n for n in o.get(key, []) if n > 1]
        if not o[key]:
            del o[key]
    gltf['nodes'][0]['children'] = [1]
    gltf['nodes'][1]['children'] = [0]
elif how == 'mesh':
    gltf['nodes'][-1]['mesh'] = len(gltf['meshes'])
elif how == 'binlen':
    bin_extra = b'\0'
elif how == 'offset':
    pos['byteOffset'] = pos.get('byteOffset', 0) + 1
j = json.dumps(gltf).encode()
j += b' ' * (-len(j) % 4)
body = struct.pack('<II', len(j), 0x4E4F534A) + j
body += struct.pack('<II', len(bin_) + len(bin_extra), 0x004E4942) + bin_ + bin_extra
open(out, 'wb').write(struct.pack('<4sII', magic, 2, 12 + len(body) + fix_length) + body)
EOF
while read -r how code pointer; do
        python3 "$tmp/break.py" "$meshes/alien.glb" "$tmp/$how.glb" "$how" || exit 1
        validate "$tmp/$how.glb" >"$tmp/$how.out"
        rc=$?
        check "broken ($how): exit 1, $code${pointer:+ at $pointer}" -- eval \
                '[ $rc -eq 1 ] && grep -q "^  $code: .* at ${pointer:-}" "$tmp/$how.out" &&
                 grep -q "^$tmp/$how.glb: [1-9][0-9]* errors$" "$tmp/$how.out"'
        [ $rc -eq 1 ] && grep -q "^  $code: " "$tmp/$how.out" || cat "$tmp/$how.out"
done <<'EOF'
magic GLB_INVALID_MAGIC byte 0
length GLB_LENGTH_MISMATCH
index ACCESSOR_INDEX_OOB /meshes/0/primitives/0/indices
max ACCESSOR_MAX_MISMATCH /accessors/0/max/1
view BUFFER_VIEW_TOO_LONG /bufferViews/0/byteLength
loop NODE_LOOP /nodes/0
mesh UNRESOLVED_REFERENCE /nodes/7/mesh
binlen GLB_CHUNK_LENGTH_UNALIGNED
offset ACCESSOR_OFFSET_ALIGNMENT /accessors/0/byteOffset
EOF
# The unbroken file through the same rewrite: the variants fail for what was broken alone.
python3 "$tmp/break.py" "$meshes/alien.glb" "$tmp/same.glb" none || exit 1
validate "$tmp/same.glb" >"$tmp/same.out"
check "alien.glb rewritten unbroken: exit 0" -- [ $? -eq 0 ]

# ---- what p3sam-run writes, with the tiny model ----
"$P3SAM_RUN" synth --config "$P3_TEST_DATA/tiny_config.json" --out "$tmp/w.safetensors" \
        >/dev/null || { echo "FAIL: p3sam-run synth"; exit 1; }
for mesh in alien.glb no_indices_3storybuilding.glb; do
        name=${mesh%.glb}
        "$P3SAM_RUN" segment --weights "$tmp/w.safetensors" --config \
                "$P3_TEST_DATA/tiny_config.json" "$meshes/$mesh" -o "$tmp/$name-seg.glb" \
                -o "$tmp/$name-seg_aabb.glb" --points 2000 --prompts 8 --threads 2 --quiet \
                >/dev/null 2>"$tmp/run.err" || { cat "$tmp/run.err"; fail "p3sam-run $mesh"; }
        validate "$tmp/$name-seg.glb" "$tmp/$name-seg_aabb.glb" >"$tmp/run.out"
        check "p3sam-run segment $mesh: the GLB and the boxes' GLB have 0 errors" -- [ $? -eq 0 ]
        cat "$tmp/run.out"
done

[ $fails -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all checks passed"
