"""The .tmn model file: round trip, 8-bit weights, zero-copy load, and clear errors."""
import os
import struct

import numpy as np
import pytest

import tinymnet
from tinymnet.errors import FormatError
from tinymnet.formats.tmn import QuantizedTensor, load_tmn, quantize_per_channel, save_tmn
from tinymnet.graph import run_reference
from tinymnet.models import build


@pytest.fixture(scope="module")
def small_graph():
    return build("mobilenet_v3_small", width=0.5, resolution=64, num_classes=10)


@pytest.fixture
def saved(tmp_path, small_graph):
    path = tmp_path / "m.tmn"
    save_tmn(path, small_graph, labels=[f"c{i}" for i in range(10)],
             preprocess={"mean": [0.485, 0.456, 0.406]}, provenance={"source": "test"})
    return path


def test_round_trip_is_exact_and_zero_copy(saved, small_graph):
    tm = load_tmn(saved)
    assert tm.labels[3] == "c3" and tm.preprocess["mean"][0] == 0.485
    assert tm.provenance == {"source": "test"}
    assert set(tm.graph.params) == set(small_graph.params)
    for name, array in small_graph.params.items():
        np.testing.assert_array_equal(tm.graph.params[name], array)
    w = next(a for a in tm.graph.params.values() if a.ndim == 4)
    assert not w.flags.owndata and not w.flags.writeable  # a view of the read-only mmap
    assert w.ctypes.data % 64 == 0


def test_loaded_model_runs_on_kernels(saved, small_graph):
    model = tinymnet.load(saved)
    x = np.random.default_rng(1).standard_normal((2, 64, 64, 3)).astype(np.float32)
    y, ref = model(x), run_reference(small_graph, x)
    assert y.shape == (2, 10)
    assert np.max(np.abs(y - ref)) <= 1e-4 * np.max(np.abs(ref))
    y_nchw = model(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), layout="NCHW")
    np.testing.assert_allclose(y_nchw, y, rtol=0, atol=1e-6 * np.max(np.abs(y)))


def test_quantized_weights_dequantize_at_load(tmp_path, small_graph):
    quant = {k: quantize_per_channel(v) for k, v in small_graph.params.items() if v.ndim >= 2}
    path = tmp_path / "q.tmn"
    save_tmn(path, small_graph, quantized=quant)
    tm = load_tmn(path)
    for name, qt in quant.items():
        np.testing.assert_array_equal(tm.graph.params[name], qt.dequantize())
        step = float(qt.scale.max())
        assert np.max(np.abs(tm.graph.params[name] - small_graph.params[name])) <= step
    float_size = os.path.getsize(tmp_path / "q.tmn")
    save_tmn(tmp_path / "f.tmn", small_graph)
    assert float_size < 0.4 * os.path.getsize(tmp_path / "f.tmn")


def test_quantized_tensor_per_channel_formula():
    q = np.array([[0, 128, 255], [10, 20, 30]], np.uint8)
    qt = QuantizedTensor(q, np.array([0.5, 2.0], np.float32), np.array([128, 10], np.int32), 0)
    np.testing.assert_array_equal(qt.dequantize(), [[-64.0, 0.0, 63.5], [0.0, 20.0, 40.0]])


def _corrupt(path, offset, value=None):
    data = bytearray(path.read_bytes())
    data[offset] = (data[offset] ^ 0x5A) if value is None else value
    path.write_bytes(bytes(data))


def test_bit_flip_in_data_fails_checksum(saved):
    _corrupt(saved, os.path.getsize(saved) - 100)
    with pytest.raises(FormatError, match=r"m\.tmn.*checksum"):
        load_tmn(saved)


def test_bit_flip_in_header_fails_checksum(saved):
    _corrupt(saved, 70)
    with pytest.raises(FormatError, match="checksum"):
        load_tmn(saved)


@pytest.mark.parametrize("keep", [0, 10, 63, 64, 200, -1000])
def test_truncated_file_is_refused(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    with pytest.raises(FormatError, match=r"m\.tmn"):
        load_tmn(saved)


def test_wrong_version_and_magic(saved):
    data = bytearray(saved.read_bytes())
    data[8:12] = struct.pack("<I", 99)
    saved.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="version 99"):
        load_tmn(saved)
    data[:8] = b"NOTATMN!"
    saved.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="magic"):
        load_tmn(saved)


def test_oversized_header_length_is_refused(saved):
    data = bytearray(saved.read_bytes())
    data[16:24] = struct.pack("<Q", 1 << 40)
    saved.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="truncated or corrupt"):
        load_tmn(saved)


def test_load_refuses_other_formats_with_advice(tmp_path):
    p = tmp_path / "weights.bin"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(FormatError, match="convert it first"):
        tinymnet.load(p)
    with pytest.raises(FormatError, match="no such file"):
        tinymnet.load(tmp_path / "missing.tmn")


def test_model_input_errors(saved):
    model = tinymnet.load(saved)
    with pytest.raises(ValueError, match=r"batch \(N, 64, 64, 3\)"):
        model(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="NHWC batch"):
        model(np.zeros((64, 3), np.float32))
    with pytest.raises(ValueError, match="layout"):
        model(np.zeros((1, 64, 64, 3), np.float32), layout="HWC")
    with pytest.raises(ValueError, match="float32"):
        model(np.zeros((1, 64, 64, 3), np.uint8))
