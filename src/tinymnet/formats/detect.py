"""Tell a model/weight file's format from its content (magic bytes), never its extension."""
from __future__ import annotations

import io
import os
import struct
import zipfile

from ..errors import FormatError
from ._common import file_size, read_head

__all__ = ["detect_format", "FORMATS", "TMN_MAGIC"]

TMN_MAGIC = b"TINYMNET"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
FORMATS = ("tmn", "pth-zip", "pth-legacy", "safetensors", "tflite", "h5", "onnx")

_HEAD = 4096


def _is_hdf5(path, head: bytes, size: int) -> bool:
    # The superblock is at 0 or after a user block of 512, 1024, 2048, ... bytes.
    if head.startswith(HDF5_MAGIC):
        return True
    offset = 512
    try:
        with open(path, "rb") as f:
            while offset + 8 <= size and offset <= (1 << 20):
                f.seek(offset)
                if f.read(8) == HDF5_MAGIC:
                    return True
                offset *= 2
    except OSError:
        return False
    return False


def _zip_kind(path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise FormatError(f"corrupt zip archive: {exc}", path) from exc
    if any(n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1) for n in names):
        return "pth-zip"
    raise FormatError("zip archive that is not a PyTorch checkpoint (no <name>/data.pkl)", path)


def _is_legacy_pth(head: bytes) -> bool:
    """The legacy torch.save stream starts with a pickled int: the magic number."""
    if not head[:1] in (b"\x80", b"\x8a", b"L"):  # protocol >= 2, protocol 1, protocol 0
        return False
    from .pth import MAGIC_NUMBER, _RestrictedUnpickler, _scan

    bio = io.BytesIO(head[:256])
    try:
        _scan(bio, None, "magic")
        value = _RestrictedUnpickler(bio, None, None, allow_globals=False).load()
    except Exception:  # noqa: BLE001 - any failure means "not this format"
        return False
    return isinstance(value, int) and value == MAGIC_NUMBER


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def _varint(buf: bytes, pos: int):
    value = shift = 0
    while pos < len(buf) and shift < 64:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
    return None, pos


def _looks_like_onnx(head: bytes) -> bool:
    """ONNX ModelProto as written by onnx/protobuf: fields in number order, so it starts
    with ir_version (field 1, varint, small), followed by producer_name (2), producer_version
    (3), domain (4), model_version (5), doc_string (6), graph (7) or opset_import (8)."""
    if len(head) < 4 or head[0] != 0x08:
        return False
    ir, pos = _varint(head, 1)
    if ir is None or not 1 <= ir <= 20 or pos >= len(head):
        return False
    return head[pos] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0x7A)


def _parses_as_onnx(path, size: int) -> bool:
    """Last resort for ONNX files whose fields are not in the usual order: parse with the
    onnx package (if installed) and accept a model with a versioned, non-empty graph."""
    if size > (1 << 31):
        return False
    try:
        import onnx
    except ImportError:
        return False
    try:
        with open(path, "rb") as f:
            proto = onnx.ModelProto()
            proto.ParseFromString(f.read())
    except Exception:  # noqa: BLE001 - not protobuf
        return False
    return proto.ir_version > 0 and len(proto.graph.node) > 0 and len(proto.opset_import) > 0


def detect_format(path) -> str:
    """One of ``FORMATS`` ("tmn", "pth-zip", "pth-legacy", "safetensors", "tflite", "h5",
    "onnx"), decided from the file's bytes; FormatError naming the file otherwise."""
    path = os.fspath(path)
    size = file_size(path)
    if size == 0:
        raise FormatError("file is empty", path)
    head = read_head(path, _HEAD)
    if head.startswith(TMN_MAGIC):
        return "tmn"
    if _is_hdf5(path, head, size):
        return "h5"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_kind(path)
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return "tflite"
    if _is_safetensors(head, size):
        return "safetensors"
    if _is_legacy_pth(head):
        return "pth-legacy"
    if _looks_like_onnx(head) or _parses_as_onnx(path, size):
        return "onnx"
    if head.startswith(b"\x80") and len(head) > 2 and head[1] <= 5:
        raise FormatError("a Python pickle that is not a PyTorch checkpoint (no torch.save "
                          "magic number); tinymnet does not read arbitrary pickles", path)
    raise FormatError(f"unrecognised model file format (first bytes {head[:16]!r}); "
                      f"expected one of {', '.join(FORMATS)}", path)
