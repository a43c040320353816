"""Helpers shared by the file readers: error wrapping, bounded reads, optional imports."""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
from typing import Iterator

import numpy as np

from ..errors import FormatError

# Any single read or allocation a reader does is checked against the file size first;
# tensors may legitimately be larger than their storage (stride-0 expansion, shared storages
# read through several views), so the output of one file is capped at
# max(EXPANSION_FACTOR * file size, EXPANSION_FLOOR) bytes.
EXPANSION_FACTOR = 4
EXPANSION_FLOOR = 64 << 20


@contextlib.contextmanager
def guard(path, what: str) -> Iterator[None]:
    """Turn any unexpected exception raised while reading ``path`` into a FormatError.

    FormatError passes through untouched; KeyboardInterrupt/SystemExit are not caught.
    """
    try:
        yield
    except FormatError:
        raise
    except MemoryError as exc:
        raise FormatError(f"ran out of memory reading {what} (corrupt size field?)", path) from exc
    except RecursionError as exc:
        raise FormatError(f"{what} is nested too deeply (corrupt or hostile file)", path) from exc
    except Exception as exc:  # noqa: BLE001 - the point is to never leak another type
        detail = str(exc) or type(exc).__name__
        raise FormatError(
            f"corrupt or unsupported {what}: {type(exc).__name__}: {detail}", path
        ) from exc


def file_size(path) -> int:
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise FormatError("no such file", path) from exc
    except OSError as exc:
        raise FormatError(f"cannot stat file: {exc.strerror or exc}", path) from exc
    if not os.path.isfile(path):
        raise FormatError("not a regular file", path)
    return st.st_size


def read_bytes(path) -> bytes:
    """The whole file (after checking it is a regular file)."""
    file_size(path)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise FormatError(f"cannot read file: {exc.strerror or exc}", path) from exc


def read_head(path, n: int) -> bytes:
    file_size(path)
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as exc:
        raise FormatError(f"cannot read file: {exc.strerror or exc}", path) from exc


def output_budget(size: int) -> int:
    return max(EXPANSION_FACTOR * size, EXPANSION_FLOOR)


def optional_import(module: str, path, what: str, package: str | None = None):
    """Import an optional dependency or raise a FormatError that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = package or module
        raise FormatError(
            f"reading {what} needs the optional package '{pkg}', which is not installed: "
            f"pip install {pkg}",
            path,
        ) from exc


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16, any byte order) -> float32 (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def check_shape(shape, path, what: str) -> tuple:
    """A tuple of non-negative Python ints, or FormatError."""
    try:
        out = tuple(shape)
    except TypeError:
        raise FormatError(f"{what}: shape {shape!r} is not a sequence", path) from None
    for s in out:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise FormatError(f"{what}: invalid shape {shape!r}", path)
    if len(out) > 32:
        raise FormatError(f"{what}: shape has {len(out)} dimensions (at most 32)", path)
    return tuple(int(s) for s in out)


def sha256_file(path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (provenance records and download checks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
