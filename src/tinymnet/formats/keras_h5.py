"""Read the weights of a Keras HDF5 file (``model.save("m.h5")`` or
``model.save_weights("w.h5")``, Keras 2 layout, also written by Keras 3's legacy h5 saver).

Needs the optional ``h5py`` package. Weights are returned as ``{"layer/var": array}``
(e.g. ``conv1/kernel``, ``conv_dw_1/depthwise_kernel``, ``conv1_bn/moving_mean``) in the
file's layer order. Kernels keep Keras' layouts: conv HWIO, depthwise HWC1 (H, W, C, mult),
dense (in, out).
"""
from __future__ import annotations

import json
import os
import struct
from typing import Dict, Optional

import numpy as np

from ..errors import FormatError
from ._common import file_size, guard, optional_import, output_budget, prod, read_bytes

__all__ = ["load_keras_h5", "read_keras_model_config"]

_MAX_LAYERS = 1_000_000


def _open(path):
    h5py = optional_import("h5py", path, "Keras .h5 files")
    from .detect import _is_hdf5, read_head

    size = file_size(path)
    if not _is_hdf5(path, read_head(path, 8), size):
        raise FormatError("not an HDF5 file (no HDF5 signature)", path)
    _check_global_heaps(path)
    try:
        return h5py, h5py.File(path, "r"), size
    except Exception as exc:  # noqa: BLE001
        raise FormatError(f"cannot open HDF5 file: {exc}", path) from exc


_GCOL = b"GCOL\x01"  # signature, version 1 (libhdf5 ignores the three reserved bytes after it)


def _check_global_heaps(path):
    """Walk every global heap collection (where variable-length strings such as
    model_config live) before libhdf5 does: it trusts their object sizes, and a free-space
    object of size 0 makes it loop forever. Sizes are 8 bytes (h5py's default)."""
    data = read_bytes(path)
    pos = data.find(_GCOL)
    while pos >= 0:
        if pos + 16 > len(data):
            raise FormatError(f"global heap collection at offset {pos} is truncated", path)
        (csize,) = struct.unpack_from("<Q", data, pos + 8)
        end = pos + csize
        if csize < 16 or end > len(data):
            raise FormatError(f"global heap collection at offset {pos} claims {csize} bytes "
                              f"(file has {len(data) - pos} from there)", path)
        p = pos + 16
        while end - p >= 16:
            idx, = struct.unpack_from("<H", data, p)
            (osize,) = struct.unpack_from("<Q", data, p + 8)
            need = osize if idx == 0 else 16 + (osize + 7) // 8 * 8
            if need == 0 or need > end - p:
                raise FormatError(f"global heap collection at offset {pos}: object {idx} at "
                                  f"offset {p} has an impossible size {osize}", path)
            p += need
        pos = data.find(_GCOL, end)


