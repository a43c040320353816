"""Parse a ``.tflite`` flatbuffer into a plain, framework-free description.

Needs the optional ``tflite`` package (generated flatbuffers accessors, which pulls in
``flatbuffers``). The result holds Python/numpy values only:

* tensors: name, shape, dtype, quantization (scale / zero_point arrays and
  quantized_dimension) and, for constants, the stored data (``raw``) and ``data``, which is
  dequantized to float32 as ``(q - zero_point) * scale`` (per channel along
  ``quantized_dimension``) when the tensor is quantized, else equal to ``raw``;
* operators: the builtin name ("CONV_2D", "DEPTHWISE_CONV_2D", "HARD_SWISH", ...; custom
  ops are "CUSTOM" with ``custom_code`` set, unknown builtin codes "UNKNOWN_<code>"),
  input/output tensor indices (-1 = optional input left out) and the builtin options as a
  dict with snake_case keys (``padding`` "SAME"/"VALID", ``stride_w``, ``stride_h``,
  ``dilation_w_factor``, ``fused_activation_function`` "NONE"/"RELU6"/...,
  ``depth_multiplier``, ``filter_width``, ``keep_dims``, ...);
* graph inputs/outputs of every subgraph.

Layouts are TFLite's: activations NHWC, conv weights OHWI, depthwise weights 1HWC (C = in
channels * depth multiplier), fully connected weights (out, in).

Unsupported ops are *not* an error here (the importer decides). Every count, index and byte
range is checked against the file before it is used, so a corrupt file gives a FormatError.
"""
from __future__ import annotations

import collections
import inspect
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import FormatError
from ._common import guard, optional_import, prod, read_bytes

__all__ = ["load_tflite", "TFLiteModel", "TFLiteSubgraph", "TFLiteTensor", "TFLiteOperator"]

_NP_TYPES = {
    "FLOAT32": "float32", "FLOAT16": "float16", "FLOAT64": "float64",
    "INT32": "int32", "UINT8": "uint8", "INT64": "int64", "BOOL": "bool", "INT16": "int16",
    "INT8": "int8", "UINT64": "uint64", "UINT32": "uint32", "UINT16": "uint16",
    "COMPLEX64": "complex64", "COMPLEX128": "complex128",
}
_QUANTIZED_TYPES = ("uint8", "int8", "int16", "int32", "int64")


@dataclass
class TFLiteTensor:
    index: int
    name: str
    shape: Tuple[int, ...]
    dtype: str  # numpy dtype name, or the TFLite type name in lower case ("int4", "string")
    buffer: int
    shape_signature: Optional[Tuple[int, ...]] = None
    scale: Optional[np.ndarray] = None  # float32, empty -> None
    zero_point: Optional[np.ndarray] = None  # int64
    quantized_dimension: int = 0
    raw: Optional[np.ndarray] = None  # constant data as stored (shape, dtype)
    data: Optional[np.ndarray] = None  # raw, dequantized to float32 when quantized
    is_variable: bool = False
    sparse: bool = False
    # An empty shape with has_rank False means "unknown" in TFLite (some converters leave
    # activation shapes out, e.g. mobilenet_edgetpu); old files also use it for scalars.
    has_rank: bool = False

    @property
    def shape_known(self) -> bool:
        return bool(self.shape) or self.has_rank or self.raw is not None

    @property
    def quantized(self) -> bool:
        return self.scale is not None

    @property
    def is_constant(self) -> bool:
        return self.raw is not None


@dataclass
class TFLiteOperator:
    index: int
    name: str
    opcode: int
    version: int
    inputs: Tuple[int, ...]
    outputs: Tuple[int, ...]
    options: Dict[str, Any] = field(default_factory=dict)
    custom_code: Optional[str] = None
    custom_options: Optional[bytes] = None
    intermediates: Tuple[int, ...] = ()


