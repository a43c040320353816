"""Read PyTorch checkpoints (``torch.save`` files) without torch and without running code.

Two on-disk layouts are understood:

* the zip layout (torch >= 1.6): ``<prefix>/data.pkl`` (the pickled object, whose tensors
  point at storages through persistent ids), ``<prefix>/data/<key>`` (each storage's raw
  bytes), ``<prefix>/byteorder`` (``little``/``big``, little if absent);
* the legacy stream layout (torch < 1.6, or ``_use_new_zipfile_serialization=False``):
  pickled magic number, pickled protocol version (1001), pickled sys_info dict, the pickled
  object, the pickled list of storage keys, then for each key in that order an 8-byte
  element count followed by the storage's raw bytes.

Pickles are read with a strict allow-list (``find_class``): only the tensor/parameter
rebuild functions, ``collections.OrderedDict`` and the storage/dtype markers resolve, and
they resolve to this module's own numpy implementations. Any other global (``os.system``,
``builtins.eval``, a pickled ``nn.Module`` class, ...) is refused with a FormatError before
anything is called. Every opcode stream is scanned with :mod:`pickletools` before it is
unpickled, so a length field cannot make the unpickler allocate more than the file holds,
and all storage sizes, offsets and strides are checked against the bytes actually present.
"""
from __future__ import annotations

import _compat_pickle
import collections
import io
import os
import pickle
import pickletools
import warnings
import zipfile
from typing import Any, Callable, Dict

import numpy as np

from ..errors import FormatError
from ._common import bfloat16_to_float32, file_size, guard, output_budget, prod, read_bytes

__all__ = ["load_state_dict", "load_checkpoint", "MAGIC_NUMBER", "PROTOCOL_VERSION"]

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# Opcodes a torch checkpoint never needs. INST/OBJ/NEWOBJ*/EXT* would also resolve globals
# only through find_class, but there is no reason to accept them at all.
_FORBIDDEN_OPCODES = frozenset(
    {"INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER",
     "READONLY_BUFFER"}
)
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_MAX_DEPTH = 200


# ---------------------------------------------------------------------------------------
# dtypes


class _DType:
    """A torch element type as numpy sees it (``np_name`` little-endian; bfloat16 is read
    as uint16 bit patterns and widened to float32)."""

    __slots__ = ("name", "np_name", "itemsize")

    def __init__(self, name, np_name, itemsize):
        self.name, self.np_name, self.itemsize = name, np_name, itemsize

    def __repr__(self):
        return f"torch.{self.name}"

    def numpy(self, byteorder: str) -> np.dtype:
        dt = np.dtype(self.np_name)
        return dt.newbyteorder(">" if byteorder == "big" else "<") if dt.itemsize > 1 else dt


_DTYPES = {
    d.name: d
    for d in (
        _DType("float32", "f4", 4),
        _DType("float64", "f8", 8),
        _DType("float16", "f2", 2),
        _DType("bfloat16", "u2", 2),
        _DType("int64", "i8", 8),
        _DType("int32", "i4", 4),
        _DType("int16", "i2", 2),
        _DType("int8", "i1", 1),
        _DType("uint8", "u1", 1),
        _DType("uint16", "u2", 2),
        _DType("uint32", "u4", 4),
        _DType("uint64", "u8", 8),
        _DType("bool", "u1", 1),
        _DType("complex64", "c8", 8),
        _DType("complex128", "c16", 16),
    )
}

_STORAGE_CLASSES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",
}

_TORCH_DTYPE_NAMES = {
    "float32": "float32", "float": "float32",
    "float64": "float64", "double": "float64",
    "float16": "float16", "half": "float16",
    "bfloat16": "bfloat16",
    "int64": "int64", "long": "int64",
    "int32": "int32", "int": "int32",
    "int16": "int16", "short": "int16",
    "int8": "int8", "uint8": "uint8",
    "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
    "bool": "bool",
    "complex64": "complex64", "cfloat": "complex64",
    "complex128": "complex128", "cdouble": "complex128",
}


# ---------------------------------------------------------------------------------------
# objects the restricted unpickler hands out


class _Frozen:
    __slots__ = ()

    def __setattr__(self, name, value):  # BUILD on one of our markers must not mutate it
        raise AttributeError(f"{type(self).__name__} is read-only")

    def _init(self, **kw):
        for k, v in kw.items():
            object.__setattr__(self, k, v)


