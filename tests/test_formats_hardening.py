"""Every reader, on every kind of broken input, raises FormatError naming the file, and
nothing else: missing/empty/random files, truncated and bit-flipped copies of real files,
and files of another format."""
from __future__ import annotations

import time
import zlib

import numpy as np
import pytest

from tinymnet.errors import FormatError
from tinymnet.formats import (
    detect_format,
    load_checkpoint,
    load_keras_h5,
    load_onnx,
    load_safetensors,
    load_state_dict,
    load_tflite,
    load_weights,
    read_keras_model_config,
    save_safetensors,
)

try:
    from _fixtures import fixtures_dir
    from test_formats_pth import make_zip_pth
except ImportError:  # tests/ made a package
    from ._fixtures import fixtures_dir
    from .test_formats_pth import make_zip_pth

READERS = {
    "detect_format": detect_format,
    "load_state_dict": load_state_dict,
    "load_checkpoint": load_checkpoint,
    "load_safetensors": load_safetensors,
    "load_keras_h5": load_keras_h5,
    "read_keras_model_config": read_keras_model_config,
    "load_tflite": load_tflite,
    "load_onnx": load_onnx,
    "load_weights": load_weights,
}
# Readers whose optional dependency is missing still raise FormatError ("pip install ...").

FIXTURES = {
    "pth-legacy": ("models", "pytorch", "efficientnet-lite0-57934424.pth"),
    "h5": ("models", "keras", "mobilenet_v1_0.25_224_imagenet.h5"),
    "tflite": ("models", "tflite", "mobilenet_v1_0.25_128_quant.tflite"),
    "tflite-int8": ("models", "tflite", "tf2_mobilenet_v2_1.0_224_ptq.tflite"),
    "onnx": ("models", "onnx", "ch_ppocr_mobile_v2.0_cls_infer.onnx"),
}
MATCHING = {
    "pth-legacy": ("load_state_dict", "load_checkpoint", "load_weights"),
    "pth-zip": ("load_state_dict", "load_checkpoint", "load_weights"),
    "safetensors": ("load_safetensors", "load_weights"),
    "h5": ("load_keras_h5", "read_keras_model_config", "load_weights"),
    "tflite": ("load_tflite",),
    "tflite-int8": ("load_tflite",),
    "onnx": ("load_onnx",),
}


def _call(reader, path):
    """Run a reader; only FormatError (naming the path) may escape. Returns ok flag."""
    t0 = time.perf_counter()
    try:
        reader(path)
        ok = True
    except FormatError as exc:
        assert str(path) in str(exc), f"message does not name the file: {exc}"
        ok = False
    assert time.perf_counter() - t0 < 10, "reader took too long"
    return ok


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """{kind: bytes} of one valid file per format (real fixtures where available)."""
    d = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    tensors = {"conv.weight": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
               "bn.num_batches_tracked": np.array(3, np.int64),
               "fc.bias": rng.standard_normal(10).astype(np.float32)}
    out = {}
    save_safetensors(d / "s.safetensors", tensors)
    out["safetensors"] = (d / "s.safetensors").read_bytes()
    make_zip_pth(d / "z.pth", tensors)
    out["pth-zip"] = (d / "z.pth").read_bytes()
    root = fixtures_dir()
    if root is not None:
        for kind, parts in FIXTURES.items():
            p = root.joinpath(*parts)
            if p.is_file():
                out[kind] = p.read_bytes()
    return out


@pytest.mark.parametrize("reader", list(READERS))
def test_missing_empty_directory_random(tmp_path, reader):
    fn = READERS[reader]
    for path in (tmp_path / "does-not-exist.bin", tmp_path):
        with pytest.raises(FormatError) as ei:
            fn(path)
        assert str(path) in str(ei.value)
    p = tmp_path / "model.bin"
    rng = np.random.default_rng(42)
    contents = [b"", b"\0", b"\xff" * 7, b"TFL3", b"    TFL3", b"\x89HDF\r\n\x1a\n", b"PK\x03\x04",
                b"\x80\x02", b"\x08\x07\x12", b"{}", b"\x09\0\0\0\0\0\0\0{}", b"TINYMNET"]
    contents += [rng.bytes(n) for n in (1, 16, 1000, 65536)]
    prefixes = [b"    TFL3", b"\x89HDF\r\n\x1a\n", b"PK\x03\x04", b"\x80\x02\x8a\x0a", b"\x08\x07\x12\x05"]
    contents += [pre + rng.bytes(4000) for pre in prefixes]
    for content in contents:
        p.write_bytes(content)
        if fn is detect_format:
            # detect_format judges by magic bytes only: a right prefix is enough for it.
            _call(fn, p)
            continue
        with pytest.raises(FormatError) as ei:
            fn(p)
        assert str(p) in str(ei.value)


KINDS = ["pth-legacy", "pth-zip", "safetensors", "h5", "tflite", "tflite-int8", "onnx"]


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_copies(tmp_path, sources, kind):
    if kind not in sources:
        pytest.skip(f"no {kind} source file (shared fixtures absent)")
    data = sources[kind]
    p = tmp_path / "truncated.bin"
    for n in sorted({0, 1, 4, 8, 9, 16, 100, len(data) // 3, len(data) // 2, (len(data) * 9) // 10}):
        p.write_bytes(data[:n])
        for name in READERS:
            ok = _call(READERS[name], p)
            # A truncated file is never read as valid by its own reader (detect_format only
            # looks at the first bytes, so it may still name the format).
            if name in MATCHING[kind]:
                assert not ok, f"{name} accepted {kind} truncated to {n} of {len(data)} bytes"


@pytest.mark.parametrize("kind", KINDS)
def test_bit_flipped_copies(tmp_path, sources, kind):
    if kind not in sources:
        pytest.skip(f"no {kind} source file (shared fixtures absent)")
    data = sources[kind]
    rng = np.random.default_rng(zlib.crc32(kind.encode()))
    p = tmp_path / "flipped.bin"
    n_variants = 25 if len(data) < 1 << 20 else 12
    for i in range(n_variants):
        d = bytearray(data)
        # Flip bits in the first 4 KiB (headers, tables, pickles) and anywhere.
        head = rng.integers(0, min(len(d), 4096), size=4)
        anywhere = rng.integers(0, len(d), size=4)
        for pos in np.concatenate([head, anywhere]):
            d[pos] ^= 1 << int(rng.integers(0, 8))
        p.write_bytes(bytes(d))
        for name in MATCHING[kind] + ("detect_format",):
            _call(READERS[name], p)  # FormatError or a result; never another exception


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_reader_for_valid_file(tmp_path, sources, kind):
    if kind not in sources:
        pytest.skip(f"no {kind} source file (shared fixtures absent)")
    p = tmp_path / "valid.bin"
    p.write_bytes(sources[kind])
    for name, fn in READERS.items():
        ok = _call(fn, p)
        if name in MATCHING[kind] or name == "detect_format":
            assert ok, f"{name} failed on a valid {kind} file"
        else:
            assert not ok, f"{name} accepted a {kind} file"