@dataclass
class TFLiteSubgraph:
    name: str
    tensors: List[TFLiteTensor]
    operators: List[TFLiteOperator]
    inputs: Tuple[int, ...]
    outputs: Tuple[int, ...]


@dataclass
class TFLiteModel:
    path: str
    version: int
    description: str
    subgraphs: List[TFLiteSubgraph]
    metadata: Dict[str, int] = field(default_factory=dict)  # name -> buffer index

    # The main (first) subgraph, which is what an image classifier consists of.
    @property
    def tensors(self) -> List[TFLiteTensor]:
        return self.subgraphs[0].tensors

    @property
    def operators(self) -> List[TFLiteOperator]:
        return self.subgraphs[0].operators

    @property
    def inputs(self) -> Tuple[int, ...]:
        return self.subgraphs[0].inputs

    @property
    def outputs(self) -> Tuple[int, ...]:
        return self.subgraphs[0].outputs

    def op_histogram(self) -> Dict[str, int]:
        c = collections.Counter(
            op.name if op.custom_code is None else f"CUSTOM:{op.custom_code}"
            for sg in self.subgraphs for op in sg.operators)
        return dict(c.most_common())


# ---------------------------------------------------------------------------------------
# enum helpers


def _enum_names(cls) -> Dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def _snake(name: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    s = re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", s)
    return s.lower()


class _Schema:
    """Lookup tables built once from the tflite package."""

    def __init__(self, tfl):
        self.tfl = tfl
        self.op_names = dict(getattr(tfl, "BUILTIN_OPCODE2NAME", {})) or _enum_names(tfl.BuiltinOperator)
        self.type_names = _enum_names(tfl.TensorType)
        self.options_names = _enum_names(tfl.BuiltinOptions)
        self.options2_names = _enum_names(tfl.BuiltinOptions2) if hasattr(tfl, "BuiltinOptions2") else {}
        tensor_types = {k: v.lower() for k, v in self.type_names.items()}
        self.enum_fields = {
            "padding": _enum_names(tfl.Padding),
            "fused_activation_function": _enum_names(tfl.ActivationFunctionType),
            "in_data_type": tensor_types,
            "out_data_type": tensor_types,
            "output_type": tensor_types,
            "out_type": tensor_types,
            "idx_out_type": tensor_types,
            "quantized_bias_type": tensor_types,
        }
        if hasattr(tfl, "MirrorPadMode"):
            self.enum_fields["mode"] = _enum_names(tfl.MirrorPadMode)
        self._fields: Dict[type, list] = {}

    def option_fields(self, cls):
        """[(key, method, is_vector)] of the scalar and vector getters of an options class."""
        got = self._fields.get(cls)
        if got is not None:
            return got
        out = []
        members = {k: v for k, v in vars(cls).items() if inspect.isfunction(v)}
        for name, fn in members.items():
            if name in ("Init",) or name.startswith(("GetRootAs", "Start", "End")) or \
                    name.endswith(("BufferHasIdentifier", "Length", "IsNone")):
                continue
            params = list(inspect.signature(fn).parameters)
            if name.endswith("AsNumpy") and len(params) == 1:
                out.append((_snake(name[: -len("AsNumpy")]), fn, True))
            elif len(params) == 1 and name + "AsNumpy" not in members:
                out.append((_snake(name), fn, False))
        self._fields[cls] = out
        return out


_SCHEMA: Optional[_Schema] = None


def _schema(path) -> _Schema:
    global _SCHEMA
    if _SCHEMA is None:
        tfl = optional_import("tflite", path, "TFLite files", "tflite flatbuffers")
        _SCHEMA = _Schema(tfl)
    return _SCHEMA


# ---------------------------------------------------------------------------------------
# parsing


class _Reader:
    def __init__(self, path, buf: bytes, schema: _Schema):
        self.path, self.buf, self.s, self.tfl = path, buf, schema, schema.tfl

    def fail(self, msg):
        return FormatError(msg, self.path)

    def count(self, n, what, elem=4) -> int:
        n = int(n)
        if n < 0 or n * elem > len(self.buf):
            raise self.fail(f"{what}: count {n} is impossible for a {len(self.buf)}-byte file")
        return n

    def ints(self, arr, what) -> Tuple[int, ...]:
        if isinstance(arr, int):  # accessor returns 0 for an absent vector
            return ()
        if len(arr) * 4 > len(self.buf):
            raise self.fail(f"{what}: vector too long")
        return tuple(int(v) for v in arr)

    def text(self, b) -> str:
        if b is None:
            return ""
        return b.decode("utf-8", errors="replace") if isinstance(b, (bytes, bytearray)) else str(b)

    # -- buffers
    def buffer_bytes(self, model, index, nbuf) -> Optional[np.ndarray]:
        if index == 0:
            return None
        if not 0 <= index < nbuf:
            raise self.fail(f"buffer index {index} out of range (model has {nbuf})")
        b = model.Buffers(index)
        if b is None:
            return None
        offset = int(b.Offset()) if hasattr(b, "Offset") else 0
        if offset > 1:  # models > 2 GB keep data after the flatbuffer
            size = int(b.Size())
            if size < 0 or offset + size > len(self.buf):
                raise self.fail(f"buffer {index}: data [{offset}, {offset + size}) lies outside the file")
            return np.frombuffer(self.buf, dtype=np.uint8, count=size, offset=offset)
        n = self.count(b.DataLength(), f"buffer {index}", elem=1)
        if n == 0:
            return None
        data = b.DataAsNumpy()
        if isinstance(data, int) or len(data) != n:
            raise self.fail(f"buffer {index}: data vector unreadable")
        return data

    # -- tensors
    def tensor(self, model, sg_i, i, t, nbuf) -> TFLiteTensor:
        where = f"subgraph {sg_i} tensor {i}"
        if t is None:
            raise self.fail(f"{where}: missing")
        name = self.text(t.Name())
        shape = self.ints(t.ShapeAsNumpy(), f"{where} shape")
        sig = t.ShapeSignatureAsNumpy()
        sig = None if isinstance(sig, int) else self.ints(sig, f"{where} shape_signature")
        tcode = int(t.Type())
        tname = self.s.type_names.get(tcode, f"TYPE_{tcode}")
        dtype = _NP_TYPES.get(tname, tname.lower())
        out = TFLiteTensor(index=i, name=name, shape=shape, dtype=dtype, buffer=int(t.Buffer()),
                           shape_signature=sig, is_variable=bool(t.IsVariable()),
                           sparse=t.Sparsity() is not None,
                           has_rank=bool(t.HasRank()) if hasattr(t, "HasRank") else False)
        q = t.Quantization()
        if q is not None:
            scale = q.ScaleAsNumpy()
            if not isinstance(scale, int) and len(scale):
                zp = q.ZeroPointAsNumpy()
                zp = np.zeros(1, np.int64) if isinstance(zp, int) or not len(zp) else np.array(zp, np.int64)
                out.scale = np.array(scale, dtype=np.float32)
                out.zero_point = zp
                out.quantized_dimension = int(q.QuantizedDimension())
                self.check_quant(out, where)
        raw = self.buffer_bytes(model, out.buffer, nbuf)
        if raw is not None:
            out.raw, out.data = self.decode(out, raw, where)
        return out

    def check_quant(self, t: TFLiteTensor, where):
        n = t.scale.size
        if n > 1:
            if not 0 <= t.quantized_dimension < len(t.shape):
                raise self.fail(f"{where} ({t.name}): quantized_dimension {t.quantized_dimension} "
                                f"outside shape {t.shape}")
            if t.shape[t.quantized_dimension] != n:
                raise self.fail(f"{where} ({t.name}): {n} scales for dimension "
                                f"{t.quantized_dimension} of shape {t.shape}")
        if not np.all(np.isfinite(t.scale)) or np.any(t.scale < 0):
            raise self.fail(f"{where} ({t.name}): invalid quantization scale")
        if t.zero_point.size not in (1, n):
            raise self.fail(f"{where} ({t.name}): {t.zero_point.size} zero points for {n} scales")

    def decode(self, t: TFLiteTensor, raw: np.ndarray, where):
        if t.sparse or t.dtype not in _NP_TYPES.values():
            # Sparse or exotic (int4, string, ...): keep the bytes, leave data unset.
            return np.array(raw, copy=True), None
        if any(s < 0 for s in t.shape):
            raise self.fail(f"{where} ({t.name}): constant with unknown shape {t.shape}")
        dt = np.dtype(t.dtype).newbyteorder("<") if np.dtype(t.dtype).itemsize > 1 else np.dtype(t.dtype)
        need = prod(t.shape) * dt.itemsize
        if len(raw) != need:
            raise self.fail(f"{where} ({t.name}): buffer holds {len(raw)} bytes but {t.dtype} "
                            f"{t.shape} needs {need}")
        arr = np.frombuffer(raw.tobytes(), dtype=dt).reshape(t.shape)
        if dt.byteorder == "<" and not dt.isnative:
            arr = arr.astype(dt.newbyteorder("="))
        if t.dtype == "bool":
            arr = arr.view(np.uint8) != 0
        arr = np.array(arr, copy=True)
        if t.quantized and t.dtype in _QUANTIZED_TYPES:
            return arr, self.dequantize(t, arr)
        return arr, arr

    @staticmethod
    def dequantize(t: TFLiteTensor, q: np.ndarray) -> np.ndarray:
        scale = t.scale.astype(np.float64)
        zp = t.zero_point.astype(np.float64)
        if scale.size > 1:
            bshape = [1] * q.ndim
            bshape[t.quantized_dimension] = scale.size
            scale = scale.reshape(bshape)
            zp = zp.reshape(bshape) if zp.size > 1 else zp.reshape(())
        else:
            scale, zp = scale.reshape(()), zp.reshape(-1)[0]
        with np.errstate(over="ignore"):  # absurd but finite scales give inf, not a warning
            return ((q.astype(np.float64) - zp) * scale).astype(np.float32)

    # -- operators
    def options(self, table, type_code, names, where) -> Dict[str, Any]:
        if type_code == 0 or table is None:
            return {}
        cls_name = names.get(type_code)
        cls = getattr(self.tfl, cls_name, None) if cls_name else None
        if cls is None:
            return {"_unknown_options_type": int(type_code)}
        obj = cls()
        obj.Init(table.Bytes, table.Pos)
        out: Dict[str, Any] = {}
        for key, fn, is_vector in self.s.option_fields(cls):
            value = fn(obj)
            if is_vector:
                if isinstance(value, int):
                    value = []
                elif np.asarray(value).dtype.kind in "iub":
                    value = list(self.ints(value, f"{where} option {key}"))
                else:
                    value = [float(v) for v in value]
            elif isinstance(value, (bytes, bytearray)):
                value = self.text(value)
            elif isinstance(value, (bool, int, float, np.integer, np.floating, np.bool_)):
                value = value.item() if isinstance(value, np.generic) else value
                enum = self.s.enum_fields.get(key)
                if enum is not None:
                    value = enum.get(int(value), int(value))
            elif value is None:
                continue
            else:  # nested tables (StableHLO options) are not decoded
                continue
            out[key] = value
        return out

    def operator(self, model, sg_i, i, op, ntensors, ncodes) -> TFLiteOperator:
        where = f"subgraph {sg_i} operator {i}"
        if op is None:
            raise self.fail(f"{where}: missing")
        oi = int(op.OpcodeIndex())
        if not 0 <= oi < ncodes:
            raise self.fail(f"{where}: opcode index {oi} out of range (model has {ncodes})")
        oc = model.OperatorCodes(oi)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        name = self.s.op_names.get(code, f"UNKNOWN_{code}")
        custom_code = self.text(oc.CustomCode()) if name == "CUSTOM" else None
        inputs = self.ints(op.InputsAsNumpy(), f"{where} inputs")
        outputs = self.ints(op.OutputsAsNumpy(), f"{where} outputs")
        inter = self.ints(op.IntermediatesAsNumpy(), f"{where} intermediates")
        for kind, idxs, allow_missing in (("input", inputs, True), ("output", outputs, False),
                                          ("intermediate", inter, False)):
            for t in idxs:
                if not (0 <= t < ntensors or (allow_missing and t == -1)):
                    raise self.fail(f"{where} ({name}): {kind} tensor index {t} out of range "
                                    f"(subgraph has {ntensors})")
        opts = self.options(op.BuiltinOptions(), int(op.BuiltinOptionsType()),
                            self.s.options_names, where)
        if hasattr(op, "BuiltinOptions2Type") and int(op.BuiltinOptions2Type()):
            opts.update(self.options(op.BuiltinOptions2(), int(op.BuiltinOptions2Type()),
                                     self.s.options2_names, where))
        custom = None
        if custom_code is not None:
            n = self.count(op.CustomOptionsLength(), f"{where} custom options", elem=1)
            if n:
                custom = bytes(op.CustomOptionsAsNumpy())
        return TFLiteOperator(index=i, name=name, opcode=code, version=int(oc.Version()),
                              inputs=inputs, outputs=outputs, options=opts,
                              custom_code=custom_code, custom_options=custom, intermediates=inter)

    def subgraph(self, model, sg_i, nbuf, ncodes) -> TFLiteSubgraph:
        sg = model.Subgraphs(sg_i)
        if sg is None:
            raise self.fail(f"subgraph {sg_i} missing")
        nt = self.count(sg.TensorsLength(), f"subgraph {sg_i} tensors")
        tensors = [self.tensor(model, sg_i, i, sg.Tensors(i), nbuf) for i in range(nt)]
        no = self.count(sg.OperatorsLength(), f"subgraph {sg_i} operators")
        ops = [self.operator(model, sg_i, i, sg.Operators(i), nt, ncodes) for i in range(no)]
        ins = self.ints(sg.InputsAsNumpy(), f"subgraph {sg_i} inputs")
        outs = self.ints(sg.OutputsAsNumpy(), f"subgraph {sg_i} outputs")
        for t in ins + outs:
            if not 0 <= t < nt:
                raise self.fail(f"subgraph {sg_i}: graph input/output tensor {t} out of range")
        return TFLiteSubgraph(name=self.text(sg.Name()), tensors=tensors, operators=ops,
                              inputs=ins, outputs=outs)

    def model(self) -> TFLiteModel:
        m = self.tfl.Model.GetRootAs(self.buf, 0)
        nbuf = self.count(m.BuffersLength(), "buffers")
        ncodes = self.count(m.OperatorCodesLength(), "operator codes")
        nsg = self.count(m.SubgraphsLength(), "subgraphs")
        if nsg == 0:
            raise self.fail("model has no subgraph")
        subgraphs = [self.subgraph(m, i, nbuf, ncodes) for i in range(nsg)]
        meta = {}
        for i in range(self.count(m.MetadataLength(), "metadata")):
            md = m.Metadata(i)
            if md is not None:
                meta[self.text(md.Name())] = int(md.Buffer())
        return TFLiteModel(path=self.path, version=int(m.Version()),
                           description=self.text(m.Description()), subgraphs=subgraphs,
                           metadata=meta)


def load_tflite(path) -> TFLiteModel:
    """Parse a .tflite file (see the module docstring for what is returned)."""
    path = os.fspath(path)
    schema = _schema(path)
    buf = read_bytes(path)
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise FormatError("not a TFLite flatbuffer (no 'TFL3' identifier at bytes 4..8)", path)
    with guard(path, "TFLite flatbuffer"):
        return _Reader(path, buf, schema).model()
