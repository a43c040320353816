"""tinymnet.formats.safetensors: hand-written reader/writer, strict header validation."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from tinymnet.errors import FormatError
from tinymnet.formats import detect_format, load_safetensors, load_weights, save_safetensors

try:
    import safetensors.numpy as st_numpy
except ImportError:  # pragma: no cover - optional
    st_numpy = None

needs_pkg = pytest.mark.skipif(st_numpy is None, reason="the safetensors package is not installed")


def _tensors():
    rng = np.random.default_rng(0)
    return {
        "conv.weight": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "bn.running_var": rng.random(8).astype(np.float64),
        "half": rng.standard_normal((2, 5)).astype(np.float16),
        "ids": np.arange(-4, 4, dtype=np.int64),
        "i32": np.arange(6, dtype=np.int32).reshape(2, 3),
        "i16": np.arange(3, dtype=np.int16),
        "i8": np.array([-128, 0, 127], dtype=np.int8),
        "u8": np.array([0, 200, 255], dtype=np.uint8),
        "mask": np.array([[True, False], [False, True]]),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), np.float32),
    }


def _raw(path, header: dict, data: bytes, pad=True):
    blob = json.dumps(header).encode()
    if pad:
        blob += b" " * (-(len(blob) + 8) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


def test_roundtrip(tmp_path):
    t = _tensors()
    p = tmp_path / "m.safetensors"
    save_safetensors(p, t, metadata={"format": "np"})
    assert detect_format(p) == "safetensors"
    got, meta = load_safetensors(p, with_metadata=True)
    assert meta == {"format": "np"}
    assert set(got) == set(t)
    for k, v in t.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    np.testing.assert_array_equal(load_weights(p)["ids"], t["ids"])


@needs_pkg
def test_reads_files_written_by_safetensors(tmp_path):
    t = _tensors()
    p = tmp_path / "ref.safetensors"
    st_numpy.save_file(t, str(p), metadata={"k": "v"})
    got, meta = load_safetensors(p, with_metadata=True)
    assert meta == {"k": "v"}
    for k, v in t.items():
        assert got[k].dtype == v.dtype, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)


@needs_pkg
def test_safetensors_reads_our_files(tmp_path):
    t = _tensors()
    p = tmp_path / "ours.safetensors"
    save_safetensors(p, t)
    ref = st_numpy.load_file(str(p))
    for k, v in t.items():
        assert ref[k].dtype == v.dtype, k
        np.testing.assert_array_equal(ref[k], v, err_msg=k)


def test_bfloat16_is_widened(tmp_path):
    vals = np.array([1.0, -2.5, 3.140625, 0.0], np.float32)
    bits = (vals.view(np.uint32) >> 16).astype("<u2")
    p = _raw(tmp_path / "bf16.safetensors",
             {"x": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}, bits.tobytes())
    got = load_safetensors(p)["x"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, vals.reshape(2, 2))


F4 = np.arange(4, dtype=np.float32).tobytes()


@pytest.mark.parametrize(
    "header,data,pattern",
    [
        ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, F4[:12] + b"", "needs 16 bytes"),
        ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, F4[:8], "runs past the end"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
          "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, F4[:12], "overlaps"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, F4, "gap"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, F4, "trailing"),
        ({"a": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}, F4[:4], "unsupported dtype"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, F4[:4], "invalid shape"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, F4[:4], "not ordered"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}, F4[:4], "keys"),
        ({"a": [1, 2]}, b"", "not an object"),
        ({"__metadata__": {"a": 1}}, b"", "metadata"),
        ({"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 4]}}, F4[:4], "needs"),
    ],
)
def test_header_validation(tmp_path, header, data, pattern):
    p = _raw(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(FormatError, match=pattern) as ei:
        load_safetensors(p)
    assert str(p) in str(ei.value)


def test_header_length_and_json_errors(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(FormatError, match="header claims"):
        load_safetensors(p)
    p.write_bytes(struct.pack("<Q", 50) + b"{" + b" " * 10)
    with pytest.raises(FormatError, match="truncated"):
        load_safetensors(p)
    p.write_bytes(struct.pack("<Q", 8) + b"{not js}")
    with pytest.raises(FormatError, match="not valid JSON"):
        load_safetensors(p)
    p.write_bytes(struct.pack("<Q", 4) + b"[1] ")
    with pytest.raises(FormatError, match="not a JSON object"):
        load_safetensors(p)
    p.write_bytes(b'{"a":')
    with pytest.raises(FormatError, match="too short"):
        load_safetensors(p)
    blob = b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {}}'
    p.write_bytes(struct.pack("<Q", len(blob)) + blob + F4[:4])
    with pytest.raises(FormatError, match="duplicate key"):
        load_safetensors(p)
    deep = b"[" * 100000 + b"]" * 100000
    p.write_bytes(struct.pack("<Q", len(deep)) + deep)
    with pytest.raises(FormatError):
        load_safetensors(p)


def test_save_rejects_unsupported_dtypes(tmp_path):
    with pytest.raises(ValueError):
        save_safetensors(tmp_path / "o.safetensors", {"o": np.array(["a"], dtype=object)})