def _text(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return str(v)


def _attr(attrs, key, path, size):
    """Read a string attribute (layer and weight names, model_config, keras_version, backend;
    an empty one may have any type) after checking its type and declared size against the
    file: a corrupt header must not make h5py allocate for billions of elements, and libhdf5
    crashes (SIGSEGV) converting a string's heap data that a corrupt type message declares as
    another variable-length type."""
    from h5py import h5t

    aid = attrs.get_id(key)
    tid = aid.get_type()
    count = prod(aid.shape or ())
    if count and tid.get_class() != h5t.STRING:  # (Keras writes a layer without weights as [])
        raise FormatError(f"attribute '{key}' is not a string (HDF5 type class "
                          f"{tid.get_class()}; corrupt header?)", path)
    fixed = count and not tid.is_variable_str()
    if count > size or (fixed and count * tid.get_size() > size):
        raise FormatError(f"attribute '{key}' declares {aid.shape} strings of "
                          f"{tid.get_size()} bytes, more than the file could hold (corrupt "
                          "header?)", path)
    return attrs[key]


def _names(attrs, key, path, where, size) -> list:
    if key not in attrs:
        return []
    raw = _attr(attrs, key, path, size)
    arr = np.asarray(raw)
    if arr.size > _MAX_LAYERS:
        raise FormatError(f"{where}: attribute {key} lists {arr.size} names", path)
    if arr.size == 0:
        return []
    return [_text(v) for v in arr.reshape(-1)]


def _weights_root(f, path):
    if "layer_names" in f.attrs:  # save_weights() file
        return f
    if "model_weights" in f and "layer_names" in f["model_weights"].attrs:
        return f["model_weights"]
    if "layers" in f and "vars" in f:
        raise FormatError("this is a Keras 3 '.weights.h5' file, whose variables are unnamed; "
                          "save with model.save('model.h5') (legacy HDF5) instead", path)
    raise FormatError("HDF5 file without Keras weights (no layer_names attribute at the root "
                      "or in /model_weights)", path)


def _var_name(weight_name: str) -> str:
    base = weight_name.rsplit("/", 1)[-1]
    return base.split(":", 1)[0]


def _parent_name(weight_name: str, layer: str) -> str:
    parts = weight_name.split("/")
    return parts[-2] if len(parts) >= 2 else layer


def load_keras_h5(path) -> Dict[str, np.ndarray]:
    """``{"layer/var": float array}`` for every weight in a Keras HDF5 file.

    A nested model layer (e.g. a MobileNet backbone inside a Functional model) contributes
    its sub-layers' weights under their own names (``conv1/kernel``); if a name would repeat,
    a FormatError says so.
    """
    path = os.fspath(path)
    h5py, f, size = _open(path)
    budget = output_budget(size)
    used = 0
    out: Dict[str, np.ndarray] = {}
    with guard(path, "Keras HDF5 file"), f:
        root = _weights_root(f, path)
        for layer in _names(root.attrs, "layer_names", path, "model_weights", size):
            if layer not in root:
                raise FormatError(f"layer '{layer}' is listed but has no group", path)
            g = root[layer]
            wnames = _names(g.attrs, "weight_names", path, f"layer '{layer}'", size)
            bases = [_var_name(w) for w in wnames]
            nested = len(set(bases)) != len(bases)
            for wname, base in zip(wnames, bases):
                if wname not in g:
                    raise FormatError(f"layer '{layer}': weight '{wname}' is listed but missing", path)
                ds = g[wname]
                if not isinstance(ds, h5py.Dataset):
                    raise FormatError(f"layer '{layer}': '{wname}' is not a dataset", path)
                if ds.dtype.kind not in "fiub":
                    raise FormatError(f"layer '{layer}': weight '{wname}' has non-numeric dtype "
                                      f"{ds.dtype}", path)
                nbytes = prod(ds.shape or ()) * ds.dtype.itemsize
                used += nbytes
                if used > budget:
                    raise FormatError(f"weight '{wname}' of shape {ds.shape} is larger than the "
                                      "file could hold (corrupt header?)", path)
                key = f"{_parent_name(wname, layer) if nested else layer}/{base}"
                if key in out:
                    raise FormatError(f"weight name '{key}' occurs twice", path)
                arr = np.asarray(ds[()])
                if not arr.dtype.isnative:
                    arr = arr.astype(arr.dtype.newbyteorder("="))
                out[key] = np.ascontiguousarray(arr)
    return out


def read_keras_model_config(path) -> Optional[dict]:
    """The ``model_config`` JSON stored by ``model.save("m.h5")`` as a dict (None for a
    weights-only file), plus ``keras_version``/``backend`` when present."""
    path = os.fspath(path)
    _h5py, f, size = _open(path)
    with guard(path, "Keras HDF5 file"), f:
        if "model_config" not in f.attrs:
            return None
        raw = _attr(f.attrs, "model_config", path, size)
        cfg = json.loads(_text(raw))
        if not isinstance(cfg, dict):
            raise FormatError("model_config is not a JSON object", path)
        for k in ("keras_version", "backend"):
            if k in f.attrs:
                cfg.setdefault(k, _text(_attr(f.attrs, k, path, size)))
        return cfg
