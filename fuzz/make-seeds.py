#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Seed corpora for the fuzz targets, written under OUT/<target>/ from tests/data (and
../shared/meshes when present) plus a few small inputs built here: the test files are large
(MBs), and libFuzzer runs at the speed of its largest input, so the safetensors seeds are
small hand-made files and the first 16 KiB of the recorded ones (their headers whole)."""
import json
import os
import pathlib
import struct
import sys

MESH_MAX = 1 << 20  # fuzz-mesh's max_bytes
HINTS = {'': 0, 'glb': 1, 'gltf': 2, 'obj': 3, 'ply': 4, 'stl': 5, 'off': 6}  # fuzz-mesh.c


def safetensors(tensors, meta=None):
    """tensors: name -> (dtype, shape, bytes)."""
    header, data = {}, b''
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {'dtype': dtype, 'shape': shape,
                        'data_offsets': [len(data), len(data) + len(raw)]}
        data += raw
    if meta:
        header['__metadata__'] = meta
    h = json.dumps(header).encode()
    h += b' ' * (-len(h) % 8)
    return struct.pack('<Q', len(h)) + h + data


def pack(fmt, values):
    return struct.pack('<%d%s' % (len(values), fmt), *values)


def small_replay():
    verts = [0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 1, 0]
    faces = [0, 1, 2, 1, 3, 2]
    points = [0.2, 0.2, 0, 0.8, 0.8, 0, 0.1, 0.5, 0, 0.6, 0.3, 0,
              0.3, 0.1, 0, 0.9, 0.5, 0, 0.4, 0.4, 0, 0.7, 0.9, 0]
    face_idx = [0, 1, 0, 1, 0, 1, 0, 1]
    t = {'mesh_vertices': ('F64', [4, 3], pack('d', verts)),
         'mesh_faces': ('I64', [2, 3], pack('q', faces)),
         'points': ('F64', [8, 3], pack('d', points)),
         'face_idx': ('I64', [8], pack('q', face_idx)),
         'pred_iou': ('F32', [2, 3], pack('f', [0.9, 0.8, 0.97, 0.99, 0.5, 0.6]))}
    for i, bits in enumerate([[0x55, 0xaa], [0x0f, 0xf0], [0xff, 0x01]]):
        t['mask_%d_bits' % (i + 1)] = ('U8', [2, 1], bytes(bits))
    return safetensors(t)


def small_case():
    coord = [(i % 3) * 0.1 for i in range(24)]
    return safetensors({'coord': ('F32', [8, 3], pack('f', coord)),
                        'normal': ('F16', [8, 3], pack('e', [0.0, 0.0, 1.0] * 8)),
                        'grid_sample_index': ('I32', [4], pack('i', [0, 2, 4, 6])),
                        'stage0_order_perm': ('I64', [4], pack('q', [3, 1, 0, 2])),
                        'prompt_idx': ('I64', [2], pack('q', [1, 5]))},
                       {'format': 'pt', 'note': 'fuzz seed'})


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    out = pathlib.Path(sys.argv[1])
    dirs = {t: out / t for t in ['mesh', 'safetensors', 'conf', 'options', 'replay']}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)

    meshes = [root / 'tests/data/meshes', root / 'tests/data/trimesh',
              root.parent / 'shared/meshes']
    for top in meshes:
        for p in sorted(top.rglob('*')) if top.is_dir() else []:
            ext = p.suffix.lstrip('.').lower()
            if not p.is_file() or p.stat().st_size > MESH_MAX or ext not in HINTS:
                continue
            raw = p.read_bytes()
            name = '%s-%s' % (top.name, p.name)
            (dirs['mesh'] / ('detect-' + name)).write_bytes(bytes([0]) + raw)
            (dirs['mesh'] / ('hint-' + name)).write_bytes(bytes([HINTS[ext]]) + raw)

    for p in sorted((root / 'tests/data').glob('*.safetensors')):
        head = p.read_bytes()[:16384]
        for t in ['safetensors', 'replay']:
            (dirs[t] / ('head-' + p.name)).write_bytes(head)
    for t in ['safetensors', 'replay']:
        (dirs[t] / 'small-replay.safetensors').write_bytes(small_replay())
        (dirs[t] / 'small-case.safetensors').write_bytes(small_case())

    conf = root / 'tests/data/conf'
    for p in sorted(conf.rglob('*')):
        if p.is_file():
            (dirs['conf'] / p.name).write_bytes(p.read_bytes())
    (dirs['options'] / 'empty').write_bytes(b'\0')


if __name__ == '__main__':
    main()
