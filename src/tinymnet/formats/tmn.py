"""The `.tmn` model file: one graph, its weights and what is needed to use it.

Layout (all integers little-endian)::

    0   8 bytes  magic b"TINYMNET"
    8   u32      format version (1)
    12  u32      flags (0)
    16  u64      header size in bytes (H)
    24  u64      data offset (64-aligned, >= 64 + H)
    32  u64      data size in bytes (D)
    40  u32      CRC-32 (zlib) of the header bytes followed by the data bytes
    44  20 bytes zero
    64  H bytes  header: UTF-8 JSON, see below
    ... zero padding up to the data offset
    data: tensors, each starting at a 64-byte aligned offset relative to the data offset

The JSON header holds ``graph`` (the op list with every attribute, from
:func:`tinymnet.graph.graph_to_dict`), ``tensors`` (name -> dtype, shape, offset, nbytes and,
for 8-bit weights, the names of their per-channel ``scale`` / ``zero_point`` tensors and the
channel ``axis``; for float32 GEMM weights stored already packed, ``gemm_panels``: the panel
width, see :func:`pack_gemm_panels`), ``labels`` (class names or null), ``preprocess`` (the
input recipe) and ``provenance`` (where the weights came from) and, when the stored graph is
already the one ``tinymnet.load`` compiles (:func:`tinymnet.passes.optimize` ran before saving),
``optimized``: ``{"output_shape": [null, ...]}`` (the output's shape); ``load`` then builds the
C++ plan straight from the mapped file, without the graph passes and without a float32 copy of
8-bit weights (older readers ignore the key). Such a file may also hold ``source_graph``: the
:func:`~tinymnet.graph.graph_to_dict` JSON of the graph before the passes, as one string (the
loader skips it cheaply), so ``tinymnet info`` still describes the model as converted
(:func:`load_source_graph`). Tensors are stored in the graph's canonical
layouts: conv weights (Cout, Cin/groups, KH, KW), linear (out, in), float32, or uint8/int8 with
``real = (q - zero_point) * scale`` along ``axis``. Float32 tensors are read through mmap
without a copy; 8-bit tensors are dequantized at load.
"""
from __future__ import annotations

import json
import math
import mmap
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional

import numpy as np

from ..errors import FormatError

MAGIC = b"TINYMNET"
VERSION = 1
_FIXED = struct.Struct("<8sIIQQQI20x")  # 64 bytes
ALIGN = 64
_DTYPES = {"float32": np.float32, "uint8": np.uint8, "int8": np.int8, "int32": np.int32}
MAX_HEADER_BYTES = 64 << 20


@dataclass
class QuantizedTensor:
    """8-bit weights with per-channel affine quantization: real = (q - zero_point) * scale."""

    q: np.ndarray            # uint8 or int8
    scale: np.ndarray        # float32, one per channel along `axis` (or one in all)
    zero_point: np.ndarray   # int32, same shape as scale
    axis: int = 0

    def dequantize(self) -> np.ndarray:
        shape = [1] * self.q.ndim
        if self.scale.size > 1:
            shape[self.axis] = -1
        scale = self.scale.astype(np.float32).reshape(shape)
        zp = self.zero_point.astype(np.float32).reshape(shape)
        return ((self.q.astype(np.float32) - zp) * scale).astype(np.float32)


def quantize_per_channel(w: np.ndarray, axis: int = 0) -> QuantizedTensor:
    """Asymmetric uint8 per-channel quantization of a float weight (for shipping small files)."""
    w = np.asarray(w, np.float32)
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    lo = np.minimum(moved.min(axis=1), 0.0)
    hi = np.maximum(moved.max(axis=1), 0.0)
    scale = np.where(hi > lo, (hi - lo) / 255.0, 1.0).astype(np.float32)
    zp = np.clip(np.round(-lo / scale), 0, 255).astype(np.int32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)) + zp.reshape(shape), 0, 255).astype(np.uint8)
    return QuantizedTensor(q, scale, zp, axis)


@dataclass
class TmnModel:
    """What a .tmn file holds (the graph's params are dequantized float32 arrays)."""

    graph: "object"
    labels: Optional[list] = None
    preprocess: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    path: Optional[str] = None
    crc: Optional[int] = None  # the CRC-32 stored in (and checked against) the file


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


GEMM_PANEL_WIDTHS = (8, 16, 32)  # the kernels' panel widths: scalar, AVX2 / NEON, AVX-512


def _gemm_panel_width(n: int, nr: int, n0: int) -> int:
    return nr // 2 if n - n0 <= nr // 2 else nr  # as gemm_panel_width in csrc/kernels/kernels.h


