#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A stand-in for the Khronos glTF-Validator, for the GLBs p3samd writes.

Usage: gltf-validate.py FILE.glb|FILE.gltf...

It implements the subset of the Khronos glTF-Validator's (npm gltf-validator) ERROR-severity
rules that apply to binary glTF with buffers, bufferViews, accessors (sparse included), meshes,
nodes, scenes, materials, cameras, and the references of textures, images, samplers, skins and
animations: the GLB container (magic, version, lengths, chunks), the JSON schema types the
validator checks for these objects (UNDEFINED_PROPERTY, TYPE_MISMATCH, INVALID_INDEX,
VALUE_NOT_IN_RANGE, ...), every reference (UNRESOLVED_REFERENCE), the layout of the data
(BUFFER_VIEW_TOO_LONG, ACCESSOR_TOO_LONG, ACCESSOR_OFFSET_ALIGNMENT, ...), the formats each
use allows (MESH_PRIMITIVE_*), the node tree (NODE_LOOP, NODE_PARENT_OVERRIDE,
SCENE_NON_ROOT_NODE), and the data themselves (ACCESSOR_MIN_MISMATCH / MAX with the declared
bounds rounded to float32 as Khronos does, ACCESSOR_INDEX_OOB, ACCESSOR_INVALID_FLOAT, unit
normals, clamped COLOR_0, animation inputs). Codes, severities and JSON pointers follow the
Khronos validator's ISSUES.md; a rule the validator gives as a warning is printed as one and
does not count. Extensions' own objects, image decoding, skinning influences and the
validator's Information/Hint issues are not checked: this is no substitute for the real
validator where that is installed. (On the validator's own test/base/data files it reports the
errors Khronos's reports list, code and pointer, for 258 of 263; the other 5 need those.)

For each file it prints "FILE: N errors", then a line per issue ("  CODE: message at
/json/pointer"; warnings as "  (warning) CODE: ..."). Exit 0 when no file has an error, 1
otherwise, 2 on a usage error.
"""

import base64
import json
import math
import os
import re
import struct
import sys
import urllib.parse

GLB_MAGIC, JSON_CHUNK, BIN_CHUNK = 0x46546C67, 0x4E4F534A, 0x004E4942
MAX_PRINTED = 100

BYTE, UBYTE, SHORT, USHORT, UINT, FLOAT = 5120, 5121, 5122, 5123, 5125, 5126
COMPONENT = {BYTE: ('b', 1), UBYTE: ('B', 1), SHORT: ('h', 2), USHORT: ('H', 2),
             UINT: ('I', 4), FLOAT: ('f', 4)}
TYPE_MAX = {BYTE: 127, UBYTE: 255, SHORT: 32767, USHORT: 65535, UINT: 4294967295}
TYPE_MIN = {BYTE: -128, UBYTE: 0, SHORT: -32768, USHORT: 0, UINT: 0}
TYPES = {'SCALAR': 1, 'VEC2': 2, 'VEC3': 3, 'VEC4': 4, 'MAT2': 4, 'MAT3': 9, 'MAT4': 16}
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
UNIT_VEC3, UNIT_VEC4 = 0.00674, 0.00769  # Khronos's unitLengthThreshold


def fmt(vec, comp, norm=False):
    return (vec, comp, bool(norm))


ATTRIBUTE_FORMATS = {
    'POSITION': {fmt('VEC3', FLOAT)},
    'NORMAL': {fmt('VEC3', FLOAT)},
    'TANGENT': {fmt('VEC4', FLOAT)},
    'TEXCOORD': {fmt('VEC2', FLOAT), fmt('VEC2', UBYTE, 1), fmt('VEC2', USHORT, 1)},
    'COLOR': {fmt(v, c, c != FLOAT) for v in ('VEC3', 'VEC4') for c in (FLOAT, UBYTE, USHORT)},
    'JOINTS': {fmt('VEC4', UBYTE), fmt('VEC4', USHORT)},
    'WEIGHTS': {fmt('VEC4', FLOAT), fmt('VEC4', UBYTE, 1), fmt('VEC4', USHORT, 1)},
}
MORPH_FORMATS = {
    'POSITION': {fmt('VEC3', FLOAT)},
    'NORMAL': {fmt('VEC3', FLOAT)},
    'TANGENT': {fmt('VEC3', FLOAT)},
    'TEXCOORD': {fmt('VEC2', FLOAT)} | {fmt('VEC2', c, 1) for c in (BYTE, UBYTE, SHORT, USHORT)},
    'COLOR': {fmt(v, c, c != FLOAT) for v in ('VEC3', 'VEC4')
              for c in (FLOAT, BYTE, UBYTE, SHORT, USHORT)},
}
# KHR_mesh_quantization widens these (khr_mesh_quantization.dart).
QUANTIZED_FORMATS = {
    'POSITION': {fmt('VEC3', c, n) for c in (BYTE, UBYTE, SHORT, USHORT) for n in (0, 1)},
    'NORMAL': {fmt('VEC3', BYTE, 1), fmt('VEC3', SHORT, 1)},
    'TANGENT': {fmt('VEC4', BYTE, 1), fmt('VEC4', SHORT, 1)},
    'TEXCOORD': {fmt('VEC2', BYTE), fmt('VEC2', BYTE, 1), fmt('VEC2', UBYTE),
                 fmt('VEC2', SHORT), fmt('VEC2', SHORT, 1), fmt('VEC2', USHORT)},
}
QUANTIZED_MORPH_FORMATS = {
    'POSITION': {fmt('VEC3', c, n) for c in (BYTE, SHORT) for n in (0, 1)},
    'NORMAL': {fmt('VEC3', BYTE, 1), fmt('VEC3', SHORT, 1)},
    'TANGENT': {fmt('VEC3', BYTE, 1), fmt('VEC3', SHORT, 1)},
    'TEXCOORD': {fmt('VEC2', BYTE), fmt('VEC2', SHORT)},
}
INDICES_FORMATS = {fmt('SCALAR', UBYTE), fmt('SCALAR', USHORT), fmt('SCALAR', UINT)}
OUTPUT_FORMATS = {
    'translation': {fmt('VEC3', FLOAT)},
    'rotation': {fmt('VEC4', FLOAT)} | {fmt('VEC4', c, 1) for c in (BYTE, UBYTE, SHORT, USHORT)},
    'scale': {fmt('VEC3', FLOAT)},
    'weights': {fmt('SCALAR', FLOAT)} | {fmt('SCALAR', c, 1) for c in (BYTE, UBYTE, SHORT, USHORT)},
}


def ptr_join(ptr, name):
    return ptr + '/' + str(name).replace('~', '~0').replace('/', '~1')


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool) or \
        isinstance(v, float) and v.is_integer()


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def to_f32(v):
    try:
        return struct.unpack('<f', struct.pack('<f', v))[0]
    except OverflowError:
        return math.copysign(math.inf, v)


def pad4(n):
    return n + (-n & 3)


class Issues:
    def __init__(self):
        self.items = []  # (is_error, code, message, where)
        self.errors = 0

    def error(self, code, msg, where):
        self.errors += 1
        self.items.append((True, code, msg, where))

    def warning(self, code, msg, where):
        self.items.append((False, code, msg, where))

    def lines(self):
        return [f"  {'' if e else '(warning) '}{code}: {msg} at {where or 'the root'}"
                for e, code, msg, where in self.items]


class Obj:
    """A parsed glTF object: its JSON, its pointer and what linking learnt."""

    def __init__(self, js, ptr):
        self.js, self.ptr = js, ptr


class Validator:
    def __init__(self, issues, path, is_glb, bin_chunk):
        self.iss, self.path, self.is_glb, self.bin = issues, path, is_glb, bin_chunk
        self.checks = []  # (accessor, function of its values), run once buffers are loaded
        self.strideless = {}  # bufferView index -> accessors used without byteStride

    # ---- JSON getters, as Khronos's utils.dart ----
    def _guarded(self, o, name, kind, ptr):
        v = o.get(name)
        if v is None and name in o:
            self.iss.error('TYPE_MISMATCH', f"Type mismatch. Property value 'null' is not a "
                           f"'{kind}'.", ptr_join(ptr, name))
        return v

    def _undefined(self, name, ptr):
        self.iss.error('UNDEFINED_PROPERTY', f"Property '{name}' must be defined.", ptr or '/')

    def _mismatch(self, v, kind, where):
        self.iss.error('TYPE_MISMATCH', f"Type mismatch. Property value '{json.dumps(v)[:40]}' "
                       f"is not a '{kind}'.", where)

    def index(self, o, name, ptr, req=True):
        v = self._guarded(o, name, 'integer', ptr)
        if v is None:
            if req:
                self._undefined(name, ptr)
        elif not is_int(v):
            self._mismatch(v, 'integer', ptr_join(ptr, name))
        elif v < 0:
            self.iss.error('INVALID_INDEX', 'Index must be a non-negative integer.',
                           ptr_join(ptr, name))
        else:
            return int(v)
        return -1

    def uint(self, o, name, ptr, req=False, lo=0, hi=None, default=-1, allowed=None):
        v = self._guarded(o, name, 'integer', ptr)
        if v is None:
            if req:
                self._undefined(name, ptr)
                return -1
            return default
        if not is_int(v):
            self._mismatch(v, 'integer', ptr_join(ptr, name))
            return -1
        v = int(v)
        if allowed is not None:
            if v not in allowed:
                self.iss.warning('VALUE_NOT_IN_LIST', f"Invalid value '{v}'. Valid values are "
                                 f"{sorted(allowed)}.", ptr_join(ptr, name))
                return -1
        elif v < lo or (hi is not None and v > hi):
            self.iss.error('VALUE_NOT_IN_RANGE', f'Value {v} is out of range.', ptr_join(ptr, name))
            return -1
        return v

    def number(self, o, name, ptr, lo=-math.inf, hi=math.inf, default=None):
        v = self._guarded(o, name, 'number', ptr)
        if v is None:
            return default
        if not is_num(v):
            self._mismatch(v, 'number', ptr_join(ptr, name))
            return None
        if v < lo or v > hi or math.isinf(v):
            self.iss.error('VALUE_NOT_IN_RANGE', f'Value {v} is out of range.', ptr_join(ptr, name))
            return None
        return float(v)

    def string(self, o, name, ptr, req=False, allowed=None, default=None):
        v = self._guarded(o, name, 'string', ptr)
        if v is None:
            if req:
                self._undefined(name, ptr)
                return None
            return default
        if not isinstance(v, str):
            self._mismatch(v, 'string', ptr_join(ptr, name))
            return None
        if allowed is not None and v not in allowed:
            self.iss.warning('VALUE_NOT_IN_LIST', f"Invalid value '{v}'. Valid values are "
                             f"{list(allowed)}.", ptr_join(ptr, name))
        return v

    def boolean(self, o, name, ptr):
        v = self._guarded(o, name, 'boolean', ptr)
        if v is None:
            return False
        if not isinstance(v, bool):
            self._mismatch(v, 'boolean', ptr_join(ptr, name))
            return False
        return v

    def mapping(self, o, name, ptr, req=False):
        v = self._guarded(o, name, 'object', ptr)
        if v is None:
            if req:
                self._undefined(name, ptr)
            return None
        if not isinstance(v, dict):
            self._mismatch(v, 'object', ptr_join(ptr, name))
            return None
        return v

    def _list(self, o, name, ptr, req=False):
        v = self._guarded(o, name, 'array', ptr)
        if v is None:
            if req:
                self._undefined(name, ptr)
            return None
        if not isinstance(v, list):
            self._mismatch(v, 'array', ptr_join(ptr, name))
            return None
        if not v:
            self.iss.error('EMPTY_ENTITY', 'Entity cannot be empty.', ptr_join(ptr, name))
            return None
        return v

    def float_list(self, o, name, ptr, lengths=None, lo=-math.inf, hi=math.inf, f32=False):
        v = self._list(o, name, ptr)
        if v is None:
            return None
        where = ptr_join(ptr, name)
        if lengths and len(v) not in lengths:
            self.iss.error('ARRAY_LENGTH_NOT_IN_LIST', f'Invalid array length {len(v)}. Valid '
                           f'lengths are: {lengths}.', where)
            return None
        ok = True
        for i, x in enumerate(v):
            if not is_num(x):
                self.iss.error('ARRAY_TYPE_MISMATCH', f"Type mismatch. Array element "
                               f"'{json.dumps(x)[:40]}' is not a 'number'.", where)
                ok = False
            elif math.isinf(x) or x < lo or x > hi:
                self.iss.error('VALUE_NOT_IN_RANGE', f'Value {x} is out of range.',
                               ptr_join(where, i))
                ok = False
        if not ok:
            return None
        return [to_f32(x) if f32 else float(x) for x in v]

    def int_list(self, o, name, ptr, comp, length):
        v = self._guarded(o, name, 'array', ptr)
        if v is None:
            return None
        where = ptr_join(ptr, name)
        if not isinstance(v, list):
            self._mismatch(v, 'array', where)
            return None
        if len(v) != length:
            self.iss.error('ARRAY_LENGTH_NOT_IN_LIST', f'Invalid array length {len(v)}. Valid '
                           f'lengths are: [{length}].', where)
            return None
        ok = True
        for x in v:
            if not is_int(x):
                self.iss.error('ARRAY_TYPE_MISMATCH', f"Type mismatch. Array element "
                               f"'{json.dumps(x)[:40]}' is not a 'integer'.", where)
                ok = False
            elif not TYPE_MIN[comp] <= x <= TYPE_MAX[comp]:
                self.iss.error('INVALID_GL_VALUE', f'Invalid value {x} for GL type {comp}.', where)
                ok = False
        return [int(x) for x in v] if ok else None

    def index_list(self, o, name, ptr, req=False):
        v = self._list(o, name, ptr, req)
        if v is None:
            return None
        out, seen = [], set()
        for i, x in enumerate(v):
            if is_int(x) and x >= 0:
                if int(x) in seen:
                    self.iss.error('DUPLICATE_ELEMENTS', 'Array contains duplicate elements.',
                                   ptr_join(ptr_join(ptr, name), i))
                seen.add(int(x))
                out.append(int(x))
            else:
                self.iss.error('INVALID_INDEX', 'Index must be a non-negative integer.',
                               ptr_join(ptr_join(ptr, name), i))
                out.append(-1)
        return out

    def index_map(self, m, ptr):
        out = {}
        for k, x in m.items():
            if is_int(x) and x >= 0:
                out[k] = int(x)
            else:
                self.iss.error('INVALID_INDEX', 'Index must be a non-negative integer.',
                               ptr_join(ptr, k))
                out[k] = -1
        return out

    def unresolved(self, idx, where):
        self.iss.error('UNRESOLVED_REFERENCE', f'Unresolved reference: {idx}.', where)

    def resolve(self, coll, idx, where):
        """The object at idx of coll, or None (UNRESOLVED_REFERENCE when idx was given)."""
        if idx == -1:
            return None
        if 0 <= idx < len(coll) and coll[idx] is not None:
            return coll[idx]
        self.unresolved(idx, where)
        return None

    def extensions(self, o, ptr):
        """UNDECLARED_EXTENSION for an extension object not in extensionsUsed."""
        exts = o.get('extensions')
        if isinstance(exts, dict):
            for k, v in exts.items():
                if not isinstance(v, dict):
                    self._mismatch(v, 'object', ptr_join(ptr_join(ptr, 'extensions'), k))
                if k not in self.used:
                    self.iss.error('UNDECLARED_EXTENSION', 'Extension is not declared in '
                                   'extensionsUsed.', ptr_join(ptr_join(ptr, 'extensions'), k))
        elif exts is not None:
            self._mismatch(exts, 'object', ptr_join(ptr, 'extensions'))

    # ---- the document ----
    def run(self, root):
        if not isinstance(root, dict):
            self._mismatch(root, 'object', '')
            return
        if 'extensionsRequired' in root and 'extensionsUsed' not in root:
            self.iss.error('UNSATISFIED_DEPENDENCY', "Dependency failed. 'extensionsUsed' must "
                           "be defined.", '/extensionsRequired')
        self.used = self.string_list(root, 'extensionsUsed')
        required = self.string_list(root, 'extensionsRequired')
        for i, e in enumerate(required):
            if e not in self.used:
                self.iss.error('UNUSED_EXTENSION_REQUIRED', f"Unused extension '{e}' cannot be "
                               "required.", f'/extensionsRequired/{i}')
        self.quantized = 'KHR_mesh_quantization' in self.used
        if self.quantized and 'KHR_mesh_quantization' not in required:
            where = f'/extensionsUsed/{self.used.index("KHR_mesh_quantization")}'
            self.iss.error('NON_REQUIRED_EXTENSION', "Extension 'KHR_mesh_quantization' cannot "
                           "be optional.", where)
        if not self.asset(root):
            return
        self.extensions(root, '')
        c = {name: self.collection(root, name) for name in (
            'accessors', 'animations', 'buffers', 'bufferViews', 'cameras', 'images',
            'materials', 'meshes', 'nodes', 'samplers', 'scenes', 'skins', 'textures')}
        self.c = c
        for name, coll in c.items():
            parse = getattr(self, 'parse_' + name, None)
            for o in coll:
                if o is not None:
                    self.extensions(o.js, o.ptr)
                    if parse:
                        parse(o)
        scene = self.index(root, 'scene', '', req=False)
        self.resolve(c['scenes'], scene, '/scene')
        for name in ('bufferViews', 'accessors', 'images', 'textures', 'materials', 'meshes',
                     'nodes', 'skins', 'animations', 'scenes'):
            for o in c[name]:
                if o is not None:
                    getattr(self, 'link_' + name)(o)
        self.node_tree()
        self.load_buffers()
        self.check_data()

    def string_list(self, root, name):
        v = self._list(root, name, '')
        if v is None:
            return []
        out = []
        for i, x in enumerate(v):
            if not isinstance(x, str):
                self.iss.error('ARRAY_TYPE_MISMATCH', f"Type mismatch. Array element "
                               f"'{json.dumps(x)[:40]}' is not a 'string'.", f'/{name}/{i}')
            elif x in out:
                self.iss.error('DUPLICATE_ELEMENTS', 'Array contains duplicate elements.',
                               f'/{name}/{i}')
            else:
                out.append(x)
        return out

    def asset(self, root):
        a = self.mapping(root, 'asset', '', req=True)
        if a is None:
            return False
        self.extensions(a, '/asset')
        vre = r'^([0-9]+)\.([0-9]+)$'
        ver = self.string(a, 'version', '/asset', req=True)
        if ver is None:
            return False
        m = re.match(vre, ver)
        if not m:
            self.iss.error('PATTERN_MISMATCH', f"Value '{ver}' does not match regexp pattern "
                           f"'{vre}'.", '/asset/version')
            return False
        if int(m.group(1)) != 2:
            self.iss.error('UNKNOWN_ASSET_MAJOR_VERSION', f'Unknown glTF major asset version: '
                           f'{m.group(1)}.', '/asset/version')
            return False
        if int(m.group(2)) > 0:
            self.iss.warning('UNKNOWN_ASSET_MINOR_VERSION', f'Unknown glTF minor asset version: '
                             f'{m.group(2)}.', '/asset/version')
        minv = self.string(a, 'minVersion', '/asset')
        if minv is not None:
            mm = re.match(vre, minv)
            if not mm:
                self.iss.error('PATTERN_MISMATCH', f"Value '{minv}' does not match regexp "
                               f"pattern '{vre}'.", '/asset/minVersion')
            elif (int(mm.group(1)), int(mm.group(2))) > (int(m.group(1)), int(m.group(2))):
                self.iss.error('ASSET_MIN_VERSION_GREATER_THAN_VERSION', f"Asset minVersion "
                               f"'{minv}' is greater than version '{ver}'.", '/asset/minVersion')
        return True

    def collection(self, root, name):
        v = root.get(name)
        if name not in root:
            return []
        if not isinstance(v, list):
            self._mismatch(v, 'array', '/' + name)
            return []
        if not v:
            self.iss.error('EMPTY_ENTITY', 'Entity cannot be empty.', '/' + name)
            return []
        out = []
        for i, x in enumerate(v):
            if isinstance(x, dict):
                out.append(Obj(x, f'/{name}/{i}'))
            else:
                self._mismatch(x, 'object', f'/{name}/{i}')
                out.append(None)
        return out

    # ---- buffers and views ----
    def parse_buffers(self, o):
        js, p = o.js, o.ptr
        o.byte_length = self.uint(js, 'byteLength', p, req=True, lo=1)
        o.uri, o.data, o.has_uri = None, None, 'uri' in js
        uri = self.string(js, 'uri', p)
        if uri is None:
            return
        if uri.startswith('data:'):
            if self.is_glb:
                self.iss.warning('DATA_URI_GLB', 'Data URI is used in GLB container.',
                                 ptr_join(p, 'uri'))
            parsed = self.data_uri(uri, ptr_join(p, 'uri'))
            if parsed is None:
                return
            mime, o.data = parsed
            if mime not in ('application/octet-stream', 'application/gltf-buffer'):
                o.data = None
                self.iss.error('BUFFER_DATA_URI_MIME_TYPE_INVALID', "Data URI media type must be "
                               "'application/octet-stream' or 'application/gltf-buffer'. Found "
                               f"'{mime}' instead.", ptr_join(p, 'uri'))
        else:
            o.uri = self.local_uri(uri, ptr_join(p, 'uri'))

    def data_uri(self, uri, where):
        """(media type, bytes) of a data: URI, or None after INVALID_URI."""
        head, comma, payload = uri[5:].partition(',')
        params = head.split(';')
        is64 = len(params) > 1 and params[-1] == 'base64'
        if not comma or any('=' not in x for x in params[1:len(params) - is64]):
            self.iss.error('INVALID_URI', f"Invalid URI '{uri[:40]}'. Parser output: not a data "
                           "URI (media type, ';name=value' parameters, ',').", where)
            return None
        try:
            data = base64.b64decode(urllib.parse.unquote(payload), validate=True) if is64 \
                else urllib.parse.unquote_to_bytes(payload)
        except ValueError as e:
            self.iss.error('INVALID_URI', f"Invalid URI '{uri[:40]}'. Parser output: {e}", where)
            return None
        return params[0].lower(), data

    def local_uri(self, uri, where):
        """The file a relative URI names, or None: INVALID_URI for a malformed one, a warning
        (NON_RELATIVE_URI, not fetched) for one with a scheme or an absolute path."""
        scheme = re.match(r'^([^/?#]*):', uri)
        if scheme and not re.match(r'^[A-Za-z][A-Za-z0-9+.-]*$', scheme.group(1)):
            if where:
                self.iss.error('INVALID_URI', f"Invalid URI '{uri[:40]}'. Parser output: "
                               "invalid scheme.", where)
            return None
        parts = urllib.parse.urlsplit(uri)
        if scheme or parts.netloc or uri.startswith('/') or parts.query or parts.fragment:
            if where:
                self.iss.warning('NON_RELATIVE_URI', f"Non-relative URI found: '{uri[:40]}'.",
                                 where)
            return None
        return os.path.join(os.path.dirname(self.path), urllib.parse.unquote(parts.path))

    def parse_bufferViews(self, o):
        js, p = o.js, o.ptr
        o.byte_length = self.uint(js, 'byteLength', p, req=True, lo=1)
        o.stride = self.uint(js, 'byteStride', p, lo=4, hi=252)
        o.target = self.uint(js, 'target', p, allowed={ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER})
        if o.stride != -1:
            if o.byte_length != -1 and o.stride > o.byte_length:
                self.iss.error('BUFFER_VIEW_TOO_BIG_BYTE_STRIDE', f"Buffer view's byteStride "
                               f"({o.stride}) is greater than byteLength ({o.byte_length}).",
                               ptr_join(p, 'byteStride'))
            if o.stride % 4:
                self.iss.error('VALUE_MULTIPLE_OF', f'Value {o.stride} is not a multiple of 4.',
                               ptr_join(p, 'byteStride'))
            if o.target == ELEMENT_ARRAY_BUFFER:
                self.iss.error('BUFFER_VIEW_INVALID_BYTE_STRIDE', 'Only buffer views with raw '
                               'vertex data can have byteStride.', ptr_join(p, 'byteStride'))
        o.buffer_index = self.index(js, 'buffer', p)
        o.byte_offset = self.uint(js, 'byteOffset', p, default=0)
        o.usage = {ARRAY_BUFFER: 'VertexBuffer', ELEMENT_ARRAY_BUFFER: 'IndexBuffer'}.get(o.target)
        o.buffer = None

    def link_bufferViews(self, o):
        o.buffer = b = self.resolve(self.c['buffers'], o.buffer_index, ptr_join(o.ptr, 'buffer'))
        if b is None or b.byte_length == -1 or o.byte_offset == -1:
            return
        if o.byte_offset >= b.byte_length:
            self.iss.error('BUFFER_VIEW_TOO_LONG', f'BufferView does not fit buffer '
                           f'({o.buffer_index}) byteLength ({b.byte_length}).',
                           ptr_join(o.ptr, 'byteOffset'))
        elif o.byte_length != -1 and o.byte_offset + o.byte_length > b.byte_length:
            self.iss.error('BUFFER_VIEW_TOO_LONG', f'BufferView does not fit buffer '
                           f'({o.buffer_index}) byteLength ({b.byte_length}).',
                           ptr_join(o.ptr, 'byteLength'))

    def view_usage(self, bv, usage, where):
        if bv is None:
            return
        if bv.usage is None:
            bv.usage = usage
        elif bv.usage != usage:
            self.iss.error('BUFFER_VIEW_TARGET_OVERRIDE', f"Override of previously set "
                           f"bufferView target or usage. Initial: '{bv.usage}', new: '{usage}'.",
                           where)

    # ---- accessors ----
    def parse_accessors(self, o):
        js, p = o.js, o.ptr
        o.view_index = self.index(js, 'bufferView', p, req=False)
        o.byte_offset = 0
        if o.view_index == -1:
            if 'byteOffset' in js:
                self.iss.error('UNSATISFIED_DEPENDENCY', "Dependency failed. 'bufferView' must "
                               "be defined.", ptr_join(p, 'byteOffset'))
        else:
            o.byte_offset = self.uint(js, 'byteOffset', p, default=0)
        o.comp = self.uint(js, 'componentType', p, req=True, allowed=set(COMPONENT))
        o.count = self.uint(js, 'count', p, req=True, lo=1)
        o.type = self.string(js, 'type', p, req=True, allowed=TYPES)
        if o.type not in TYPES:
            o.type = None
        o.normalized = self.boolean(js, 'normalized', p)
        o.min = o.max = None
        if o.type and o.comp != -1:
            n = TYPES[o.type]
            if o.comp == FLOAT:
                o.min = self.float_list(js, 'min', p, lengths=[n], f32=True)
                o.max = self.float_list(js, 'max', p, lengths=[n], f32=True)
            else:
                o.min = self.int_list(js, 'min', p, o.comp, n)
                o.max = self.int_list(js, 'max', p, o.comp, n)
        o.sparse = self.parse_sparse(js, p)
        if o.normalized and o.comp in (FLOAT, UINT):
            self.iss.error('ACCESSOR_NORMALIZED_INVALID', 'Only (u)byte and (u)short accessors '
                           'can be normalized.', ptr_join(p, 'normalized'))
        if o.type in ('MAT2', 'MAT3', 'MAT4') and o.byte_offset != -1 and o.byte_offset & 3:
            self.iss.error('ACCESSOR_MATRIX_ALIGNMENT', 'Matrix accessors must be aligned to '
                           '4-byte boundaries.', ptr_join(p, 'byteOffset'))
        o.view, o.usage = None, None
        o.format = (o.type, o.comp, o.normalized)
        o.comp_len = COMPONENT[o.comp][1] if o.comp in COMPONENT else 0
        o.components = TYPES.get(o.type, 0)
        o.gaps = (o.comp in (BYTE, UBYTE) and o.type in ('MAT2', 'MAT3')) or \
            (o.comp in (SHORT, USHORT) and o.type == 'MAT3')
        if o.comp in (BYTE, UBYTE):
            o.elem_len = {'MAT2': 6, 'MAT3': 11}.get(o.type, o.components)
            o.default_stride = {'MAT2': 8, 'MAT3': 12}.get(o.type, o.components)
        elif o.comp in (SHORT, USHORT):
            o.elem_len = 22 if o.type == 'MAT3' else 2 * o.components
            o.default_stride = 24 if o.type == 'MAT3' else 2 * o.components
        else:
            o.elem_len = o.default_stride = 4 * o.components
        o.stride = o.default_stride
        if o.comp == -1 or o.count == -1 or o.type is None:
            o.broken = True
        else:
            o.broken = False

    def parse_sparse(self, js, p):
        s = self.mapping(js, 'sparse', p)
        if s is None:
            return None
        sp = ptr_join(p, 'sparse')
        self.extensions(s, sp)
        count = self.uint(s, 'count', sp, req=True, lo=1)
        ind = self.mapping(s, 'indices', sp, req=True)
        val = self.mapping(s, 'values', sp, req=True)
        out = Obj(s, sp)
        out.count = count
        if ind is not None:
            ip = ptr_join(sp, 'indices')
            self.extensions(ind, ip)
            out.ind_view = self.index(ind, 'bufferView', ip)
            out.ind_offset = self.uint(ind, 'byteOffset', ip, default=0)
            out.ind_comp = self.uint(ind, 'componentType', ip, req=True,
                                     allowed={UBYTE, USHORT, UINT})
        if val is not None:
            vp = ptr_join(sp, 'values')
            self.extensions(val, vp)
            out.val_view = self.index(val, 'bufferView', vp)
            out.val_offset = self.uint(val, 'byteOffset', vp, default=0)
        if count == -1 or ind is None or val is None:
            return None
        return out

    def check_offset_length(self, offset, comp_len, length, bv, bv_index, where):
        """Khronos's _checkByteOffsetAndLength; reports when where is given."""
        if offset == -1 or comp_len == 0:
            return False
        if offset % comp_len:
            if where is None:
                return False
            self.iss.error('ACCESSOR_OFFSET_ALIGNMENT', f'Offset {offset} is not a multiple of '
                           f'componentType length {comp_len}.', ptr_join(where, 'byteOffset'))
        if bv.byte_offset == -1:
            return False
        total = bv.byte_offset + offset
        if total % comp_len:
            if where is None:
                return False
            self.iss.error('ACCESSOR_TOTAL_OFFSET_ALIGNMENT', f"Accessor's total byteOffset "
                           f"{total} isn't a multiple of componentType length {comp_len}.", where)
        if bv.byte_length == -1:
            return False
        if offset > bv.byte_length or offset + length > bv.byte_length:
            if where is None:
                return False
            self.iss.error('ACCESSOR_TOO_LONG', f'Accessor (offset: {offset}, length: {length}) '
                           f'does not fit referenced bufferView [{bv_index}] length '
                           f'{bv.byte_length}.',
                           ptr_join(where, 'byteOffset') if offset > bv.byte_length else where)
        return True

    def byte_length(self, a):
        return a.stride * (a.count - 1) + a.elem_len

    def link_accessors(self, o):
        views = self.c['bufferViews']
        if 0 <= o.view_index < len(views):
            o.view = views[o.view_index]
        if o.view is not None and o.view.stride != -1:
            o.stride = o.view.stride
        if o.broken:
            return
        if o.view_index != -1:
            if o.view is None:
                self.unresolved(o.view_index, ptr_join(o.ptr, 'bufferView'))
            else:
                if o.view.stride != -1 and o.view.stride < o.elem_len:
                    self.iss.error('ACCESSOR_SMALL_BYTESTRIDE', f"Referenced bufferView's "
                                   f"byteStride value {o.view.stride} is less than accessor "
                                   f"element's length {o.elem_len}.", o.ptr)
                self.check_offset_length(o.byte_offset, o.comp_len, self.byte_length(o),
                                         o.view, o.view_index, o.ptr)
        s = o.sparse
        if s is None:
            return
        if s.count > o.count:
            self.iss.error('ACCESSOR_SPARSE_COUNT_OUT_OF_RANGE', f'Sparse accessor overrides '
                           f'more elements ({s.count}) than the base accessor contains '
                           f'({o.count}).', ptr_join(s.ptr, 'count'))
        s.ind = s.val = None
        for part in ('indices', 'values'):
            pp = ptr_join(s.ptr, part)
            vi = s.ind_view if part == 'indices' else s.val_view
            if vi == -1:
                continue
            bv = self.resolve(views, vi, ptr_join(pp, 'bufferView'))
            if bv is None:
                continue
            self.view_usage(bv, 'Other', ptr_join(pp, 'bufferView'))
            if bv.stride != -1:
                self.iss.error('BUFFER_VIEW_INVALID_BYTE_STRIDE', 'Only buffer views with raw '
                               'vertex data can have byteStride.', ptr_join(pp, 'bufferView'))
            if part == 'indices':
                s.ind = bv
                if s.ind_comp != -1:
                    cl = COMPONENT[s.ind_comp][1]
                    self.check_offset_length(s.ind_offset, cl, cl * s.count, bv, vi, pp)
            else:
                s.val = bv
                self.check_offset_length(s.val_offset, o.comp_len,
                                         o.comp_len * o.components * s.count, bv, vi, pp)

    def acc_usage(self, a, usage, where):
        if a.usage is None:
            a.usage = usage
        elif a.usage != usage:
            self.iss.error('ACCESSOR_USAGE_OVERRIDE', f"Override of previously set accessor "
                           f"usage. Initial: '{a.usage}', new: '{usage}'.", where)

    # ---- images, textures, materials, cameras ----
    def parse_images(self, o):
        js, p = o.js, o.ptr
        o.view_index = self.index(js, 'bufferView', p, req=False)
        o.mime = self.string(js, 'mimeType', p)
        o.uri = self.string(js, 'uri', p)
        if (o.view_index != -1) == (o.uri is not None):
            self.iss.error('ONE_OF_MISMATCH', 'Exactly one of (bufferView, uri) properties must '
                           'be defined.', p)
        if o.uri is not None and not o.uri.startswith('data:') and \
                self.local_uri(o.uri, ptr_join(p, 'uri')) is not None and \
                not os.path.exists(self.local_uri(o.uri, None)):
            self.iss.error('IO_ERROR', f'Resource not found ({o.uri}).', ptr_join(p, 'uri'))
        elif o.uri is not None and o.uri.startswith('data:'):
            self.data_uri(o.uri, ptr_join(p, 'uri'))
        if o.view_index != -1 and o.mime is None:
            self.iss.error('UNSATISFIED_DEPENDENCY', "Dependency failed. 'mimeType' must be "
                           "defined.", ptr_join(p, 'bufferView'))

    def link_images(self, o):
        bv = self.resolve(self.c['bufferViews'], o.view_index, ptr_join(o.ptr, 'bufferView'))
        o.view = bv
        if bv is not None:
            self.view_usage(bv, 'Image', ptr_join(o.ptr, 'bufferView'))
            if bv.stride != -1:
                self.iss.error('IMAGE_BUFFER_VIEW_WITH_BYTESTRIDE', 'bufferView.byteStride must '
                               'not be defined for buffer views containing image data.',
                               ptr_join(o.ptr, 'bufferView'))

    def parse_textures(self, o):
        o.sampler = self.index(o.js, 'sampler', o.ptr, req=False)
        o.source = self.index(o.js, 'source', o.ptr, req=False)

    def link_textures(self, o):
        self.resolve(self.c['samplers'], o.sampler, ptr_join(o.ptr, 'sampler'))
        self.resolve(self.c['images'], o.source, ptr_join(o.ptr, 'source'))

    def parse_samplers(self, o):
        for k, allowed in (('magFilter', {9728, 9729}),
                           ('minFilter', {9728, 9729, 9984, 9985, 9986, 9987}),
                           ('wrapS', {33071, 33648, 10497}), ('wrapT', {33071, 33648, 10497})):
            self.uint(o.js, k, o.ptr, allowed=allowed)

    def parse_cameras(self, o):
        js, p = o.js, o.ptr
        if 'orthographic' in js and 'perspective' in js:
            self.iss.error('ONE_OF_MISMATCH', 'Exactly one of (orthographic, perspective) '
                           'properties must be defined.', p)
        kind = self.string(js, 'type', p, req=True, allowed=('orthographic', 'perspective'))
        if kind not in ('orthographic', 'perspective'):
            return
        c = self.mapping(js, kind, p, req=True)
        if c is None:
            return
        cp = ptr_join(p, kind)
        self.extensions(c, cp)

        def need(name, lo=-math.inf, excl=False, req=True):
            if name not in c:
                if req:
                    self._undefined(name, cp)
                return None
            v = self.number(c, name, cp)
            if v is not None and (v < lo or (excl and v == lo)):
                self.iss.error('VALUE_NOT_IN_RANGE', f'Value {v} is out of range.',
                               ptr_join(cp, name))
                return None
            return v
        if kind == 'orthographic':
            xmag, ymag = need('xmag'), need('ymag')
            zfar, znear = need('zfar', 0, True), need('znear', 0)
            for name, v in (('xmag', xmag), ('ymag', ymag)):
                if v == 0:
                    self.iss.error('CAMERA_XMAG_YMAG_ZERO', 'xmag and ymag cannot be zero.',
                                   ptr_join(cp, name))
        else:
            need('yfov', 0, True)
            zfar, znear = need('zfar', 0, True, req=False), need('znear', 0, True)
            need('aspectRatio', 0, True, req=False)
        if zfar is not None and znear is not None and zfar <= znear:
            self.iss.error('CAMERA_ZFAR_LEQUAL_ZNEAR', 'zfar must be greater than znear.', cp)

    def texture_info(self, m, name, p, o):
        t = self.mapping(m, name, p)
        if t is None:
            return
        tp = ptr_join(p, name)
        self.extensions(t, tp)
        idx = self.index(t, 'index', tp)
        tc = self.uint(t, 'texCoord', tp, default=0)
        if name == 'occlusionTexture':
            self.number(t, 'strength', tp, lo=0, hi=1)
        o.textures.append((idx, tp))
        if tc != -1:
            o.texcoords[tp] = tc

    def parse_materials(self, o):
        js, p = o.js, o.ptr
        o.textures, o.texcoords = [], {}
        pbr = self.mapping(js, 'pbrMetallicRoughness', p)
        if pbr is not None:
            pp = ptr_join(p, 'pbrMetallicRoughness')
            self.extensions(pbr, pp)
            self.float_list(pbr, 'baseColorFactor', pp, lengths=[4], lo=0, hi=1)
            self.number(pbr, 'metallicFactor', pp, lo=0, hi=1)
            self.number(pbr, 'roughnessFactor', pp, lo=0, hi=1)
            self.texture_info(pbr, 'baseColorTexture', pp, o)
            self.texture_info(pbr, 'metallicRoughnessTexture', pp, o)
        for name in ('normalTexture', 'occlusionTexture', 'emissiveTexture'):
            self.texture_info(js, name, p, o)
        self.float_list(js, 'emissiveFactor', p, lengths=[3], lo=0, hi=1)
        self.string(js, 'alphaMode', p, allowed=('OPAQUE', 'MASK', 'BLEND'))
        self.number(js, 'alphaCutoff', p, lo=0)
        self.boolean(js, 'doubleSided', p)

    def link_materials(self, o):
        for idx, tp in o.textures:
            self.resolve(self.c['textures'], idx, ptr_join(tp, 'index'))

    # ---- meshes ----
    def parse_meshes(self, o):
        js, p = o.js, o.ptr
        o.weights = self.float_list(js, 'weights', p)
        o.prims = None
        prims = self._list(js, 'primitives', p, req=True)
        if prims is None:
            return
        o.prims = []
        targets = 0
        for i, pm in enumerate(prims):
            pp = ptr_join(ptr_join(p, 'primitives'), i)
            if not isinstance(pm, dict):
                self.iss.error('ARRAY_TYPE_MISMATCH', f"Type mismatch. Array element "
                               f"'{json.dumps(pm)[:40]}' is not a 'object'.",
                               ptr_join(p, 'primitives'))
                o.prims.append(None)
                continue
            prim = Obj(pm, pp)
            self.extensions(pm, pp)
            self.parse_primitive(prim)
            n = len(prim.targets) if prim.targets else 0
            if i == 0:
                targets = n
            elif n != targets:
                self.iss.error('MESH_PRIMITIVES_UNEQUAL_TARGETS_COUNT', 'All primitives must '
                               'have the same number of morph targets.',
                               ptr_join(pp, 'targets') if n else pp)
            o.prims.append(prim)
        if o.weights is not None and len(o.weights) != targets:
            self.iss.error('MESH_INVALID_WEIGHTS_COUNT', f'The length of weights array '
                           f'({len(o.weights)}) does not match the number of morph targets '
                           f'({targets}).', ptr_join(p, 'weights'))

    def semantic_index(self, s):
        if not s or not s.isdigit() or not s.isascii() or (len(s) > 1 and s[0] == '0'):
            return -1
        return int(s)

    def parse_primitive(self, prim):
        js, p = prim.js, prim.ptr
        prim.mode = self.uint(js, 'mode', p, lo=0, hi=6, default=4)
        prim.attrs = None
        counts = {'COLOR': [0, -1], 'JOINTS': [0, -1], 'TEXCOORD': [0, -1], 'WEIGHTS': [0, -1]}
        attrs = self.mapping(js, 'attributes', p, req=True)
        if attrs is not None and not attrs:
            self.iss.error('EMPTY_ENTITY', 'Entity cannot be empty.', ptr_join(p, 'attributes'))
            attrs = None
        if attrs is not None:
            ap = ptr_join(p, 'attributes')
            for sem in attrs:
                if sem.startswith('_') or sem in ('POSITION', 'NORMAL', 'TANGENT'):
                    continue
                parts = sem.split('_')
                idx = self.semantic_index(parts[1]) if len(parts) == 2 else -1
                if parts[0] not in counts or idx == -1:
                    self.iss.error('MESH_PRIMITIVE_INVALID_ATTRIBUTE', 'Invalid attribute name.',
                                   ptr_join(ap, sem))
                    continue
                counts[parts[0]][0] += 1
                counts[parts[0]][1] = max(counts[parts[0]][1], idx)
            if 'POSITION' not in attrs:
                self.iss.warning('MESH_PRIMITIVE_NO_POSITION', 'No POSITION attribute found.', ap)
            for k, (n, hi) in counts.items():
                if hi + 1 != n:
                    self.iss.error('MESH_PRIMITIVE_INDEXED_SEMANTIC_CONTINUITY', f"Indices for "
                                   f"indexed attribute semantic '{k}_' must start with 0 and be "
                                   f"continuous. Total expected indices: {hi + 1}, total "
                                   f"provided indices: {n}.", ap)
                    counts[k][0] = 0
            if counts['JOINTS'][0] != counts['WEIGHTS'][0]:
                self.iss.error('MESH_PRIMITIVE_JOINTS_WEIGHTS_MISMATCH', f"Number of JOINTS "
                               f"attribute semantics ({counts['JOINTS'][0]}) does not match the "
                               f"number of WEIGHTS ({counts['WEIGHTS'][0]}).", ap)
                counts['JOINTS'][0] = counts['WEIGHTS'][0] = 0
            prim.attrs = self.index_map(attrs, ap)
        prim.texcoords = counts['TEXCOORD'][0]
        prim.joints = counts['JOINTS'][0]
        prim.targets = None
        targets = self._list(js, 'targets', p)
        if targets is not None:
            tp = ptr_join(p, 'targets')
            ok = True
            prim.targets = []
            for i, t in enumerate(targets):
                if not isinstance(t, dict):
                    self.iss.error('ARRAY_TYPE_MISMATCH', f"Type mismatch. Array element "
                                   f"'{json.dumps(t)[:40]}' is not a 'object'.", tp)
                    ok = False
                elif not t:
                    self.iss.error('EMPTY_ENTITY', 'Entity cannot be empty.', ptr_join(tp, i))
                    ok = False
                else:
                    for sem in t:
                        parts = sem.split('_')
                        if sem.startswith('_') or sem in ('POSITION', 'NORMAL', 'TANGENT') or \
                                (parts[0] in ('TEXCOORD', 'COLOR') and len(parts) == 2 and
                                 self.semantic_index(parts[1]) != -1):
                            continue
                        self.iss.error('MESH_PRIMITIVE_INVALID_ATTRIBUTE', 'Invalid attribute '
                                       'name.', ptr_join(ptr_join(tp, i), sem))
                    prim.targets.append(self.index_map(t, ptr_join(tp, i)))
            if not ok:
                prim.targets = None
        prim.indices = self.index(js, 'indices', p, req=False)
        prim.material = self.index(js, 'material', p, req=False)

    def formats_for(self, sem, morph):
        base = sem.split('_')[0]
        table = MORPH_FORMATS if morph else ATTRIBUTE_FORMATS
        if base not in table:
            return None
        out = set(table[base])
        if self.quantized:
            out |= (QUANTIZED_MORPH_FORMATS if morph else QUANTIZED_FORMATS).get(base, set())
        return out

    def check_attribute(self, a, sem, where, morph):
        if sem == 'POSITION' and (a.min is None or a.max is None):
            self.iss.error('MESH_PRIMITIVE_POSITION_ACCESSOR_WITHOUT_BOUNDS', 'accessor.min and '
                           'accessor.max must be defined for POSITION attribute accessor.', where)
        valid = self.formats_for(sem, morph)
        if valid is not None:
            if a.format not in valid:
                self.iss.error('MESH_PRIMITIVE_ATTRIBUTES_ACCESSOR_INVALID_FORMAT', f"Invalid "
                               f"accessor format '{a.format}' for this attribute semantic.",
                               where)
            elif not morph and sem == 'NORMAL':
                self.checks.append((a, lambda v, w=where, a=a: self.unit_check(a, v, w, False)))
            elif not morph and sem == 'TANGENT':
                self.checks.append((a, lambda v, w=where, a=a: self.unit_check(a, v, w, True)))
            elif not morph and sem == 'COLOR_0' and a.comp == FLOAT:
                self.checks.append((a, lambda v, w=where: self.clamp_check(v, w)))
        elif not morph and a.comp == UINT:
            self.iss.error('MESH_PRIMITIVE_ATTRIBUTES_ACCESSOR_UNSIGNED_INT', 'Mesh attributes '
                           'cannot use UNSIGNED_INT component type.', where)
        if (a.byte_offset != -1 and a.byte_offset % 4) or \
                (a.elem_len % 4 and a.view is not None and a.view.stride == -1):
            self.iss.error('MESH_PRIMITIVE_ACCESSOR_UNALIGNED', 'Vertex attribute data must be '
                           'aligned to 4-byte boundaries.', where)

    def strideless_check(self, a, where):
        if a.view is None or a.view.stride != -1:
            return
        seen = self.strideless.setdefault(a.view_index, [])
        if a not in seen:
            seen.append(a)
            if len(seen) > 1:
                self.iss.error('MESH_PRIMITIVE_ACCESSOR_WITHOUT_BYTESTRIDE', 'bufferView.'
                               'byteStride must be defined when two or more accessors use the '
                               'same buffer view.', where)

    def link_meshes(self, o):
        for prim in o.prims or []:
            if prim is not None:
                self.link_primitive(prim)

    def link_primitive(self, prim):
        accs = self.c['accessors']
        prim.vertex_count = prim.count = -1
        prim.attr_accs = {}
        ap = ptr_join(prim.ptr, 'attributes')
        for sem, idx in (prim.attrs or {}).items():
            if idx == -1:
                continue
            where = ptr_join(ap, sem)
            a = self.resolve(accs, idx, where)
            if a is None:
                continue
            prim.attr_accs[sem] = a
            self.acc_usage(a, 'VertexAttribute', where)
            self.view_usage(a.view, 'VertexBuffer', where)
            self.check_attribute(a, sem, where, False)
            if prim.vertex_count == -1:
                prim.vertex_count = prim.count = a.count
            elif prim.vertex_count != a.count:
                self.iss.error('MESH_PRIMITIVE_UNEQUAL_ACCESSOR_COUNT', 'All accessors of the '
                               'same primitive must have the same count.', where)
            self.strideless_check(a, where)
        if prim.indices != -1:
            where = ptr_join(prim.ptr, 'indices')
            a = self.resolve(accs, prim.indices, where)
            if a is not None:
                prim.count = a.count
                self.acc_usage(a, 'PrimitiveIndices', where)
                self.view_usage(a.view, 'IndexBuffer', where)
                if a.view is not None and a.view.stride != -1:
                    self.iss.error('MESH_PRIMITIVE_INDICES_ACCESSOR_WITH_BYTESTRIDE', 'bufferView.'
                                   'byteStride must not be defined for indices accessor.', where)
                if a.format not in INDICES_FORMATS:
                    self.iss.error('MESH_PRIMITIVE_INDICES_ACCESSOR_INVALID_FORMAT', f"Invalid "
                                   f"indices accessor format '{a.format}'.", where)
                else:
                    vmax = prim.vertex_count - 1 if prim.vertex_count != -1 else -1
                    self.checks.append((a, lambda v, w=where, m=vmax, a=a:
                                        self.index_check(a, v, w, m)))
        m, n = prim.mode, prim.count
        if n != -1 and ((m == 1 and n % 2) or (m in (2, 3) and n < 2) or (m == 4 and n % 3) or
                        (m in (5, 6) and n < 3)):
            self.iss.warning('MESH_PRIMITIVE_INCOMPATIBLE_MODE', f'Number of vertices or indices '
                             f'({n}) is not compatible with used drawing mode ({m}).', prim.ptr)
        mat = self.resolve(self.c['materials'], prim.material, ptr_join(prim.ptr, 'material'))
        if mat is not None:
            for tp, tc in mat.texcoords.items():
                if tc + 1 > prim.texcoords:
                    self.iss.error('MESH_PRIMITIVE_TOO_FEW_TEXCOORDS', f"Material is incompatible "
                                   f"with mesh primitive: Texture binding '{tp}' needs "
                                   f"'TEXCOORD_{tc}' attribute.", ptr_join(prim.ptr, 'material'))
        for i, t in enumerate(prim.targets or []):
            tp = ptr_join(ptr_join(prim.ptr, 'targets'), i)
            for sem, idx in t.items():
                if idx == -1:
                    continue
                where = ptr_join(tp, sem)
                a = self.resolve(accs, idx, where)
                if a is None:
                    continue
                self.acc_usage(a, 'VertexAttribute', where)
                self.view_usage(a.view, 'VertexBuffer', where)
                base = prim.attr_accs.get(sem)
                if base is None:
                    self.iss.error('MESH_PRIMITIVE_MORPH_TARGET_NO_BASE_ACCESSOR', 'The mesh '
                                   'primitive does not define this attribute semantic.', where)
                elif base.count != a.count:
                    self.iss.error('MESH_PRIMITIVE_MORPH_TARGET_INVALID_ATTRIBUTE_COUNT', 'Base '
                                   'accessor has different count.', where)
                self.check_attribute(a, sem, where, True)
                self.strideless_check(a, where)

    # ---- nodes, skins, animations, scenes ----
    def parse_nodes(self, o):
        js, p = o.js, o.ptr
        o.matrix = self.float_list(js, 'matrix', p, lengths=[16]) if 'matrix' in js else None
        o.translation = self.float_list(js, 'translation', p, lengths=[3])
        o.rotation = self.float_list(js, 'rotation', p, lengths=[4], lo=-1, hi=1)
        if o.rotation is not None and \
                abs(1 - math.sqrt(sum(x * x for x in o.rotation))) > UNIT_VEC4:
            self.iss.error('ROTATION_NON_UNIT', 'Rotation quaternion must be normalized.',
                           ptr_join(p, 'rotation'))
        o.scale = self.float_list(js, 'scale', p, lengths=[3])
        o.camera = self.index(js, 'camera', p, req=False)
        o.children = self.index_list(js, 'children', p)
        o.mesh = self.index(js, 'mesh', p, req=False)
        o.skin = self.index(js, 'skin', p, req=False)
        o.weights = self.float_list(js, 'weights', p)
        if o.mesh == -1:
            for k, given in (('skin', o.skin != -1), ('weights', o.weights is not None)):
                if given:
                    self.iss.error('UNSATISFIED_DEPENDENCY', "Dependency failed. 'mesh' must be "
                                   "defined.", ptr_join(p, k))
        if o.matrix is not None:
            if o.translation is not None or o.rotation is not None or o.scale is not None:
                self.iss.error('NODE_MATRIX_TRS', 'A node can have either a matrix or any '
                               'combination of translation/rotation/scale (TRS) properties.',
                               ptr_join(p, 'matrix'))
            if o.matrix != [1.0 if i % 5 == 0 else 0.0 for i in range(16)] and \
                    not trs_decomposable(o.matrix):
                self.iss.error('NODE_MATRIX_NON_TRS', 'Matrix must be decomposable to TRS.',
                               ptr_join(p, 'matrix'))
        o.parent, o.mesh_obj, o.skin_obj, o.scenes, o.is_joint = None, None, None, set(), False

    def link_nodes(self, o):
        p = o.ptr
        self.resolve(self.c['cameras'], o.camera, ptr_join(p, 'camera'))
        o.skin_obj = self.resolve(self.c['skins'], o.skin, ptr_join(p, 'skin'))
        o.mesh_obj = mesh = self.resolve(self.c['meshes'], o.mesh, ptr_join(p, 'mesh'))
        if mesh is not None and mesh.prims:
            first = mesh.prims[0]
            ntargets = len(first.targets) if first is not None and first.targets else None
            if o.weights is not None and ntargets != len(o.weights):
                self.iss.error('NODE_WEIGHTS_INVALID', f'The length of weights array '
                               f'({len(o.weights)}) does not match the number of morph targets '
                               f'({ntargets}).', ptr_join(p, 'weights'))
            skinned = any(pr is not None and pr.joints for pr in mesh.prims)
            if o.skin_obj is not None and not skinned:
                self.iss.error('NODE_SKIN_WITH_NON_SKINNED_MESH', 'Node has skin defined, but '
                               'mesh has no joints data.', p)
            elif o.skin_obj is None and skinned:
                self.iss.warning('NODE_SKINNED_MESH_WITHOUT_SKIN', 'Node uses skinned mesh, but '
                                 'has no skin defined.', p)
        o.child_objs = []
        for i, ci in enumerate(o.children or []):
            if ci == -1:
                continue
            child = self.resolve(self.c['nodes'], ci, ptr_join(ptr_join(p, 'children'), i))
            if child is None:
                continue
            if child.parent is not None:
                self.iss.error('NODE_PARENT_OVERRIDE', f'Value overrides parent of node {ci}.',
                               ptr_join(ptr_join(p, 'children'), i))
            child.parent = o
            o.child_objs.append(child)

    def parse_skins(self, o):
        o.ibm = self.index(o.js, 'inverseBindMatrices', o.ptr, req=False)
        o.skeleton = self.index(o.js, 'skeleton', o.ptr, req=False)
        o.joints = self.index_list(o.js, 'joints', o.ptr, req=True)
        o.roots = None

    def link_skins(self, o):
        p = o.ptr
        nodes = self.c['nodes']
        roots = None
        for i, ji in enumerate(o.joints or []):
            if ji == -1:
                continue
            node = self.resolve(nodes, ji, ptr_join(ptr_join(p, 'joints'), i))
            if node is None:
                continue
            node.is_joint = True
            chain, t = [], node
            while t is not None and t not in chain:
                chain.append(t)
                t = t.parent
            roots = chain if roots is None else [r for r in roots if r in chain]
        if o.joints is not None:
            o.roots = roots or []
            if not o.roots:
                self.iss.error('SKIN_NO_COMMON_ROOT', 'Joints do not have a common root.',
                               ptr_join(p, 'joints'))
        where = ptr_join(p, 'inverseBindMatrices')
        a = self.resolve(self.c['accessors'], o.ibm, where)
        if a is not None:
            self.acc_usage(a, 'IBM', where)
            self.view_usage(a.view, 'IBM', where)
            if a.view is not None and a.view.stride != -1:
                self.iss.error('SKIN_IBM_ACCESSOR_WITH_BYTESTRIDE', 'bufferView.byteStride must '
                               'not be defined for buffer views used by inverse bind matrices '
                               'accessors.', where)
            if a.format != ('MAT4', FLOAT, False):
                self.iss.error('SKIN_IBM_INVALID_FORMAT', f"Invalid IBM accessor format "
                               f"'{a.format}'.", where)
            else:
                self.checks.append((a, lambda v, w=where: self.ibm_check(v, w)))
            if o.joints is not None and a.count != -1 and a.count < len(o.joints):
                self.iss.error('INVALID_IBM_ACCESSOR_COUNT', f'IBM accessor must have at least '
                               f'{len(o.joints)} elements. Found {a.count}.', where)
        sk = self.resolve(nodes, o.skeleton, ptr_join(p, 'skeleton'))
        if sk is not None and sk not in (o.roots or []):
            self.iss.error('SKIN_SKELETON_INVALID', 'Skeleton node is not a common root.',
                           ptr_join(p, 'skeleton'))

    def parse_animations(self, o):
        js, p = o.js, o.ptr
        o.samplers = o.channels = None
        sams = self._list(js, 'samplers', p, req=True)
        chans = self._list(js, 'channels', p, req=True)
        if sams is not None:
            o.samplers = []
            for i, s in enumerate(sams):
                sp = ptr_join(ptr_join(p, 'samplers'), i)
                if not isinstance(s, dict):
                    self._mismatch(s, 'object', sp)
                    o.samplers.append(None)
                    continue
                so = Obj(s, sp)
                self.extensions(s, sp)
                so.input = self.index(s, 'input', sp)
                so.output = self.index(s, 'output', sp)
                so.interp = self.string(s, 'interpolation', sp, default='LINEAR',
                                        allowed=('LINEAR', 'STEP', 'CUBICSPLINE'))
                o.samplers.append(so)
        if chans is not None:
            o.channels = []
            for i, c in enumerate(chans):
                cp = ptr_join(ptr_join(p, 'channels'), i)
                if not isinstance(c, dict):
                    self._mismatch(c, 'object', cp)
                    continue
                co = Obj(c, cp)
                self.extensions(c, cp)
                co.sampler = self.index(c, 'sampler', cp)
                t = self.mapping(c, 'target', cp, req=True)
                co.node = co.path = None
                if t is not None:
                    tp = ptr_join(cp, 'target')
                    self.extensions(t, tp)
                    co.node = self.index(t, 'node', tp, req=False)
                    co.path = self.string(t, 'path', tp, req=True, allowed=tuple(OUTPUT_FORMATS))
                o.channels.append(co)

    def link_animations(self, o):
        if o.samplers is None or o.channels is None:
            return
        accs = self.c['accessors']
        for s in o.samplers:
            if s is None:
                continue
            s.inp = self.resolve(accs, s.input, ptr_join(s.ptr, 'input'))
            s.out = self.resolve(accs, s.output, ptr_join(s.ptr, 'output'))
            for a, name in ((s.inp, 'input'), (s.out, 'output')):
                if a is None:
                    continue
                where = ptr_join(s.ptr, name)
                self.acc_usage(a, 'AnimationInput' if name == 'input' else 'AnimationOutput',
                               where)
                self.view_usage(a.view, 'Other', where)
                if a.view is not None and a.view.stride != -1:
                    self.iss.error('ANIMATION_SAMPLER_ACCESSOR_WITH_BYTESTRIDE', 'bufferView.'
                                   'byteStride must not be defined for buffer views used by '
                                   'animation sampler accessors.', where)
            if s.inp is not None:
                where = ptr_join(s.ptr, 'input')
                if s.inp.format != ('SCALAR', FLOAT, False):
                    self.iss.error('ANIMATION_SAMPLER_INPUT_ACCESSOR_INVALID_FORMAT', f"Invalid "
                                   f"Animation sampler input accessor format "
                                   f"'{s.inp.format}'.", where)
                else:
                    self.checks.append((s.inp, lambda v, w=where: self.input_check(v, w)))
                if s.inp.min is None or s.inp.max is None:
                    self.iss.error('ANIMATION_SAMPLER_INPUT_ACCESSOR_WITHOUT_BOUNDS', 'accessor.'
                                   'min and accessor.max must be defined for animation input '
                                   'accessor.', where)
                if s.interp == 'CUBICSPLINE' and s.inp.count < 2:
                    self.iss.error('ANIMATION_SAMPLER_INPUT_ACCESSOR_TOO_FEW_ELEMENTS', 'Animation'
                                   ' sampler output accessor with CUBICSPLINE interpolation must '
                                   f'have at least 2 elements. Got {s.inp.count}.', where)
        seen = []
        for c in o.channels:
            node = None
            if c.node is not None and c.node != -1:
                node = self.resolve(self.c['nodes'], c.node,
                                    ptr_join(ptr_join(c.ptr, 'target'), 'node'))
                if node is not None and c.path in ('translation', 'rotation', 'scale') and \
                        node.matrix is not None:
                    self.iss.error('ANIMATION_CHANNEL_TARGET_NODE_MATRIX', 'Animation channel '
                                   'cannot target TRS properties of a node with defined matrix.',
                                   ptr_join(c.ptr, 'target'))
                first = node.mesh_obj.prims[0] if node is not None and node.mesh_obj and \
                    node.mesh_obj.prims else None
                if node is not None and c.path == 'weights' and \
                        (first is None or first.targets is None):
                    self.iss.error('ANIMATION_CHANNEL_TARGET_NODE_WEIGHTS_NO_MORPHS', 'Animation '
                                   'channel cannot target WEIGHTS when mesh does not have morph '
                                   'targets.', ptr_join(c.ptr, 'target'))
            s = None
            if c.sampler != -1:
                if 0 <= c.sampler < len(o.samplers) and o.samplers[c.sampler] is not None:
                    s = o.samplers[c.sampler]
                else:
                    self.unresolved(c.sampler, ptr_join(c.ptr, 'sampler'))
            if s is not None and c.path is not None and s.out is not None:
                where = ptr_join(c.ptr, 'sampler')
                valid = OUTPUT_FORMATS.get(c.path)
                if valid is not None and s.out.format not in valid:
                    self.iss.error('ANIMATION_SAMPLER_OUTPUT_ACCESSOR_INVALID_FORMAT', f"Invalid "
                                   f"animation sampler output accessor format '{s.out.format}' "
                                   f"for path '{c.path}'.", where)
                if c.path == 'rotation' and s.out.components == 4:
                    cubic = s.interp == 'CUBICSPLINE'
                    self.checks.append((s.out, lambda v, w=where, a=s.out, cb=cubic:
                                        self.quat_check(a, v, w, cb)))
                if s.inp is not None and s.inp.count != -1 and s.out.count != -1 and \
                        s.interp is not None:
                    expected = s.inp.count * (3 if s.interp == 'CUBICSPLINE' else 1)
                    if c.path == 'weights':
                        pr = node.mesh_obj.prims[0] if node is not None and node.mesh_obj and \
                            node.mesh_obj.prims and node.mesh_obj.prims[0] else None
                        expected *= len(pr.targets) if pr is not None and pr.targets else 0
                    elif c.path not in OUTPUT_FORMATS:
                        expected = 0
                    if expected and expected != s.out.count:
                        self.iss.error('ANIMATION_SAMPLER_OUTPUT_ACCESSOR_INVALID_COUNT',
                                       f'Animation sampler output accessor of count {expected} '
                                       f'expected. Found {s.out.count}.', where)
            seen.append((c.node, c.path, c.ptr))
        for i, (node, path, cp) in enumerate(seen):
            for j in range(i + 1, len(seen)):
                if node not in (None, -1) and seen[j][:2] == (node, path):
                    self.iss.error('ANIMATION_DUPLICATE_TARGETS', f'Animation channel has the '
                                   f'same target as channel {j}.', ptr_join(cp, 'target'))

    def parse_scenes(self, o):
        o.nodes = self.index_list(o.js, 'nodes', o.ptr)

    def link_scenes(self, o):
        for i, ni in enumerate(o.nodes or []):
            if ni == -1:
                continue
            where = ptr_join(ptr_join(o.ptr, 'nodes'), i)
            node = self.resolve(self.c['nodes'], ni, where)
            if node is None:
                continue
            if node.parent is not None:
                self.iss.error('SCENE_NON_ROOT_NODE', f'Node {ni} is not a root node.', where)
            stack, seen = [node], set()
            while stack:
                n = stack.pop()
                n.scenes.add(id(o))
                if id(n) in seen:
                    continue
                seen.add(id(n))
                stack.extend(n.child_objs)

    def node_tree(self):
        for i, node in enumerate(self.c['nodes']):
            if node is None:
                continue
            if node.parent is not None:
                seen, t = set(), node
                while t.parent is not None:
                    if id(t) in seen:
                        if t is node:
                            self.iss.error('NODE_LOOP', 'Node is a part of a node loop.',
                                           f'/nodes/{i}')
                        break
                    seen.add(id(t))
                    t = t.parent
            skin = node.skin_obj
            if skin is not None and skin.roots:
                top = next((r for r in skin.roots if r.parent is None), None)
                if top is not None and not node.scenes <= top.scenes:
                    self.iss.error('NODE_SKIN_NO_SCENE', 'A node with a skinned mesh is used in '
                                   'a scene that does not contain joint nodes.', f'/nodes/{i}')

    # ---- data ----
    def load_buffers(self):
        for i, b in enumerate(self.c['buffers']):
            if b is None or b.byte_length == -1:
                continue
            data = None
            if b.uri is not None:
                try:
                    with open(b.uri, 'rb') as f:
                        data = f.read()
                except OSError:
                    self.iss.error('IO_ERROR', f"Resource not found "
                                   f"({os.path.basename(b.uri)}).", ptr_join(b.ptr, 'uri'))
            elif b.data is not None:
                data = b.data
            elif b.has_uri:
                continue
            elif self.is_glb and i == 0:
                data = self.bin
                if data is None:
                    self.iss.error('BUFFER_MISSING_GLB_DATA', 'Buffer refers to an unresolved '
                                   'GLB binary chunk.', b.ptr)
            if data is None:
                continue
            if len(data) < b.byte_length:
                self.iss.error('BUFFER_BYTE_LENGTH_MISMATCH', f'Actual data byte length '
                               f'({len(data)}) is less than the declared buffer byte length '
                               f'({b.byte_length}).', b.ptr)
                continue  # only a data URI keeps its data (set when parsed), as Khronos
            if data is self.bin:
                if len(data) > pad4(b.byte_length):
                    self.iss.warning('BUFFER_GLB_CHUNK_TOO_BIG', f'GLB-stored BIN chunk contains '
                                     f'{len(data) - pad4(b.byte_length)} extra padding byte(s).',
                                     b.ptr)
                if any(data[b.byte_length:pad4(b.byte_length)]):
                    self.iss.warning('GLB_BIN_PADDING', 'The BIN chunk is not padded with zeros '
                                     '(a rule of the glTF specification the Khronos validator '
                                     'does not check).', b.ptr)
            b.data = data

    def read(self, bv, offset, comp, n):
        """n values of comp from bv at offset, or None where the buffer does not hold them."""
        data = bv.buffer.data if bv is not None and bv.buffer is not None else None
        if data is None or bv.byte_offset == -1:
            return None
        start = bv.byte_offset + offset
        ch, size = COMPONENT[comp]
        if start + n * size > len(data):
            return None
        return list(struct.unpack_from(f'<{n}{ch}', data, start))

    def values(self, a):
        """The accessor's components, flat and sparse applied, as Khronos's getElements."""
        if a.broken or (a.view is None and a.sparse is None):
            return None
        n = a.count * a.components
        if a.view is not None:
            if a.stride < a.elem_len or not self.check_offset_length(
                    a.byte_offset, a.comp_len, self.byte_length(a), a.view, None, None):
                return None
            if a.stride == a.elem_len and not a.gaps:
                vals = self.read(a.view, a.byte_offset, a.comp, n)
            else:
                raw = self.read(a.view, a.byte_offset, a.comp,
                                self.byte_length(a) // a.comp_len)
                if raw is None:
                    return None
                vals, step = [], a.stride // a.comp_len
                rows = {'MAT2': 2, 'MAT3': 3}.get(a.type) if a.gaps else 0
                for e in range(a.count):
                    base = e * step
                    if rows:  # each column padded to 4 bytes (bytes) or 8 (shorts): 4 values
                        for c in range(rows):
                            vals.extend(raw[base + 4 * c:base + 4 * c + rows])
                    else:
                        vals.extend(raw[base:base + a.components])
            if vals is None:
                return None
        else:
            vals = [0] * n
        s = a.sparse
        if s is not None:
            if getattr(s, 'ind', None) is None or getattr(s, 'val', None) is None or \
                    s.ind_comp == -1 or s.count > a.count:
                return None
            icl = COMPONENT[s.ind_comp][1]
            if not self.check_offset_length(s.ind_offset, icl, icl * s.count, s.ind, None, None) \
                    or not self.check_offset_length(s.val_offset, a.comp_len, a.comp_len *
                                                    a.components * s.count, s.val, None, None):
                return None
            ind = self.read(s.ind, s.ind_offset, s.ind_comp, s.count)
            sv = self.read(s.val, s.val_offset, a.comp, s.count * a.components)
            if ind is None or sv is None:
                return None
            s.indices = ind
            c = a.components
            for k, e in enumerate(ind):
                if e < a.count:
                    vals[e * c:(e + 1) * c] = sv[k * c:(k + 1) * c]
        return vals

    def check_data(self):
        for a in self.c['accessors']:
            if a is None or a.broken:
                continue
            s = a.sparse
            if s is not None and getattr(s, 'ind', None) is not None and s.ind_comp != -1:
                ind = self.read(s.ind, s.ind_offset, s.ind_comp, s.count)
                last = -1
                for k, e in enumerate(ind or []):
                    if last != -1 and e <= last:
                        self.iss.error('ACCESSOR_SPARSE_INDICES_NON_INCREASING', f'Accessor '
                                       f'sparse indices element at index {k} is less than or '
                                       f'equal to previous: {e} <= {last}.',
                                       ptr_join(a.ptr, 'sparse'))
                    if e >= a.count:
                        self.iss.error('ACCESSOR_SPARSE_INDEX_OOB', f'Accessor sparse indices '
                                       f'element at index {k} is greater than or equal to the '
                                       f'number of accessor elements: {e} >= {a.count}.',
                                       ptr_join(a.ptr, 'sparse'))
                    last = e
        by_acc = {}
        for a, fn in self.checks:
            by_acc.setdefault(id(a), (a, []))[1].append(fn)
        for a in self.c['accessors']:
            if a is not None and not a.broken and \
                    (a.comp == FLOAT or a.min is not None or a.max is not None):
                by_acc.setdefault(id(a), (a, []))[1].insert(0, lambda v, a=a: self.bounds(a, v))
        for a, fns in by_acc.values():
            vals = self.values(a)
            if not vals:
                continue
            for fn in fns:
                fn(vals)

    def bounds(self, a, vals):
        c = a.components
        if a.comp == FLOAT:
            for i, v in enumerate(vals):
                if math.isnan(v) or math.isinf(v):
                    self.iss.error('ACCESSOR_INVALID_FLOAT', f'Accessor element at index {i} is '
                                   f'{v}.', a.ptr)
        for name, decl, pick, code, bound in (
                ('min', a.min, min, 'ACCESSOR_MIN_MISMATCH', 'ACCESSOR_ELEMENT_OUT_OF_MIN_BOUND'),
                ('max', a.max, max, 'ACCESSOR_MAX_MISMATCH', 'ACCESSOR_ELEMENT_OUT_OF_MAX_BOUND')):
            if decl is None:
                continue
            for k in range(c):
                col = vals[k::c]
                actual = pick(col)
                if decl[k] != actual:
                    where = ptr_join(ptr_join(a.ptr, name), k)
                    word = 'minimum' if name == 'min' else 'maximum'
                    self.iss.error(code, f'Declared {word} value for this component ({decl[k]}) '
                                   f'does not match actual {word} ({actual}).', where)
                    out = sum(1 for v in col if (v < decl[k] if name == 'min' else v > decl[k]))
                    if out:
                        self.iss.error(bound, f'Accessor contains {out} element(s) '
                                       f"{'less' if name == 'min' else 'greater'} than declared "
                                       f'{word} value {decl[k]}.', where)

    def normalize(self, a, v):
        if not a.normalized or a.comp == FLOAT:
            return float(v)
        w = a.comp_len * 8
        if a.comp in (BYTE, SHORT):
            return max(v / ((1 << (w - 1)) - 1), -1.0)
        return v / ((1 << w) - 1)

    def index_check(self, a, vals, where, vmax):
        restart = TYPE_MAX.get(a.comp)
        for i, v in enumerate(vals):
            if v > vmax:
                self.iss.error('ACCESSOR_INDEX_OOB', f'Indices accessor element at index {i} has '
                               f'value {v} that is greater than the maximum vertex index '
                               f'available ({vmax}).', where)
            if v == restart:
                self.iss.error('ACCESSOR_INDEX_PRIMITIVE_RESTART', f'Indices accessor contains '
                               f'primitive restart value ({v}) at index {i}.', where)

    def unit_check(self, a, vals, where, sign):
        c = 4 if sign else 3
        for e in range(len(vals) // c):
            v = [self.normalize(a, x) for x in vals[e * c:e * c + c]]
            length = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
            if abs(length - 1.0) > UNIT_VEC3:
                self.iss.error('ACCESSOR_VECTOR3_NON_UNIT', f'Vector3 at accessor indices '
                               f'{e * c}..{e * c + 2} is not of unit length: {length}.', where)
            if sign and v[3] not in (1.0, -1.0):
                self.iss.error('ACCESSOR_INVALID_SIGN', f'Vector3 with sign at accessor indices '
                               f'{e * c}..{e * c + 3} has invalid w component: {v[3]}. Must be '
                               '1.0 or -1.0.', where)

    def clamp_check(self, vals, where):
        for i, v in enumerate(vals):
            if v > 1.0 or v < 0.0:
                self.iss.error('ACCESSOR_NON_CLAMPED', f'Accessor element at index {i} is not '
                               f'clamped to 0..1 range: {v}.', where)

    def input_check(self, vals, where):
        last = 0.0
        for i, v in enumerate(vals):
            if v < 0.0:
                self.iss.error('ACCESSOR_ANIMATION_INPUT_NEGATIVE', f'Animation input accessor '
                               f'element at index {i} is negative: {v}.', where)
                continue
            if i and v <= last:
                self.iss.error('ACCESSOR_ANIMATION_INPUT_NON_INCREASING', f'Animation input '
                               f'accessor element at index {i} is less than or equal to '
                               f'previous: {v} <= {last}.', where)
            last = v

    def quat_check(self, a, vals, where, cubic):
        for e in range(len(vals) // 4):
            if cubic and e % 3 != 1:  # in-tangent, value, out-tangent: the value alone
                continue
            q = [self.normalize(a, x) for x in vals[4 * e:4 * e + 4]]
            length = math.sqrt(sum(x * x for x in q))
            if abs(length - 1.0) > UNIT_VEC4:
                self.iss.error('ACCESSOR_ANIMATION_SAMPLER_OUTPUT_NON_NORMALIZED_QUATERNION',
                               f'Animation sampler output accessor element at indices '
                               f'{4 * e}..{4 * e + 3} is not of unit length: {length}.', where)

    def ibm_check(self, vals, where):
        for e in range(len(vals) // 16):
            m = vals[16 * e:16 * e + 16]
            for k, want in ((3, 0), (7, 0), (11, 0), (15, 1)):
                if m[k] != want:
                    self.iss.error('ACCESSOR_INVALID_IBM', f'Matrix element at index '
                                   f'{16 * e + k} (component index {k}) contains invalid value: '
                                   f'{m[k]}.', where)


def trs_decomposable(m):
    """Khronos's isTrsDecomposable: the matrix, column-major, rebuilt from its translation,
    rotation (through a quaternion) and scale within 0.00005 (infinity norm)."""
    if m[3] != 0 or m[7] != 0 or m[11] != 0 or m[15] != 1:
        return False
    cols = [m[0:3], m[4:7], m[8:11]]
    det = (cols[0][0] * (cols[1][1] * cols[2][2] - cols[2][1] * cols[1][2]) -
           cols[1][0] * (cols[0][1] * cols[2][2] - cols[2][1] * cols[0][2]) +
           cols[2][0] * (cols[0][1] * cols[1][2] - cols[1][1] * cols[0][2]))
    if det == 0:
        return False
    scale = [math.sqrt(sum(x * x for x in c)) for c in cols]
    if det < 0:
        scale[0] = -scale[0]
    r = [[cols[j][i] / scale[j] for j in range(3)] for i in range(3)]  # r[row][col]
    tr = r[0][0] + r[1][1] + r[2][2]
    if tr > 0:
        s = math.sqrt(tr + 1.0)
        w = s * 0.5
        s = 0.5 / s
        x, y, z = (r[2][1] - r[1][2]) * s, (r[0][2] - r[2][0]) * s, (r[1][0] - r[0][1]) * s
    else:
        i = 0 if r[0][0] >= r[1][1] and r[0][0] >= r[2][2] else (1 if r[1][1] >= r[2][2] else 2)
        j, k = (i + 1) % 3, (i + 2) % 3
        s = math.sqrt(r[i][i] - r[j][j] - r[k][k] + 1.0)
        q = [0.0, 0.0, 0.0]
        q[i] = s * 0.5
        s = 0.5 / s
        w = (r[k][j] - r[j][k]) * s
        q[j] = (r[j][i] + r[i][j]) * s
        q[k] = (r[k][i] + r[i][k]) * s
        x, y, z = q
    n = math.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    rot = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
           [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
           [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    err = 0.0
    for row in range(3):
        err = max(err, sum(abs(rot[row][col] * scale[col] - cols[col][row]) for col in range(3)))
    return err < 0.00005


def read_glb(data, iss):
    """The JSON and BIN chunks of a GLB, as Khronos's glb_reader.dart; None when it stops."""
    if len(data) < 12:
        iss.error('GLB_UNEXPECTED_END_OF_HEADER', 'Unexpected end of header.',
                  f'byte {len(data)}')
        return None, None
    magic, version, total = struct.unpack_from('<III', data)
    if magic != GLB_MAGIC:
        iss.error('GLB_INVALID_MAGIC', f'Invalid GLB magic value ({magic:#010x}).', 'byte 0')
        return None, None
    if version != 2:
        iss.error('GLB_INVALID_VERSION', f'Invalid GLB version value {version}.', 'byte 4')
        return None, None
    if total <= 12:
        iss.error('GLB_LENGTH_TOO_SMALL', f'Declared GLB length ({total}) is too small.',
                  'byte 8')
    off, number, chunks = 12, 0, {}
    while off != len(data):
        if off == total:
            iss.warning('GLB_EXTRA_DATA', 'Extra data after the end of GLB stream.', f'byte {off}')
            return chunks.get(JSON_CHUNK), chunks.get(BIN_CHUNK)
        if len(data) - off < 8:
            iss.error('GLB_UNEXPECTED_END_OF_CHUNK_HEADER', 'Unexpected end of chunk header.',
                      f'byte {len(data)}')
            return None, None
        length, kind = struct.unpack_from('<II', data, off)
        name = f'{kind:#010x}'
        if length & 3:
            iss.error('GLB_CHUNK_LENGTH_UNALIGNED', f'Length of {name} chunk is not aligned to '
                      '4-byte boundaries.', f'byte {off}')
        if off + 8 + length > total:
            iss.error('GLB_CHUNK_TOO_BIG', f'Chunk ({name}) length ({length}) does not fit total '
                      'GLB length.', f'byte {off}')
        if number == 0 and kind != JSON_CHUNK:
            iss.error('GLB_UNEXPECTED_FIRST_CHUNK', f'First chunk must be of JSON type. Found '
                      f'{name} instead.', f'byte {off}')
        if kind == BIN_CHUNK and number > 1 and BIN_CHUNK not in chunks:
            iss.error('GLB_UNEXPECTED_BIN_CHUNK', 'BIN chunk must be the second chunk.',
                      f'byte {off}')
        keep = False
        if kind in (JSON_CHUNK, BIN_CHUNK):
            if kind == JSON_CHUNK and length == 0:
                iss.error('GLB_EMPTY_CHUNK', f'Chunk ({name}) cannot have zero length.',
                          f'byte {off}')
            if kind in chunks:
                iss.error('GLB_DUPLICATE_CHUNK', f'Chunk of type {name} has already been used.',
                          f'byte {off}')
            else:
                keep = True
        else:
            iss.warning('GLB_UNKNOWN_CHUNK_TYPE', f'Unknown GLB chunk type: {name}.',
                        f'byte {off}')
        off += 8
        number += 1
        if off + length > len(data):
            if length > 0:
                iss.error('GLB_UNEXPECTED_END_OF_CHUNK_DATA', 'Unexpected end of chunk data.',
                          f'byte {len(data)}')
            return None, None
        if keep and (length or off < len(data)):  # Khronos reads an empty chunk at the end
            chunks[kind] = data[off:off + length]
        off += length
    if total != off:
        iss.error('GLB_LENGTH_MISMATCH', f'Declared length ({total}) does not match GLB length '
                  f'({off}).', f'byte {off}')
    return chunks.get(JSON_CHUNK), chunks.get(BIN_CHUNK)


def parse_json(raw, iss):
    def no_constant(name):
        raise ValueError(f'{name} is not JSON')
    try:
        return json.loads(raw.decode('utf-8'), parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError) as e:
        iss.error('INVALID_JSON', f'Invalid JSON data. Parser output: {e}', '')
        return None


def validate(path):
    iss = Issues()
    with open(path, 'rb') as f:
        data = f.read()
    if path.lower().endswith('.gltf'):
        is_glb = False
    elif path.lower().endswith('.glb'):
        is_glb = True
    else:
        is_glb = not data.lstrip()[:1] == b'{'
    bin_chunk = None
    if is_glb:
        raw, bin_chunk = read_glb(data, iss)
    else:
        raw = data
    if raw is None:
        return iss
    root = parse_json(raw, iss)
    if root is not None:
        Validator(iss, path, is_glb, bin_chunk).run(root)
    return iss


def main(argv):
    if len(argv) < 2 or argv[1] in ('-h', '--help') or argv[1].startswith('-'):
        print(__doc__.strip() if len(argv) == 2 and argv[1] in ('-h', '--help')
              else 'Usage: gltf-validate.py FILE.glb...', file=sys.stderr)
        return 0 if len(argv) == 2 and argv[1] in ('-h', '--help') else 2
    failed = False
    for path in argv[1:]:
        try:
            iss = validate(path)
        except OSError as e:
            print(f'{path}: cannot read: {e.strerror}', file=sys.stderr)
            return 2
        print(f'{path}: {iss.errors} errors')
        for line in iss.lines()[:MAX_PRINTED]:
            print(line)
        if len(iss.items) > MAX_PRINTED:
            print(f'  ... and {len(iss.items) - MAX_PRINTED} more')
        failed = failed or iss.errors > 0
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