class _Global(_Frozen):
    """An allow-listed global: calling it calls our own numpy implementation."""

    __slots__ = ("qualname", "fn")

    def __init__(self, qualname, fn):
        self._init(qualname=qualname, fn=fn)

    def __call__(self, *args):
        return self.fn(*args)

    def __repr__(self):
        return f"<allowed global {self.qualname}>"


class _Marker(_Frozen):
    """A storage class (torch.FloatStorage), a dtype (torch.float32) or a tensor class."""

    __slots__ = ("kind", "qualname", "dtype")

    def __init__(self, kind, qualname, dtype=None):
        self._init(kind=kind, qualname=qualname, dtype=dtype)

    def __call__(self, *args):
        raise FormatError(f"{self.qualname} cannot be called from a checkpoint")

    def __repr__(self):
        return f"<{self.qualname}>"


class _Storage(_Frozen):
    __slots__ = ("key", "dtype", "numel", "data")

    def __init__(self, key, dtype, numel):
        self._init(key=key, dtype=dtype, numel=numel, data=None)

    def set_data(self, data: np.ndarray):
        object.__setattr__(self, "data", data)

    def raw(self, path) -> np.ndarray:
        if self.data is None:
            raise FormatError(f"storage '{self.key}' is referenced but its data is missing", path)
        return self.data


class _StorageView(_Frozen):
    """Legacy-format view of part of another storage (offset/size in elements)."""

    __slots__ = ("root", "offset", "numel", "dtype", "key")

    def __init__(self, root, offset, numel, key):
        self._init(root=root, offset=offset, numel=numel, dtype=root.dtype, key=key)

    def raw(self, path) -> np.ndarray:
        base = self.root.raw(path)
        isz = self.dtype.itemsize
        start, stop = self.offset * isz, (self.offset + self.numel) * isz
        if stop > len(base):
            raise FormatError(
                f"storage view '{self.key}' ({self.offset}+{self.numel} elements) runs past its "
                f"root storage '{self.root.key}' ({self.root.numel} elements)", path)
        return base[start:stop]


class _LazyTensor(_Frozen):
    """A tensor whose storage bytes may not have been read yet (legacy files keep them after
    the pickle). Read-only, so a pickle BUILD cannot change its checked size/stride; turned
    into a numpy array by :class:`_Materializer`."""

    __slots__ = ("storage", "offset", "size", "stride", "dtype", "metadata")

    def __init__(self, storage, offset, size, stride, dtype, metadata):
        self._init(storage=storage, offset=offset, size=size, stride=stride, dtype=dtype,
                   metadata=metadata)


# ---------------------------------------------------------------------------------------
# numpy versions of torch's rebuild functions (argument checking only; no data yet)


def _int(v, what):
    if isinstance(v, bool) or not isinstance(v, int):
        raise FormatError(f"{what} must be an int, got {type(v).__name__}")
    return v


def _int_tuple(v, what):
    if not isinstance(v, (tuple, list)):
        raise FormatError(f"{what} must be a tuple of ints, got {type(v).__name__}")
    if len(v) > 32:
        raise FormatError(f"{what} has {len(v)} dimensions (at most 32)")
    out = tuple(_int(x, what) for x in v)
    if any(x < 0 for x in out):
        raise FormatError(f"{what} has a negative entry: {out}")
    return out