def pack_gemm_panels(w: np.ndarray, bias: Optional[np.ndarray], nr: int) -> np.ndarray:
    """A GEMM weight W (n, k) with its bias (None: zeros) in the kernels' packed layout for
    panel width ``nr`` (csrc/kernels/kernels.h): ceil(n / nr) panels of (k + 1) rows, a bias
    row then W transposed, zero padded to the panel's width; the last panel is nr / 2 wide
    when it covers at most nr / 2 columns."""
    w = np.asarray(w, np.float32)
    n, k = w.shape
    panels = []
    for n0 in range(0, n, nr):
        width = _gemm_panel_width(n, nr, n0)
        cols = min(width, n - n0)
        block = np.zeros((k + 1, width), np.float32)
        if bias is not None:
            block[0, :cols] = bias[n0:n0 + cols]
        block[1:, :cols] = w[n0:n0 + cols].T
        panels.append(block.reshape(-1))
    return np.concatenate(panels)


def unpack_gemm_panels(packed: np.ndarray, n: int, k: int, nr: int) -> np.ndarray:
    """W (n, k) back from :func:`pack_gemm_panels`'s layout."""
    w = np.empty((n, k), np.float32)
    offset = 0
    for n0 in range(0, n, nr):
        width = _gemm_panel_width(n, nr, n0)
        cols = min(width, n - n0)
        w[n0:n0 + cols] = packed[offset:offset + (k + 1) * width].reshape(k + 1, width)[1:, :cols].T
        offset += (k + 1) * width
    return w


def packed_gemm_floats(n: int, k: int, nr: int) -> int:
    last = (n - 1) // nr * nr
    return (last + _gemm_panel_width(n, nr, last)) * (k + 1)


def _gemm_weights(graph) -> Dict[str, Optional[str]]:
    """weight name -> bias name (or None) of the float GEMMs the C++ plan packs: linear nodes,
    1x1 stride-1 convs without groups or padding and squeeze-excite FCs; only weights no
    other node reads."""
    readers: Dict[str, int] = {}
    for node in graph.nodes:
        for name in node.params.values():
            readers[name] = readers.get(name, 0) + 1
    out = {}
    for node in graph.nodes:
        a, p = node.attrs, node.params
        if node.op == "conv2d":
            pairs = [("weight", "bias")] if (
                tuple(a["stride"]) == (1, 1) and a["groups"] == 1
                and (a["padding"] == "same" or tuple(a["padding"]) == (0, 0, 0, 0))) else []
        else:
            pairs = {"linear": [("weight", "bias")],
                     "squeeze_excite": [("w1", "b1"), ("w2", "b2")]}.get(node.op, [])
        for w, b in pairs:
            shape = np.shape(graph.params[p[w]])
            if readers[p[w]] == 1 and (len(shape) == 2 or (len(shape) == 4
                                                           and shape[2:] == (1, 1))):
                out[p[w]] = p.get(b)
    return out


