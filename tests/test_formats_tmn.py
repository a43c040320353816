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


# ---------------------------------------------------------------------------------------------
# Optimised graphs: tinymnet.load builds the plan straight from the mapped file (C++ reader)


def test_optimized_file_loads_by_the_cpp_reader(tmp_path, small_graph):
    from tinymnet.bundled import read_tmn_header
    from tinymnet.passes import optimize
    from tinymnet.runtime import compile_graph

    quant = {k: quantize_per_channel(v) for k, v in small_graph.params.items() if v.ndim >= 2}
    path = tmp_path / "o.tmn"
    save_tmn(path, small_graph, labels=[f"c{i}" for i in range(10)], preprocess={"size": 64},
             provenance={"source": "test", "scale": 1.0}, quantized=quant, optimize=True)
    header = read_tmn_header(path)
    assert header["optimized"] == {"output_shape": [None, 10]}
    assert not any(n["op"] == "batchnorm" for n in header["graph"]["nodes"])
    # weights a pass left alone stay 8-bit; a conv that absorbed a BatchNorm is float32 now
    opt = optimize(small_graph)
    dtypes = {k: header["tensors"][k]["dtype"] for k in opt.params if k in quant}
    kept = {k for k in dtypes if opt.params[k] is small_graph.params[k]}
    assert kept and len(kept) < len(dtypes)
    assert all(dtypes[k] == ("uint8" if k in kept else "float32") for k in dtypes)

    model = tinymnet.load(path, threads=1)
    assert model._compiled.graph is None  # the fast path: no Python graph, no passes
    assert model.labels[9] == "c9" and model.preprocess == {"size": 64}
    assert model.provenance == {"source": "test", "scale": 1.0}
    assert isinstance(model.preprocess["size"], int)
    assert isinstance(model.provenance["scale"], float)  # as json.loads reads it
    assert model.input_shape == (64, 64, 3)
    x = np.random.default_rng(2).standard_normal((2, 64, 64, 3)).astype(np.float32)
    slow = compile_graph(load_tmn(path).graph, threads=1)  # Python reader, dequantized there
    # the same plan but for the classifiers, which keep their 8-bit weights on the fast path
    # (and round differently)
    assert slow.weight_bytes > model.weight_bytes
    assert np.max(np.abs(model(x) - slow(x))) <= 1e-5 * np.max(np.abs(slow(x)))
    ref = run_reference(small_graph, x)
    assert np.max(np.abs(model(x) - ref)) <= 0.1 * np.max(np.abs(ref))  # 8-bit weights
    # the graph is read from the file on first use
    assert [n.name for n in model.graph.nodes] == [n["name"] for n in header["graph"]["nodes"]]


def test_optimized_file_changed_after_load(tmp_path, small_graph):
    path = tmp_path / "o.tmn"
    save_tmn(path, small_graph, optimize=True)
    model = tinymnet.load(path)
    save_tmn(path, small_graph, labels=["x"] * 10, optimize=True)
    with pytest.raises(FormatError, match="changed since the model was loaded"):
        model.graph


def test_cpp_crc32_agrees_with_zlib():
    """_C.crc32 (the .tmn checksum: VPCLMULQDQ or PCLMULQDQ folding where the CPU has it,
    four table streams otherwise) equals zlib.crc32 for every length around its 16 / 64 /
    128-byte steps and the 256-byte switch to 256-bit folding, any start value and unaligned
    starts."""
    import zlib

    from tinymnet import _C

    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    lengths = list(range(0, 400)) + [511, 512, 513, 1000, 4095, 4096, 65_537, 299_000]
    for n in lengths:
        for start in (0, 1, 13):
            chunk = data[start:start + n]
            for crc in (0, 0x12345678, 0xFFFFFFFF):
                assert _C.crc32(chunk, crc) == zlib.crc32(chunk, crc), (n, start, crc)
    assert _C.crc32(memoryview(data)[5:70_005]) == zlib.crc32(data[5:70_005])