def _make_tensor(storage, storage_offset, size, stride, dtype=None, metadata=None):
    if not isinstance(storage, (_Storage, _StorageView)):
        raise FormatError(f"tensor storage must come from a persistent id, got {type(storage).__name__}")
    offset = _int(storage_offset, "storage_offset")
    if offset < 0:
        raise FormatError(f"negative storage_offset {offset}")
    size = _int_tuple(size, "tensor size")
    stride = _int_tuple(stride, "tensor stride")
    if len(size) != len(stride):
        raise FormatError(f"tensor size {size} and stride {stride} differ in length")
    if metadata is not None and not isinstance(metadata, dict):
        raise FormatError(f"tensor metadata must be a dict, got {type(metadata).__name__}")
    return _LazyTensor(storage, offset, size, stride, dtype, metadata)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _make_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _make_tensor(storage, storage_offset, size, stride, metadata=metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    if not isinstance(dtype, _Marker) or dtype.kind != "dtype":
        raise FormatError(f"_rebuild_tensor_v3 needs a torch dtype, got {dtype!r}")
    if dtype.dtype is None:
        raise FormatError(f"tensors of dtype {dtype.qualname} are not supported")
    return _make_tensor(storage, storage_offset, size, stride, dtype=dtype.dtype, metadata=metadata)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, _LazyTensor):
        raise FormatError(f"a Parameter must wrap a tensor, got {type(data).__name__}")
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    if not isinstance(func, _Global) or func.fn not in _TENSOR_BUILDERS:
        raise FormatError(f"_rebuild_from_type_v2 with unsupported function {func!r}")
    if not isinstance(new_type, _Marker) or new_type.kind != "tensor-class":
        raise FormatError(f"tensor subclass {new_type!r} is not supported")
    if not isinstance(args, tuple):
        raise FormatError("_rebuild_from_type_v2 arguments must be a tuple")
    return func(*args)


def _ordered_dict(*args):
    if len(args) > 1:
        raise FormatError("OrderedDict takes at most one argument")
    out = collections.OrderedDict()
    if args:
        items = args[0]
        if isinstance(items, dict):
            out.update(items)
        elif isinstance(items, (list, tuple)):
            for item in items:
                if not isinstance(item, (list, tuple)) or len(item) != 2:
                    raise FormatError("OrderedDict items must be pairs")
                out[item[0]] = item[1]
        else:
            raise FormatError(f"OrderedDict built from {type(items).__name__}")
    return out


def _torch_size(*args):
    if len(args) != 1:
        raise FormatError("torch.Size takes one argument")
    return _int_tuple(args[0], "torch.Size")


_TENSOR_BUILDERS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter)


def _allowed_globals() -> Dict[str, Any]:
    g: Dict[str, Any] = {}
    for name, fn in (
        ("torch._utils._rebuild_tensor", _rebuild_tensor),
        ("torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2),
        ("torch._utils._rebuild_tensor_v3", _rebuild_tensor_v3),
        ("torch._utils._rebuild_parameter", _rebuild_parameter),
        ("torch._utils._rebuild_parameter_with_state", _rebuild_parameter),
        ("torch._tensor._rebuild_from_type_v2", _rebuild_from_type_v2),
        ("collections.OrderedDict", _ordered_dict),
        ("torch.Size", _torch_size),
    ):
        g[name] = _Global(name, fn)
    for cls, dt in _STORAGE_CLASSES.items():
        g[f"torch.{cls}"] = _Marker("storage", f"torch.{cls}", _DTYPES[dt])
        g[f"torch.cuda.{cls}"] = _Marker("storage", f"torch.cuda.{cls}", _DTYPES[dt])
    g["torch.storage.UntypedStorage"] = _Marker("storage", "torch.storage.UntypedStorage",
                                                _DTYPES["uint8"])
    for alias, dt in _TORCH_DTYPE_NAMES.items():
        g[f"torch.{alias}"] = _Marker("dtype", f"torch.{alias}", _DTYPES[dt])
    # Known but unsupported element types: resolve them so the error can say so plainly.
    for alias in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
                  "float8_e8m0fnu", "complex32", "chalf", "qint8", "quint8", "qint32",
                  "quint4x2", "quint2x4", "float4_e2m1fn_x2"):
        g[f"torch.{alias}"] = _Marker("dtype", f"torch.{alias}", None)
    for cls in ("QInt8Storage", "QUInt8Storage", "QInt32Storage", "QUInt4x2Storage",
                "QUInt2x4Storage", "ComplexHalfStorage"):
        g[f"torch.{cls}"] = _Marker("storage", f"torch.{cls}", None)
    for cls in ("torch.Tensor", "torch._tensor.Tensor", "torch.nn.parameter.Parameter"):
        g[cls] = _Marker("tensor-class", cls)
    return g


_ALLOWED = _allowed_globals()


# ---------------------------------------------------------------------------------------
# the restricted unpickler


def _display_name(module: str, name: str) -> str:
    """Python 2 names (protocol < 3 pickles say __builtin__.eval) in Python 3 spelling."""
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return f"{module}.{name}"


