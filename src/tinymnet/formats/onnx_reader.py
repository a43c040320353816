"""Parse an ONNX model into a plain, framework-free description.

Needs the optional ``onnx`` package (protobuf bindings only; nothing is executed). Returns
an :class:`OnnxModel` with

* ``nodes``: op_type, domain, input/output names ("" = optional input left out) and the
  attributes as Python values (ints, floats, str, lists, numpy arrays for tensors, nested
  :class:`OnnxGraph` for graph attributes);
* ``tensors``: every constant as a numpy array keyed by name: the initializers *and* the
  outputs of ``Constant`` nodes (PaddlePaddle exports keep all weights in Constant nodes).
  The Constant nodes themselves are left out of ``nodes`` (their names are in
  ``constant_nodes``);
* graph ``inputs``/``outputs`` (initializers are not listed as inputs) with dtype and shape
  (ints for fixed dims, str for symbolic ones, None for unknown).

Tensor sizes are checked against the bytes present before anything is allocated, external
data may only come from files inside the model's folder, and every node input must be
defined before use, so a truncated or corrupt file gives a FormatError.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import FormatError
from ._common import bfloat16_to_float32, file_size, guard, optional_import, prod

__all__ = ["load_onnx", "OnnxModel", "OnnxGraph", "OnnxNode", "OnnxValueInfo"]

# TensorProto.DataType -> (numpy dtype, typed field holding the values when no raw_data)
_TYPES = {
    1: ("float32", "float_data"),
    2: ("uint8", "int32_data"),
    3: ("int8", "int32_data"),
    4: ("uint16", "int32_data"),
    5: ("int16", "int32_data"),
    6: ("int32", "int32_data"),
    7: ("int64", "int64_data"),
    8: ("object", "string_data"),
    9: ("bool", "int32_data"),
    10: ("float16", "int32_data"),  # typed field holds the bit patterns
    11: ("float64", "double_data"),
    12: ("uint32", "uint64_data"),
    13: ("uint64", "uint64_data"),
    14: ("complex64", "float_data"),
    15: ("complex128", "double_data"),
    16: ("bfloat16", "int32_data"),  # widened to float32
}
_MAX_DEPTH = 16


@dataclass
class OnnxValueInfo:
    name: str
    dtype: Optional[str]
    shape: Optional[Tuple[Any, ...]]  # ints, str (symbolic) or None (unknown); None = unranked


@dataclass
class OnnxNode:
    name: str
    op_type: str
    domain: str
    inputs: List[str]
    outputs: List[str]
    attributes: Dict[str, Any] = field(default_factory=dict)


@dataclass
class OnnxGraph:
    name: str
    nodes: List[OnnxNode]
    tensors: Dict[str, np.ndarray]
    inputs: List[OnnxValueInfo]
    outputs: List[OnnxValueInfo]
    value_info: Dict[str, OnnxValueInfo] = field(default_factory=dict)
    constant_nodes: List[str] = field(default_factory=list)


@dataclass
class OnnxModel:
    path: str
    ir_version: int
    opset: Dict[str, int]
    producer_name: str
    producer_version: str
    graph: OnnxGraph

    @property
    def nodes(self) -> List[OnnxNode]:
        return self.graph.nodes

    @property
    def tensors(self) -> Dict[str, np.ndarray]:
        return self.graph.tensors

    @property
    def inputs(self) -> List[OnnxValueInfo]:
        return self.graph.inputs

    @property
    def outputs(self) -> List[OnnxValueInfo]:
        return self.graph.outputs

    def op_histogram(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for n in self.graph.nodes:
            out[n.op_type] = out.get(n.op_type, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


class _Reader:
    def __init__(self, path, onnx_mod):
        self.path = path
        self.onnx = onnx_mod
        self.base_dir = os.path.dirname(os.path.abspath(path))
        self.budget = 0

    def fail(self, msg):
        return FormatError(msg, self.path)

    # -- tensors
    def external(self, t, n_bytes) -> bytes:
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        if not loc or os.path.isabs(loc) or ".." in loc.replace("\\", "/").split("/"):
            raise self.fail(f"tensor '{t.name}': external data location {loc!r} must be a "
                            "relative path inside the model's folder")
        full = os.path.realpath(os.path.join(self.base_dir, loc))
        if os.path.commonpath([full, os.path.realpath(self.base_dir)]) != os.path.realpath(self.base_dir):
            raise self.fail(f"tensor '{t.name}': external data {loc!r} escapes the model's folder")
        try:
            offset = int(info.get("offset", 0))
            length = int(info.get("length", n_bytes))
        except ValueError:
            raise self.fail(f"tensor '{t.name}': bad external data offset/length") from None
        if length != n_bytes:
            raise self.fail(f"tensor '{t.name}': external data length {length}, expected {n_bytes}")
        size = file_size(full)
        if offset < 0 or offset + length > size:
            raise self.fail(f"tensor '{t.name}': external data [{offset}, {offset + length}) "
                            f"outside {loc} ({size} bytes)")
        with open(full, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        if len(data) != length:
            raise self.fail(f"tensor '{t.name}': external file {loc} truncated")
        return data

    def tensor(self, t, where="") -> np.ndarray:
        label = t.name or where or "<unnamed>"
        if t.data_type not in _TYPES:
            raise self.fail(f"tensor '{label}': unsupported ONNX data type {t.data_type}")
        if t.HasField("segment"):
            raise self.fail(f"tensor '{label}': segmented tensors are not supported")
        dtype_name, typed = _TYPES[t.data_type]
        dims = tuple(int(d) for d in t.dims)
        if any(d < 0 for d in dims) or len(dims) > 32:
            raise self.fail(f"tensor '{label}': invalid dims {dims}")
        n = prod(dims)
        if dtype_name == "object":
            vals = list(t.string_data)
            if len(vals) != n:
                raise self.fail(f"tensor '{label}': {len(vals)} strings for shape {dims}")
            out = np.empty(n, dtype=object)
            out[:] = vals
            return out.reshape(dims)
        np_name = {"bfloat16": "uint16", "bool": "uint8"}.get(dtype_name, dtype_name)
        dt = np.dtype(np_name).newbyteorder("<") if np.dtype(np_name).itemsize > 1 else np.dtype(np_name)
        n_bytes = n * dt.itemsize
        if t.data_location == 1:  # EXTERNAL
            self.budget += n_bytes
            arr = np.frombuffer(self.external(t, n_bytes), dtype=dt)
        elif len(t.raw_data):
            if len(t.raw_data) != n_bytes:
                raise self.fail(f"tensor '{label}': raw_data has {len(t.raw_data)} bytes but "
                                f"{dtype_name} {dims} needs {n_bytes}")
            arr = np.frombuffer(t.raw_data, dtype=dt)
        else:
            vals = getattr(t, typed)
            want = 2 * n if dtype_name.startswith("complex") else n
            if len(vals) != want:
                raise self.fail(f"tensor '{label}': {len(vals)} values in {typed} for "
                                f"{dtype_name} {dims}")
            if dtype_name in ("float16", "bfloat16"):
                arr = np.array(vals, dtype=np.int64).astype(np.uint16)
                if dtype_name == "float16":
                    arr = arr.view(np.float16)
            elif dtype_name.startswith("complex"):
                base = np.float32 if dtype_name == "complex64" else np.float64
                arr = np.array(vals, dtype=base).view(dtype_name)
            else:
                arr = np.array(vals, dtype=np.int64 if typed in ("int32_data", "int64_data")
                               else np.uint64 if typed == "uint64_data" else dt.newbyteorder("="))
                arr = arr.astype(np_name)
        arr = arr.reshape(dims)
        if dtype_name == "bfloat16":
            return bfloat16_to_float32(arr.astype(np.uint16))
        if dtype_name == "bool":
            return arr != 0
        return np.array(arr, dtype=np.dtype(np_name), copy=True)

    # -- attributes
    def attribute(self, a, where, depth, scope=frozenset()):
        A = self.onnx.AttributeProto
        t = a.type
        if t == A.FLOAT:
            return float(a.f)
        if t == A.INT:
            return int(a.i)
        if t == A.STRING:
            return _text(a.s)
        if t == A.TENSOR:
            return self.tensor(a.t, f"{where}.{a.name}")
        if t == A.GRAPH:
            return self.graph(a.g, depth + 1, scope)
        if t == A.FLOATS:
            return [float(v) for v in a.floats]
        if t == A.INTS:
            return [int(v) for v in a.ints]
        if t == A.STRINGS:
            return [_text(v) for v in a.strings]
        if t == A.TENSORS:
            return [self.tensor(v, f"{where}.{a.name}") for v in a.tensors]
        if t == A.GRAPHS:
            return [self.graph(g, depth + 1, scope) for g in a.graphs]
        if t in (A.SPARSE_TENSOR, A.SPARSE_TENSORS):
            raise self.fail(f"{where}: sparse tensor attribute '{a.name}' is not supported")
        if a.ref_attr_name:
            return {"ref_attr_name": a.ref_attr_name}
        return None  # TYPE_PROTO(S) or UNDEFINED: nothing an image model needs

    def constant(self, node, attrs, where) -> np.ndarray:
        if len(attrs) != 1:
            raise self.fail(f"{where}: Constant node needs exactly one value attribute, "
                            f"got {sorted(attrs)}")
        (key, v), = attrs.items()
        if key == "value":
            return v
        if key == "value_float":
            return np.array(v, dtype=np.float32)
        if key == "value_floats":
            return np.array(v, dtype=np.float32)
        if key in ("value_int", "value_ints"):
            return np.array(v, dtype=np.int64)
        if key in ("value_string", "value_strings"):
            return np.array(v, dtype=object)
        raise self.fail(f"{where}: unsupported Constant attribute '{key}'")

    # -- graphs
    def value_info(self, vi) -> OnnxValueInfo:
        dtype = shape = None
        if vi.type.HasField("tensor_type"):
            tt = vi.type.tensor_type
            if tt.elem_type in _TYPES:
                dtype = _TYPES[tt.elem_type][0]
            elif tt.elem_type:
                dtype = f"onnx_type_{tt.elem_type}"
            if tt.HasField("shape"):
                dims = []
                for d in tt.shape.dim:
                    kind = d.WhichOneof("value")
                    dims.append(int(d.dim_value) if kind == "dim_value"
                                else d.dim_param if kind == "dim_param" else None)
                shape = tuple(dims)
        return OnnxValueInfo(name=vi.name, dtype=dtype, shape=shape)

    def graph(self, g, depth=0, outer=frozenset()) -> OnnxGraph:
        if depth > _MAX_DEPTH:
            raise self.fail("graphs nested too deeply")
        tensors: Dict[str, np.ndarray] = {}
        for init in g.initializer:
            if not init.name:
                raise self.fail("initializer without a name")
            tensors[init.name] = self.tensor(init)
        if len(g.sparse_initializer):
            raise self.fail("sparse initializers are not supported")
        inputs = [self.value_info(vi) for vi in g.input if vi.name not in tensors]
        defined = set(outer) | set(tensors) | {vi.name for vi in inputs}
        nodes: List[OnnxNode] = []
        const_nodes: List[str] = []
        for i, n in enumerate(g.node):
            where = f"node {i} ({n.op_type} '{n.name}')"
            if not n.op_type:
                raise self.fail(f"node {i} has no op_type")
            attrs = {a.name: self.attribute(a, where, depth, frozenset(defined)) for a in n.attribute}
            for name in n.input:
                if name and name not in defined:
                    raise self.fail(f"{where}: input '{name}' is not defined before use "
                                    "(truncated or not topologically sorted)")
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                if len(n.output) != 1:
                    raise self.fail(f"{where}: Constant node must have one output")
                tensors[n.output[0]] = self.constant(n, attrs, where)
                const_nodes.append(n.name or n.output[0])
            else:
                nodes.append(OnnxNode(name=n.name, op_type=n.op_type, domain=n.domain,
                                      inputs=list(n.input), outputs=list(n.output),
                                      attributes=attrs))
            defined.update(o for o in n.output if o)
        outputs = [self.value_info(vi) for vi in g.output]
        for o in outputs:
            if o.name not in defined:
                raise self.fail(f"graph output '{o.name}' is never produced (truncated file?)")
        return OnnxGraph(name=g.name, nodes=nodes, tensors=tensors, inputs=inputs,
                         outputs=outputs,
                         value_info={vi.name: self.value_info(vi) for vi in g.value_info},
                         constant_nodes=const_nodes)


def _check_strings(msg, path):
    """protobuf (upb) hands out a string field that is not valid UTF-8 as bytes: refuse such
    a file here, once, rather than type-check every name read later."""
    for fd, value in msg.ListFields():
        if fd.type == fd.TYPE_STRING:
            for v in [value] if isinstance(value, (str, bytes)) else value:
                if not isinstance(v, str):
                    raise FormatError(f"{msg.DESCRIPTOR.name}.{fd.name} is not valid UTF-8: "
                                      f"{bytes(v[:40])!r}", path)
        elif fd.type == fd.TYPE_MESSAGE:
            for m in [value] if hasattr(value, "ListFields") else value:
                _check_strings(m, path)


def _text(b) -> str:
    if isinstance(b, bytes):
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return b.decode("latin1")
    return str(b)


def load_onnx(path) -> OnnxModel:
    """Parse an .onnx file (see the module docstring for what is returned)."""
    path = os.fspath(path)
    onnx = optional_import("onnx", path, "ONNX files")
    size = file_size(path)
    if size == 0:
        raise FormatError("file is empty", path)
    with guard(path, "ONNX model"):
        try:
            with open(path, "rb") as f:
                proto = onnx.ModelProto()
                proto.ParseFromString(f.read())
        except FormatError:
            raise
        except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
            raise FormatError(f"not a valid ONNX protobuf: {exc}", path) from exc
        if not proto.HasField("graph") or not len(proto.graph.node):
            raise FormatError("ONNX model has no graph nodes (not an ONNX file, or truncated)", path)
        _check_strings(proto, path)
        reader = _Reader(path, onnx)
        graph = reader.graph(proto.graph)
        opset = {imp.domain or "ai.onnx": int(imp.version) for imp in proto.opset_import}
        return OnnxModel(path=path, ir_version=int(proto.ir_version), opset=opset,
                         producer_name=proto.producer_name,
                         producer_version=proto.producer_version, graph=graph)