@pytest.mark.parametrize("n_labels", [0, 1, 2, 3, 5, 17, 100])
def test_cpp_reader_checksum_agrees_with_zlib(tmp_path, small_graph, n_labels):
    """Files of many header lengths: the C++ CRC-32 (carry-less multiply or tables) must accept
    what zlib.crc32 wrote, and reject a flipped byte anywhere."""
    from tinymnet import _C

    path = tmp_path / "c.tmn"
    save_tmn(path, small_graph, labels=["L" * i for i in range(n_labels)], optimize=True)
    assert _C.TmnFile(str(path)).crc == struct.unpack_from("<I", path.read_bytes(), 40)[0]
    size = os.path.getsize(path)
    for offset in (70, size // 3, size - 1 - n_labels):
        bad = tmp_path / f"bad{offset}.tmn"
        data = bytearray(path.read_bytes())
        data[offset] ^= 0x10
        bad.write_bytes(bytes(data))
        with pytest.raises(ValueError, match="checksum"):
            _C.TmnFile(str(bad))
        with pytest.raises(FormatError, match=r"checksum"):
            tinymnet.load(bad)


def test_cpp_header_values_as_python_reads_them(tmp_path, small_graph):
    """The C++ JSON reader (fast paths for plain string runs and short integers) gives the
    header's values exactly as json.loads does."""
    from tinymnet import _C

    values = {"ints": [0, -0, 7, -12, 999_999_999_999_999, 1_234_567_890_123_456],
              "floats": [0.5, -2.25e-3, 1e300, 0.16666666666666666, -0.0, 3.0],
              "text": ["plain", "tab\there", 'quote " and \\ slash', "caf\u00e9 \u2603 \U0001F600",
                       "", "x" * 5000]}
    path = tmp_path / "v.tmn"
    save_tmn(path, small_graph, provenance=values, optimize=True)
    got = _C.TmnFile(str(path)).header("provenance")
    assert got == values
    assert [type(v) for v in got["ints"] + got["floats"]] == [
        type(v) for v in values["ints"] + values["floats"]]


def test_cpp_header_objects_keep_order_and_refuse_duplicate_keys(tmp_path, small_graph):
    """Objects small and large (the C++ reader scans small ones and indexes large ones by
    key) come back whole and in the file's order, as json.loads gives them; a duplicate key
    in either kind makes the header malformed."""
    import zlib

    from tinymnet import _C

    big = {f"k{(i * 7) % 30:02d}": {"i": i, "nested": {"z": [i], "a": str(i)}} for i in range(30)}
    values = {"big": big, "small": {"b": 1, "a": 2}}
    path = tmp_path / "o.tmn"
    save_tmn(path, small_graph, provenance=values, optimize=True)
    got = _C.TmnFile(str(path)).header("provenance")
    from tinymnet.bundled import read_tmn_header

    as_json_loads_reads = read_tmn_header(path)["provenance"]
    assert got == values
    assert list(got["big"]) == list(as_json_loads_reads["big"])
    assert list(got["small"]) == list(as_json_loads_reads["small"])
    assert _C.TmnFile(str(path)).header("provenance", "big") == big

    def header_file(name, text):
        hdr = text.encode()
        data_offset = (64 + len(hdr) + 63) // 64 * 64
        crc = zlib.crc32(hdr) & 0xFFFFFFFF
        fixed = struct.pack("<8sIIQQQI20x", b"TINYMNET", 1, 0, len(hdr), data_offset, 0, crc)
        out = tmp_path / name
        out.write_bytes(fixed + hdr + b"\0" * (data_offset - 64 - len(hdr)))
        return str(out)

    many = ", ".join(f'"m{i}": {i}' for i in range(20))
    for name, extra in (("small.tmn", '"a": 1, "b": 2, "a": 3'),
                        ("large.tmn", many + ', "m7": 0')):
        bad = header_file(name, '{"graph": {}, "tensors": {}, "x": {' + extra + "}}")
        with pytest.raises(ValueError, match="duplicate key"):
            _C.TmnFile(bad)
    ok = header_file("ok.tmn", '{"graph": {}, "tensors": {}, "x": {' + many + "}}")
    assert _C.TmnFile(ok).header("x", "m19") == 19


def test_optimized_file_keeps_the_source_graph_for_info(tmp_path, small_graph):
    """An optimised file describes the model as converted (BN not folded: the same params and
    MACs as the graph given), without making load parse it; keep_source=False leaves only
    the stored graph."""
    from tinymnet.bundled import read_tmn_header
    from tinymnet.formats.tmn import load_source_graph
    from tinymnet.info import info_table, info_totals
    from tinymnet.passes import optimize

    path = tmp_path / "s.tmn"
    save_tmn(path, small_graph, optimize=True)
    header = read_tmn_header(path)
    assert isinstance(header["source_graph"], str)  # one JSON string, not a tree to parse
    src = load_source_graph(path)
    assert info_totals(src) == info_totals(small_graph) != info_totals(optimize(small_graph))
    assert info_table(src) == info_table(small_graph)
    assert tinymnet.load(path)._compiled.graph is None  # still the fast path

    bare = tmp_path / "b.tmn"
    save_tmn(bare, small_graph, optimize=True, keep_source=False)
    assert "source_graph" not in read_tmn_header(bare)
    assert info_totals(load_source_graph(bare)) == info_totals(optimize(small_graph))
    plain = tmp_path / "p.tmn"
    save_tmn(plain, small_graph)  # unoptimised: the stored graph is the source
    assert info_totals(load_source_graph(plain)) == info_totals(small_graph)


def _one_pixel_head_graph():
    """A stem, then the layers that see one pixel: a 1x1 conv of the pooled features (V3's
    Conv_2, as TF-slim graphs have it) and a linear classifier."""
    from tinymnet.graph import GraphBuilder

    b = GraphBuilder("head", (16, 16, 3))
    x = b.conv2d(b.input, "stem", 24, 3, stride=2, padding=1, bias=True)
    x = b.add("global_avg_pool", [x], "gap")                             # 1x1x24
    x = b.conv2d(x, "conv_2", 40, 1, bias=True, activation="hardswish")  # 1x1x40
    x = b.add("flatten", [x], "flat")
    x = b.linear(x, "logits", 37)
    return b.build([x])


@pytest.mark.parametrize("signed", [False, True])
def test_one_pixel_layers_run_on_8bit_weights(tmp_path, signed):
    """A 1x1 conv of a 1x1 image and a linear layer whose file stores 8-bit weights keep them
    8-bit (LinearQ8): the results match the reference on the dequantized weights, and the
    plan holds a quarter of their float32 bytes."""
    g = _one_pixel_head_graph()
    rng = np.random.default_rng(5)
    quant = {"conv_2.weight": quantize_per_channel(g.params["conv_2.weight"])}  # uint8, per channel
    w = g.params["logits.weight"]
    if signed:  # int8, one scale and zero point for the whole tensor
        scale = np.float32(np.abs(w).max() / 120)
        q = np.clip(np.round(w / scale) + 3, -128, 127).astype(np.int8)
        quant["logits.weight"] = QuantizedTensor(q, np.array([scale], np.float32),
                                                 np.array([3], np.int32), 0)
    else:
        quant["logits.weight"] = quantize_per_channel(w)
    save_tmn(tmp_path / "q.tmn", g, quantized=quant, optimize=True)
    save_tmn(tmp_path / "f.tmn", g, optimize=True)
    dequantized = load_tmn(tmp_path / "q.tmn").graph
    x = rng.standard_normal((3, 16, 16, 3)).astype(np.float32)
    ref = run_reference(dequantized, x)
    q1 = tinymnet.load(tmp_path / "q.tmn", threads=1)
    y = q1(x)
    assert np.max(np.abs(y - ref)) <= 1e-5 * np.max(np.abs(ref))
    np.testing.assert_array_equal(tinymnet.load(tmp_path / "q.tmn", threads=2)(x), y)
    f1 = tinymnet.load(tmp_path / "f.tmn", threads=1)
    float_bytes = 4 * (40 * 24 + 37 * 40)
    assert f1.weight_bytes - q1.weight_bytes >= 0.5 * float_bytes, (f1.weight_bytes, q1.weight_bytes)


@pytest.mark.parametrize("signed", [False, True])
def test_squeeze_excite_runs_on_8bit_weights(tmp_path, signed):
    """Squeeze-excite FCs see one pixel: 8-bit weights in the file (V3-Small's bundled model
    has them) stay 8-bit in the plan, per channel or per tensor, with results matching the
    reference on the dequantized weights at any thread count, in odd channel counts."""
    from tinymnet.graph import GraphBuilder

    b = GraphBuilder("se", (9, 7, 3))
    x = b.conv2d(b.input, "stem", 37, 3, stride=2, padding=1, bias=True)  # 5x4x37
    x = b.squeeze_excite(x, "se", 17, inner="relu", gate="hardsigmoid")
    x = b.conv2d(x, "proj", 19, 1, bias=True)
    x = b.squeeze_excite(x, "se2", 3, inner="relu", gate="hardsigmoid", conv_layout=False)
    g = b.build([x])
    quant = {"se.fc1.weight": quantize_per_channel(g.params["se.fc1.weight"])}
    for name in ("se.fc2.weight", "se2.fc1.weight", "se2.fc2.weight"):
        w = g.params[name]
        if signed:  # int8, one scale and zero point for the whole tensor
            scale = np.float32(np.abs(w).max() / 120)
            q = np.clip(np.round(w / scale) - 5, -128, 127).astype(np.int8)
            quant[name] = QuantizedTensor(q, np.array([scale], np.float32),
                                          np.array([-5], np.int32), 0)
        else:
            quant[name] = quantize_per_channel(w)
    save_tmn(tmp_path / "q.tmn", g, quantized=quant, optimize=True)
    save_tmn(tmp_path / "f.tmn", g, optimize=True)
    x = np.random.default_rng(7).standard_normal((3, 9, 7, 3)).astype(np.float32)
    ref = run_reference(load_tmn(tmp_path / "q.tmn").graph, x)
    q1 = tinymnet.load(tmp_path / "q.tmn", threads=1)
    y = q1(x)
    assert np.max(np.abs(y - ref)) <= 1e-5 * np.max(np.abs(ref))
    np.testing.assert_array_equal(tinymnet.load(tmp_path / "q.tmn", threads=2)(x), y)
    float_bytes = 4 * 2 * (17 * 37 + 3 * 19)
    f1 = tinymnet.load(tmp_path / "f.tmn", threads=1)
    assert f1.weight_bytes - q1.weight_bytes >= 0.5 * float_bytes, (f1.weight_bytes, q1.weight_bytes)


def test_8bit_one_pixel_weights_are_read_in_place(tmp_path):
    """The 8-bit weights of one-pixel layers are read where they lie in the mapped file (the
    kernel takes them row-major, as stored): nothing is packed or copied, rows of any length
    (short rows interleaved, long ones streamed one by one, odd tails) give the reference's
    results, and the model keeps working after its file is replaced and deleted."""
    from tinymnet.graph import GraphBuilder

    b = GraphBuilder("long", (4, 4, 3))
    x = b.conv2d(b.input, "stem", 300, 3, stride=2, padding=1, bias=True)
    x = b.add("global_avg_pool", [x], "gap")                               # 1x1x300
    x = b.conv2d(x, "conv_2", 1030, 1, bias=True, activation="hardswish")  # k = 300
    x = b.add("flatten", [x], "flat")
    x = b.linear(x, "logits", 37)                                          # k = 1030
    g = b.build([x])
    w = g.params["logits.weight"]
    scale = np.float32(np.abs(w).max() / 120)
    quant = {"conv_2.weight": quantize_per_channel(g.params["conv_2.weight"]),
             "logits.weight": QuantizedTensor(np.clip(np.round(w / scale), -128, 127).astype(np.int8),
                                              np.array([scale], np.float32),
                                              np.array([0], np.int32), 0)}
    path = tmp_path / "q.tmn"
    save_tmn(path, g, quantized=quant, optimize=True)
    x = np.random.default_rng(3).standard_normal((2, 4, 4, 3)).astype(np.float32)
    ref = run_reference(load_tmn(path).graph, x)
    model = tinymnet.load(path, threads=1)
    y = model(x)
    assert np.max(np.abs(y - ref)) <= 1e-5 * np.max(np.abs(ref))
    np.testing.assert_array_equal(tinymnet.load(path, threads=2)(x), y)
    assert model.mapped_weight_bytes >= 300 * 1030 + 1030 * 37
    save_tmn(tmp_path / "new.tmn", g, optimize=True)  # float weights this time
    os.replace(tmp_path / "new.tmn", path)  # as `tinymnet convert` replaces a file
    np.testing.assert_array_equal(model(x), y)
    os.remove(path)
    np.testing.assert_array_equal(model(x), y)