def _resolve_global(module, name, path, allow_globals: bool):
    qualname = f"{module}.{name}"
    if allow_globals:
        obj = _ALLOWED.get(qualname)
        if obj is not None:
            return obj
    shown = _display_name(str(module), str(name))
    hint = ""
    if shown.startswith("torch._utils._rebuild_"):
        hint = " (quantized, sparse, nested and other special tensor kinds are not supported)"
    elif allow_globals and not shown.startswith(("torch._utils.", "collections.", "builtins.",
                                                "posix.", "nt.", "os.", "subprocess.")):
        hint = (" (only tensors, dicts and lists are read; to convert a pickled model, "
                "save model.state_dict() instead)")
    if shown.startswith(("posix.", "nt.")):  # what os.system & co. are pickled as
        shown += f"' (os.{shown.split('.', 1)[1]})"
    else:
        shown += "'"
    raise FormatError(
        f"refusing to load global '{shown}: not on the allow-list of a weights file, "
        f"nothing was executed{hint}", path)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path, persistent: "Callable[[Any], Any] | None", allow_globals: bool):
        super().__init__(file, encoding="latin1")
        self._path = path
        self._persistent = persistent
        self._allow_globals = allow_globals

    def find_class(self, module, name):
        return _resolve_global(module, name, self._path, self._allow_globals)

    def persistent_load(self, pid):
        if self._persistent is None:
            raise FormatError("unexpected persistent id in a plain pickle", self._path)
        return self._persistent(pid)


def _scan(bio: io.BytesIO, path, what: str, allow_globals: bool = False) -> int:
    """Walk one pickle's opcodes from the current position without building anything;
    returns the offset just past its STOP. Catches truncation and absurd length fields
    before the real unpickler can allocate for them, and refuses text-form globals
    (GLOBAL opcode) before anything is unpickled; STACK_GLOBAL is checked by find_class."""
    start = bio.tell()
    n_ops = 0
    try:
        with warnings.catch_warnings():  # e.g. bad escapes in a corrupt text STRING opcode
            warnings.simplefilter("ignore")
            ops = list(pickletools.genops(bio))
        for op, arg, _pos in ops:
            n_ops += 1
            if op.name in _MEMO_PUTS and (not isinstance(arg, int) or not 0 <= arg <= n_ops):
                # Pickler numbers memo slots 0, 1, 2, ...; the C unpickler grows (and
                # zero-fills) its memo array up to the index, so a flipped bit here would
                # cost gigabytes.
                raise FormatError(f"{what}: memo index {arg} out of range at byte {_pos}", path)
            if op.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
                _resolve_global(module, name, path, allow_globals)
            elif op.name in _FORBIDDEN_OPCODES:
                raise FormatError(f"{what}: pickle opcode {op.name} is not allowed in a weights file", path)
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise FormatError(f"{what}: malformed or truncated pickle at byte {start}: {exc}", path) from exc
    end = bio.tell()
    bio.seek(start)
    return end


def _unpickle(bio: io.BytesIO, path, what: str, persistent=None, allow_globals=False):
    end = _scan(bio, path, what, allow_globals)
    try:
        obj = _RestrictedUnpickler(bio, path, persistent, allow_globals).load()
    except FormatError as exc:
        if exc.path is None:
            raise FormatError(f"{what}: {exc}", path) from exc
        raise
    except Exception as exc:  # noqa: BLE001
        raise FormatError(f"{what}: cannot unpickle: {type(exc).__name__}: {exc}", path) from exc
    if bio.tell() != end:
        bio.seek(end)
    return obj


# ---------------------------------------------------------------------------------------
# persistent ids