def save_tmn(path, graph, *, labels=None, preprocess=None, provenance=None,
             quantized: Optional[Mapping[str, QuantizedTensor]] = None,
             optimize: bool = False, keep_source: bool = True,
             gemm_panels=None) -> None:
    """Write `graph` (params as float32) to `path`; params named in `quantized` are stored as
    8 bits instead (their float value in the graph is ignored).

    ``optimize``: store the graph after :func:`tinymnet.passes.optimize` (BN folded,
    activations and residual adds fused), marked ``optimized`` in the header, so
    ``tinymnet.load`` builds its plan from the mapped file alone. An 8-bit weight a pass
    rewrote (a folded BatchNorm) is stored as float32. ``keep_source`` (with ``optimize``):
    also store the graph as given, without its weights (``source_graph``), for
    :func:`load_source_graph` / ``tinymnet info``.

    ``gemm_panels`` (with ``optimize``): store the float32 weights of 1x1 convs, linear
    layers and squeeze-excite FCs already packed for the GEMM kernels of this panel width
    (8: scalar, 16: AVX2 and NEON, 32: AVX-512; ``"native"``: this CPU's), so
    ``tinymnet.load`` uses them in place from the mapped file instead of packing a copy
    (loads faster, and processes loading the same file share those pages). Such a file
    loads on any CPU (other widths repack it); it is not byte-identical across CPUs with
    "native". None: canonical layouts only."""
    from ..graph import graph_to_dict, infer_shapes

    if gemm_panels == "native":
        from .. import _C

        gemm_panels = _C.gemm_panel_width()
    if gemm_panels is not None and (isinstance(gemm_panels, bool)
                                    or gemm_panels not in GEMM_PANEL_WIDTHS or not optimize):
        raise ValueError(f"gemm_panels must be None, 'native' or one of {GEMM_PANEL_WIDTHS}, "
                         f"and needs optimize=True; got {gemm_panels!r}")

    quantized = dict(quantized or {})
    extra = {}
    if optimize:
        from ..passes import optimize as run_passes

        opt = run_passes(graph)
        # Passes share the arrays they leave alone: those weights are still the 8-bit ones.
        quantized = {k: q for k, q in quantized.items()
                     if k in opt.params and opt.params[k] is graph.params.get(k)}
        extra["optimized"] = {"output_shape": list(infer_shapes(opt)[opt.outputs[0]])}
        if keep_source and opt is not graph:
            extra["source_graph"] = json.dumps(graph_to_dict(graph), separators=(",", ":"),
                                               sort_keys=True)
        graph = opt
    gdict = graph_to_dict(graph)
    gemms = _gemm_weights(graph) if gemm_panels else {}
    blobs = []  # (name, array) in data order
    tensors: Dict[str, dict] = {}
    offset = 0

    def put(name, array, extra=None, shape=None):
        nonlocal offset
        array = np.ascontiguousarray(array)
        dtype = str(array.dtype)
        if dtype not in _DTYPES:
            raise ValueError(f"tensor {name!r}: dtype {dtype} cannot be stored in .tmn")
        offset = _align(offset)
        tensors[name] = {"dtype": dtype, "shape": list(array.shape if shape is None else shape),
                         "offset": offset, "nbytes": int(array.nbytes), **(extra or {})}
        blobs.append((offset, array.astype(array.dtype.newbyteorder("<"), copy=False)))
        offset += array.nbytes

    for p in gdict["params"]:
        name = p["name"]
        if name in quantized:
            qt = quantized[name]
            if tuple(qt.q.shape) != tuple(p["shape"]):
                raise ValueError(f"quantized tensor {name!r} has shape {qt.q.shape}, the graph "
                                 f"expects {tuple(p['shape'])}")
            put(name + "#scale", np.asarray(qt.scale, np.float32).reshape(-1))
            put(name + "#zero_point", np.asarray(qt.zero_point, np.int32).reshape(-1))
            put(name, qt.q, {"scale": name + "#scale", "zero_point": name + "#zero_point",
                             "axis": int(qt.axis)})
        elif name in gemms:
            w = np.asarray(graph.params[name], np.float32)
            bias = gemms[name]
            packed = pack_gemm_panels(w.reshape(w.shape[0], -1), None if bias is None else
                                      np.asarray(graph.params[bias], np.float32), gemm_panels)
            put(name, packed, {"gemm_panels": gemm_panels}, shape=w.shape)
        else:
            put(name, np.asarray(graph.params[name], np.float32))

    header = json.dumps({
        "graph": gdict, "tensors": tensors, "labels": labels,
        "preprocess": preprocess or {}, "provenance": provenance or {}, **extra,
    }, separators=(",", ":"), sort_keys=True).encode("utf-8")
    data_offset = _align(_FIXED.size + len(header))
    data = bytearray(_align(offset) if offset else 0)
    for off, array in blobs:
        data[off:off + array.nbytes] = array.tobytes()
    crc = zlib.crc32(data, zlib.crc32(header)) & 0xFFFFFFFF
    fixed = _FIXED.pack(MAGIC, VERSION, 0, len(header), data_offset, len(data), crc)
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(fixed)
        f.write(header)
        f.write(b"\0" * (data_offset - _FIXED.size - len(header)))
        f.write(data)
    os.replace(tmp, path)  # never leave a half-written model under the real name


def _read_tensor(path, buf, data_offset, data_size, name, meta):
    try:
        dtype = _DTYPES[meta["dtype"]]
        shape = tuple(int(s) for s in meta["shape"])
        off, nbytes = int(meta["offset"]), int(meta["nbytes"])
        nr = meta.get("gemm_panels")
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
        raise FormatError(f"tensor {name!r} has a malformed entry in the header", path) from None
    if min(shape, default=1) < 0 or off < 0 or off % ALIGN:
        raise FormatError(f"tensor {name!r} has a bad shape or offset", path)
    if nr is not None:  # a float32 GEMM weight (n, k) or (n, k, 1, 1) packed in panels
        if (type(nr) is not int or nr not in GEMM_PANEL_WIDTHS or dtype is not np.float32
                or "scale" in meta or not (len(shape) == 2 or (len(shape) == 4
                                                               and shape[2:] == (1, 1)))
                or math.prod(shape) == 0 or max(shape[:2]) >= 2**31):
            raise FormatError(f"tensor {name!r} has a malformed gemm_panels entry", path)
        floats = packed_gemm_floats(shape[0], shape[1], nr)
    else:
        floats = math.prod(shape)  # exact: int64 could wrap
    if floats * np.dtype(dtype).itemsize != nbytes:
        raise FormatError(f"tensor {name!r}: shape {shape} does not match {nbytes} bytes", path)
    if off + nbytes > data_size:
        raise FormatError(f"tensor {name!r} lies outside the file's data (truncated?)", path)
    array = np.frombuffer(buf, dtype=np.dtype(dtype).newbyteorder("<"), count=floats,
                          offset=data_offset + off)
    if nr is not None:
        return unpack_gemm_panels(array, shape[0], shape[1], nr).reshape(shape)
    return array.reshape(shape)


