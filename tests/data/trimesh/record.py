#!/usr/bin/python3
# Records how trimesh splits a mesh's polygons: MESH.triangles beside each mesh named, one line
# per triangle of trimesh.load(MESH, force='mesh') (upstream P3-SAM's call), in trimesh's order,
# its corners as 0-based indices into the file's own vertex list. See ../CREDITS.
#   PYTHONPATH=<trimesh checkout> python3 record.py [--out DIR] MESH...
import os
import sys

import trimesh


def file_vertices(path):
    """The vertex positions as the file lists them (OBJ "v" lines, ASCII PLY, OFF)."""
    lines = open(path).read().splitlines()
    if path.endswith(".obj"):
        return [tuple(float(x) for x in l.split()[1:4]) for l in lines if l.startswith("v ")]
    body = [l.split("#")[0].split() for l in lines]
    body = [t for t in body if t]
    if path.endswith(".ply"):
        n = next(int(t[2]) for t in body if t[:2] == ["element", "vertex"])
        first = next(i for i, t in enumerate(body) if t == ["end_header"]) + 1
    else:
        n, first = int(body[1][0]), 2
    return [tuple(float(x) for x in t[:3]) for t in body[first:first + n]]


def record(path, out_dir):
    index = {}
    for i, v in enumerate(file_vertices(path)):
        index.setdefault(v, i)
    mesh = trimesh.load(path, force="mesh")
    rows = [" ".join(str(index[tuple(float(x) for x in mesh.vertices[c])]) for c in face) for face in mesh.faces]
    name = os.path.basename(path)
    with open(os.path.join(out_dir, name + ".triangles"), "w") as f:
        f.write(f"# {name}: trimesh.load(path, force='mesh'), trimesh {trimesh.__version__}\n")
        f.write(f"{len(rows)}\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    args = sys.argv[1:]
    out = "."
    if args[:1] == ["--out"]:
        out, args = args[1], args[2:]
    for p in args:
        record(p, out)