class _StorageTable:
    def __init__(self, path, legacy: bool):
        self.path, self.legacy = path, legacy
        self.storages: Dict[str, _Storage] = {}
        self.views: Dict[str, _StorageView] = {}

    def __call__(self, pid):
        path = self.path
        if not isinstance(pid, tuple) or not pid:
            raise FormatError(f"unsupported persistent id {pid!r:.80}", path)
        if pid[0] == "module":
            raise FormatError("the file holds a pickled nn.Module (torch.save(model)); "
                              "save model.state_dict() instead", path)
        if pid[0] != "storage":
            raise FormatError(f"unsupported persistent id kind {pid[0]!r:.40}", path)
        if len(pid) not in (5, 6):
            raise FormatError(f"storage persistent id has {len(pid)} fields, expected 5 or 6", path)
        _, stype, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(stype, _Marker) or stype.kind not in ("storage", "dtype"):
            raise FormatError(f"storage type {stype!r:.60} is not a known storage class", path)
        if stype.dtype is None:
            raise FormatError(f"{stype.qualname} (quantized or exotic storage) is not supported", path)
        if not isinstance(key, str) or not key or len(key) > 256:
            raise FormatError(f"bad storage key {key!r:.60}", path)
        numel = _int(numel, "storage size")
        if numel < 0:
            raise FormatError(f"storage '{key}' has negative size {numel}", path)
        st = self.storages.get(key)
        if st is None:
            st = self.storages[key] = _Storage(key, stype.dtype, numel)
        elif st.dtype is not stype.dtype or st.numel != numel:
            raise FormatError(f"storage '{key}' is referenced with two different types or sizes", path)
        if view is None:
            return st
        if not self.legacy:
            raise FormatError("storage views exist only in the legacy format", path)
        if not isinstance(view, tuple) or len(view) != 3:
            raise FormatError(f"bad storage view metadata {view!r:.80}", path)
        view_key, v_off, v_size = view
        if not isinstance(view_key, str):
            raise FormatError("bad storage view key", path)
        v_off, v_size = _int(v_off, "view offset"), _int(v_size, "view size")
        if v_off < 0 or v_size < 0 or v_off + v_size > numel:
            raise FormatError(f"storage view {view_key!r} [{v_off}, {v_off + v_size}) is outside "
                              f"storage '{key}' of {numel} elements", path)
        v = self.views.get(view_key)
        if v is None:
            v = self.views[view_key] = _StorageView(st, v_off, v_size, view_key)
        return v


# ---------------------------------------------------------------------------------------
# turning lazy tensors into numpy arrays


class _Materializer:
    def __init__(self, path, byteorder: str, budget: int):
        self.path, self.byteorder, self.budget = path, byteorder, budget
        self.used = 0
        self.done: Dict[int, np.ndarray] = {}

    def tensor(self, t: _LazyTensor, name: str) -> np.ndarray:
        hit = self.done.get(id(t))
        if hit is not None:
            return hit
        path = self.path
        dtype = t.dtype or t.storage.dtype
        isz = dtype.itemsize
        raw = t.storage.raw(path)
        n_avail = len(raw) // isz
        count = prod(t.size)
        np_dt = dtype.numpy(self.byteorder)
        if count == 0:
            out = np.zeros(t.size, dtype=self._out_dtype(dtype))
        else:
            last = t.offset + sum((s - 1) * st for s, st in zip(t.size, t.stride))
            if last >= n_avail:
                raise FormatError(
                    f"tensor '{name}' (size {t.size}, stride {t.stride}, offset {t.offset}) "
                    f"reads element {last} but its storage '{t.storage.key}' holds {n_avail}", path)
            nbytes = count * isz
            self.used += nbytes
            if self.used > self.budget:
                raise FormatError(
                    f"tensors expand to more than {self.budget} bytes (file is much smaller; "
                    f"hostile strides?) at '{name}'", path)
            base = np.frombuffer(raw, dtype=np_dt, count=n_avail)
            view = np.lib.stride_tricks.as_strided(
                base[t.offset:], shape=t.size, strides=tuple(s * isz for s in t.stride),
                writeable=False)
            out = self._convert(np.array(view, copy=True, order="C"), dtype)
        if t.metadata:
            if t.metadata.get("neg"):
                out = -out
            if t.metadata.get("conj"):
                out = np.conj(out)
        self.done[id(t)] = out
        return out

    @staticmethod
    def _out_dtype(dtype: _DType):
        if dtype.name == "bfloat16":
            return np.float32
        if dtype.name == "bool":
            return np.bool_
        return np.dtype(dtype.np_name)

    def _convert(self, arr: np.ndarray, dtype: _DType) -> np.ndarray:
        if dtype.name == "bfloat16":
            return bfloat16_to_float32(arr)
        if dtype.name == "bool":
            return arr != 0
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        return arr

    def walk(self, obj, name="", depth=0, seen=None):
        """Materialize every tensor inside a nested dict/list/tuple structure."""
        if seen is None:
            seen = {}
        if depth > _MAX_DEPTH:
            raise FormatError("checkpoint nested too deeply", self.path)
        if isinstance(obj, _LazyTensor):
            return self.tensor(obj, name or "<root>")
        if isinstance(obj, (_Storage, _StorageView)):
            return np.array(np.frombuffer(obj.raw(self.path), dtype=obj.dtype.numpy(self.byteorder)))
        if isinstance(obj, (dict, list, tuple)):
            if id(obj) in seen:
                return seen[id(obj)]
            if isinstance(obj, dict):
                out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
                seen[id(obj)] = out
                for k, v in obj.items():
                    out[k] = self.walk(v, f"{name}.{k}" if name else str(k), depth + 1, seen)
                return out
            items = [self.walk(v, f"{name}[{i}]", depth + 1, seen) for i, v in enumerate(obj)]
            out = tuple(items) if isinstance(obj, tuple) else items
            seen[id(obj)] = out
            return out
        if isinstance(obj, (_Global, _Marker)):
            return repr(obj)
        return obj


