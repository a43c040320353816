"""Read and write the safetensors format by hand (numpy only; no dependency).

Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON
``{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
"__metadata__": {str: str}}``, then the data buffer; offsets are relative to the buffer.
Validation follows the reference implementation: the header is at most 100 MB, every
tensor's byte range matches its dtype and shape, the ranges do not overlap and cover the
buffer exactly, and nothing is allocated before the sizes have been checked against the
file size.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Dict, Mapping, Optional

import numpy as np

from ..errors import FormatError
from ._common import bfloat16_to_float32, file_size, guard, prod

__all__ = ["load_safetensors", "save_safetensors", "read_safetensors_header"]

MAX_HEADER = 100_000_000

_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # widened to float32 after reading
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("u1"),
    "C64": np.dtype("<c8"),
}
_NP_TO_ST = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint64"): "U64",
    np.dtype("uint32"): "U32",
    np.dtype("uint16"): "U16",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
    np.dtype("complex64"): "C64",
}


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r} in header")
        out[k] = v
    return out


def read_safetensors_header(path):
    """(entries, metadata, data_start, size) with every entry validated:
    entries = {name: (dtype_code, shape tuple, begin, end)} in file order."""
    path = os.fspath(path)
    size = file_size(path)
    if size < 8:
        raise FormatError(f"file is {size} bytes, too short for a safetensors header", path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER:
            raise FormatError(f"safetensors header claims {n} bytes (limit {MAX_HEADER})", path)
        if n + 8 > size:
            raise FormatError(f"safetensors header claims {n} bytes but the file has only "
                              f"{size - 8} after the length field (truncated?)", path)
        raw = f.read(n)
    if len(raw) != n:
        raise FormatError("file truncated inside the safetensors header", path)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                            parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FormatError(f"safetensors header is not valid JSON: {exc}", path) from None
    if not isinstance(header, dict):
        raise FormatError("safetensors header is not a JSON object", path)

    metadata = header.pop("__metadata__", None)
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise FormatError("__metadata__ must map strings to strings", path)

    data_start = 8 + n
    data_size = size - data_start
    entries = {}
    for name, info in header.items():
        if not isinstance(info, dict):
            raise FormatError(f"tensor {name!r}: header entry is not an object", path)
        extra = set(info) - {"dtype", "shape", "data_offsets"}
        if extra or len(info) != 3:
            raise FormatError(f"tensor {name!r}: header entry has keys {sorted(info)}; expected "
                              "dtype, shape, data_offsets", path)
        code = info["dtype"]
        if code not in _DTYPES:
            raise FormatError(f"tensor {name!r}: unsupported dtype {code!r:.20} "
                              f"(supported: {', '.join(_DTYPES)})", path)
        shape = info["shape"]
        if not isinstance(shape, list) or len(shape) > 32 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise FormatError(f"tensor {name!r}: invalid shape {shape!r:.80}", path)
        offs = info["data_offsets"]
        if not (isinstance(offs, list) and len(offs) == 2 and all(
            isinstance(o, int) and not isinstance(o, bool) for o in offs
        )):
            raise FormatError(f"tensor {name!r}: invalid data_offsets {offs!r:.80}", path)
        begin, end = offs
        if not 0 <= begin <= end:
            raise FormatError(f"tensor {name!r}: data_offsets [{begin}, {end}] are not ordered", path)
        if end > data_size:
            raise FormatError(f"tensor {name!r}: data [{begin}, {end}) runs past the end of the "
                              f"data buffer ({data_size} bytes; file truncated?)", path)
        nbytes = prod(shape) * _DTYPES[code].itemsize
        if end - begin != nbytes:
            raise FormatError(f"tensor {name!r}: {code} {shape} needs {nbytes} bytes but "
                              f"data_offsets cover {end - begin}", path)
        entries[name] = (code, tuple(shape), begin, end)

    expected = 0
    for name, (_c, _s, begin, end) in sorted(entries.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if begin != expected:
            what = "overlaps the previous tensor" if begin < expected else "leaves a gap before it"
            raise FormatError(f"tensor {name!r}: data at offset {begin} {what} "
                              f"(expected {expected})", path)
        expected = end
    if expected != data_size:
        raise FormatError(f"data buffer has {data_size} bytes but the tensors cover {expected} "
                          "(trailing bytes or truncated file)", path)
    return entries, metadata, data_start, size


def load_safetensors(path, *, with_metadata: bool = False):
    """``{name: numpy array}`` (BF16 widened to float32); with ``with_metadata=True``
    returns ``(tensors, metadata_dict_or_None)``."""
    path = os.fspath(path)
    with guard(path, "safetensors file"):
        entries, metadata, data_start, _size = read_safetensors_header(path)
        out: Dict[str, np.ndarray] = {}
        with open(path, "rb") as f:
            for name, (code, shape, begin, end) in entries.items():
                dt = _DTYPES[code]
                buf = np.empty(end - begin, dtype=np.uint8)
                f.seek(data_start + begin)
                got = f.readinto(memoryview(buf))
                if got != end - begin:
                    raise FormatError(f"tensor {name!r}: file truncated while reading data", path)
                arr = buf.view(dt).reshape(shape)
                if code == "BF16":
                    arr = bfloat16_to_float32(arr)
                elif code == "BOOL":
                    arr = arr != 0
                elif not arr.dtype.isnative:
                    arr = arr.astype(arr.dtype.newbyteorder("="))
                out[name] = arr
    return (out, metadata) if with_metadata else out


def save_safetensors(path, tensors: Mapping[str, np.ndarray],
                     metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write ``tensors`` in the safetensors format (sorted by name; 8-byte-aligned data)."""
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    arrays = []
    offset = 0
    for name in sorted(tensors):
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, got {name!r}")
        arr = np.asarray(tensors[name])
        code = _NP_TO_ST.get(arr.dtype.newbyteorder("=") if arr.dtype.byteorder == ">" else arr.dtype)
        if code is None:
            raise ValueError(f"tensor {name!r}: dtype {arr.dtype} cannot be stored in safetensors")
        data = np.ascontiguousarray(arr, dtype=_DTYPES[code] if code != "BOOL" else np.bool_)
        header[name] = {"dtype": code, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + data.nbytes]}
        arrays.append(data)
        offset += data.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-(len(blob) + 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for data in arrays:
            f.write(data.tobytes())