def load_tmn(path, verify: bool = True) -> TmnModel:
    """Read a .tmn file. Float32 weights are zero-copy views of a read-only mmap."""
    from ..graph import GraphError, graph_from_dict

    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < _FIXED.size:
                raise FormatError(f"file is {size} bytes, too short for a .tmn header", path)
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}", path) from None
    magic, version, _flags, hsize, data_offset, data_size, crc = _FIXED.unpack_from(buf, 0)
    if magic != MAGIC:
        raise FormatError("not a .tmn file (bad magic)", path)
    if version != VERSION:
        raise FormatError(f".tmn version {version} is not supported (this tinymnet reads "
                          f"version {VERSION}); convert the model again", path)
    if (hsize > MAX_HEADER_BYTES or data_offset % ALIGN or data_offset < _FIXED.size + hsize
            or data_offset + data_size > size):
        raise FormatError(f"header sizes do not fit the file ({size} bytes): truncated or "
                          "corrupt", path)
    header_bytes = buf[_FIXED.size:_FIXED.size + hsize]
    if verify:
        actual = zlib.crc32(memoryview(buf)[data_offset:data_offset + data_size],
                            zlib.crc32(header_bytes)) & 0xFFFFFFFF
        if actual != crc:
            raise FormatError(f"checksum mismatch (stored {crc:08x}, computed {actual:08x}): "
                              "the file is corrupt", path)
    try:
        header = json.loads(header_bytes.decode("utf-8"))
        tensors = header["tensors"]
        gdict = header["graph"]
        if not isinstance(tensors, dict) or not isinstance(gdict, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError, RecursionError):
        raise FormatError("the JSON header is malformed", path) from None

    params = {}
    for name, meta in tensors.items():
        if "#" in name:
            continue  # quantization parameters, read with their tensor
        array = _read_tensor(path, buf, data_offset, data_size, name, meta)
        if "scale" in meta:
            try:
                qnames = (meta["scale"], meta["zero_point"])
                qmetas = [tensors.get(q, {}) for q in qnames]
                axis = int(meta.get("axis", 0))
            except (KeyError, TypeError, ValueError, OverflowError):
                raise FormatError(f"tensor {name!r} has malformed quantization parameters",
                                  path) from None
            scale, zp = (_read_tensor(path, buf, data_offset, data_size, q, m)
                         for q, m in zip(qnames, qmetas))
            if not (0 <= axis < max(array.ndim, 1)) or scale.shape != zp.shape or (
                    scale.size not in (1, array.shape[axis] if array.ndim else 1)):
                raise FormatError(f"tensor {name!r} has inconsistent quantization parameters",
                                  path)
            array = QuantizedTensor(array, scale, zp, axis).dequantize()
        elif array.dtype != np.float32:
            raise FormatError(f"tensor {name!r} is {array.dtype} without quantization "
                              "parameters", path)
        params[name] = array
    try:
        graph = graph_from_dict(gdict, params)
    except (GraphError, KeyError, TypeError, ValueError) as e:
        raise FormatError(f"the stored graph is invalid: {e}", path) from None
    return TmnModel(graph, header.get("labels"), header.get("preprocess") or {},
                    header.get("provenance") or {}, path, crc)


def load_source_graph(path):
    """The graph a .tmn file was converted from, for describing it (``tinymnet info``): the
    ``source_graph`` an optimised file keeps (before BN folding and fusion; its params are
    zeros of the stored shapes: no weights are read), else the stored graph with its
    weights."""
    from ..bundled import read_tmn_header
    from ..graph import GraphError, graph_from_dict

    path = os.fspath(path)
    text = read_tmn_header(path).get("source_graph")
    if text is None:
        return load_tmn(path).graph
    try:
        gdict = json.loads(text)
        params = {p["name"]: np.zeros(tuple(int(d) for d in p["shape"]), np.float32)
                  for p in gdict["params"]}
        return graph_from_dict(gdict, params)
    except (GraphError, KeyError, TypeError, ValueError, RecursionError, MemoryError) as e:
        raise FormatError(f"the stored source graph is invalid: {e}", path) from None