_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network",
                 "params", "weights", "state", "model_ema", "ema")


def _find_state_dict(obj, path, depth=0):
    """The dict of tensors inside a checkpoint (unwrapping {"state_dict": {...}} etc.)."""
    if depth > 8:
        raise FormatError("no tensor dict found (checkpoint nested too deeply)", path)
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, _LazyTensor)}
        if tensors:
            return tensors
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                try:
                    return _find_state_dict(obj[key], path, depth + 1)
                except FormatError:
                    pass
        sub = [v for v in obj.values() if isinstance(v, dict)]
        if len(sub) == 1:
            return _find_state_dict(sub[0], path, depth + 1)
        keys = ", ".join(repr(k) for k in list(obj)[:10])
        raise FormatError(f"no dict of tensors found in the checkpoint (top-level keys: {keys})", path)
    raise FormatError(f"checkpoint holds a {type(obj).__name__}, not a dict of tensors", path)


# ---------------------------------------------------------------------------------------
# the two layouts


def _zip_read(zf: zipfile.ZipFile, name: str, path, limit: int) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise FormatError(f"zip archive has no member '{name}'", path) from None
    if info.file_size > limit:
        raise FormatError(f"zip member '{name}' claims {info.file_size} bytes, more than the "
                          f"file could hold", path)
    data = zf.read(info)
    if len(data) != info.file_size:
        raise FormatError(f"zip member '{name}' is truncated", path)
    return data


def _load_zip(path, size: int):
    budget = output_budget(size)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        if len(names) > 10_000_000:
            raise FormatError("zip archive has too many members", path)
        pkls = [n for n in names if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
        if not pkls:
            raise FormatError("zip archive without a data.pkl: not a PyTorch checkpoint", path)
        if len(pkls) > 1:
            raise FormatError(f"zip archive has several data.pkl members: {pkls[:4]}", path)
        prefix = pkls[0][: -len("data.pkl")]
        if any(n.startswith(prefix + "code/") for n in names) or prefix + "constants.pkl" in names:
            raise FormatError("this is a TorchScript archive (torch.jit.save), which is not "
                              "supported; save model.state_dict() with torch.save instead", path)
        byteorder = "little"
        if prefix + "byteorder" in names:
            bo = _zip_read(zf, prefix + "byteorder", path, 64).strip()
            if bo not in (b"little", b"big"):
                raise FormatError(f"unknown byteorder record {bo[:16]!r}", path)
            byteorder = bo.decode()
        # Compressed members could expand; stored ones cannot exceed the archive.
        limit = lambda info_name: (size if zf.getinfo(info_name).compress_type == zipfile.ZIP_STORED
                                   else budget)  # noqa: E731
        pkl = _zip_read(zf, pkls[0], path, limit(pkls[0]))
        table = _StorageTable(path, legacy=False)
        obj = _unpickle(io.BytesIO(pkl), path, "data.pkl", table, allow_globals=True)
        for key, st in table.storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise FormatError(f"storage '{key}' has no record '{member}' in the archive", path)
            need = st.numel * st.dtype.itemsize
            info = zf.getinfo(member)
            if info.file_size < need:
                raise FormatError(f"storage record '{member}' holds {info.file_size} bytes, "
                                  f"{need} expected", path)
            data = _zip_read(zf, member, path, limit(member))
            st.set_data(np.frombuffer(data, dtype=np.uint8, count=need))
    return obj, byteorder, budget


def _load_legacy(path, size: int):
    data = read_bytes(path)
    bio = io.BytesIO(data)
    magic = _unpickle(bio, path, "magic number")
    if magic != MAGIC_NUMBER:
        raise FormatError("not a PyTorch legacy checkpoint (bad magic number)", path)
    version = _unpickle(bio, path, "protocol version")
    if version != PROTOCOL_VERSION:
        raise FormatError(f"unsupported legacy protocol version {version!r:.40} "
                          f"(expected {PROTOCOL_VERSION})", path)
    sys_info = _unpickle(bio, path, "sys_info")
    if not isinstance(sys_info, dict):
        raise FormatError("sys_info record is not a dict", path)
    byteorder = "little" if sys_info.get("little_endian", True) else "big"
    # sys_info["type_sizes"] describes the saving platform's C types (Windows has 4-byte
    # longs); the storage headers below are int64 whatever it says.
    table = _StorageTable(path, legacy=True)
    obj = _unpickle(bio, path, "pickled object", table, allow_globals=True)
    keys = _unpickle(bio, path, "storage key list")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise FormatError("storage key list is not a list of strings", path)
    pos = bio.tell()
    count_dt = np.dtype("<i8" if byteorder == "little" else ">i8")
    for key in keys:
        st = table.storages.get(key)
        if st is None:
            raise FormatError(f"storage '{key}' is listed but never referenced", path)
        if pos + 8 > len(data):
            raise FormatError(f"file truncated before storage '{key}'", path)
        count = int(np.frombuffer(data, dtype=count_dt, count=1, offset=pos)[0])
        pos += 8
        if count != st.numel:
            raise FormatError(f"storage '{key}' holds {count} elements on disk but "
                              f"{st.numel} were declared", path)
        nbytes = count * st.dtype.itemsize
        if pos + nbytes > len(data):
            raise FormatError(f"file truncated inside storage '{key}' (needs {nbytes} bytes at "
                              f"offset {pos}, file has {len(data)})", path)
        st.set_data(np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=pos))
        pos += nbytes
    return obj, byteorder, output_budget(size)


def _load(path):
    path = os.fspath(path)
    size = file_size(path)
    from .detect import detect_format

    kind = detect_format(path)
    if kind not in ("pth-zip", "pth-legacy"):
        raise FormatError(f"not a PyTorch checkpoint (looks like {kind})", path)
    with guard(path, "PyTorch checkpoint"):
        if kind == "pth-zip":
            obj, byteorder, budget = _load_zip(path, size)
        else:
            obj, byteorder, budget = _load_legacy(path, size)
    return obj, _Materializer(path, byteorder, budget)


def load_state_dict(path) -> Dict[str, np.ndarray]:
    """Tensors of a ``torch.save`` file as ``{name: C-contiguous numpy array}``.

    Wrappers such as ``{"state_dict": ...}``, ``{"model": ...}`` or
    ``{"epoch": 3, "model_state_dict": ...}`` are unwrapped to the dict that holds tensors;
    non-tensor entries next to the tensors are dropped. bfloat16 tensors are widened to
    float32 (numpy has no bfloat16). Raises FormatError for anything else.
    """
    obj, mat = _load(path)
    with guard(path, "PyTorch checkpoint"):
        tensors = _find_state_dict(obj, path)
        out: Dict[str, np.ndarray] = {}
        for k, v in tensors.items():
            name = k if isinstance(k, str) else str(k)
            if name in out:
                raise FormatError(f"duplicate tensor name {name!r}", path)
            out[name] = mat.tensor(v, name)
        return out


def load_checkpoint(path) -> Any:
    """The whole pickled object of a ``torch.save`` file, with every tensor (and bare
    storage) turned into a numpy array; containers, strings and numbers kept as they are."""
    obj, mat = _load(path)
    with guard(path, "PyTorch checkpoint"):
        return mat.walk(obj)
