"""Every reader, on every kind of broken input, raises FormatError naming the file, and
nothing else: missing/empty/random files, truncated and bit-flipped copies of real files,
and files of another format."""
from __future__ import annotations

import json
import struct
import time
import tracemalloc
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
from tinymnet.formats.tmn import load_tmn

try:
    from _fixtures import fixtures_dir
    from test_formats_pth import make_legacy, make_zip, make_zip_pth, pickled_dict, pickled_tensor
except ImportError:  # tests/ made a package
    from ._fixtures import fixtures_dir
    from .test_formats_pth import (make_legacy, make_zip, make_zip_pth, pickled_dict,
                                   pickled_tensor)

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


# ---------------------------------------------------------------------------------------
# size fields declaring 2**60 bytes: refused from the header, before anything is allocated

HUGE = 1 << 60


def _tmn_file(path, header: dict, data_size=0, fixed_data_size=None):
    """A .tmn with a hand-written JSON header and a valid checksum (a hostile file can
    always compute one)."""
    hdr = json.dumps(header).encode()
    data_offset = (64 + len(hdr) + 63) // 64 * 64
    data = b"\0" * data_size
    crc = zlib.crc32(data, zlib.crc32(hdr)) & 0xFFFFFFFF
    fixed = struct.pack("<8sIIQQQI20x", b"TINYMNET", 1, 0, len(hdr), data_offset,
                        data_size if fixed_data_size is None else fixed_data_size, crc)
    path.write_bytes(fixed + hdr + b"\0" * (data_offset - 64 - len(hdr)) + data)


def _huge_tmn_data_size(p):
    _tmn_file(p, {"graph": {}, "tensors": {}}, fixed_data_size=HUGE)
    return load_tmn, "header sizes do not fit"


def _huge_tmn_tensor(p):
    _tmn_file(p, {"graph": {}, "tensors": {"w": {"dtype": "float32", "shape": [1 << 58],
                                                 "offset": 0, "nbytes": HUGE}}}, 64)
    return load_tmn, "outside the file's data"


def _huge_safetensors_header(p):
    p.write_bytes(struct.pack("<Q", HUGE) + b"{}")
    return load_safetensors, "header claims"


def _huge_safetensors_tensor(p):
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [1 << 58],
                            "data_offsets": [0, HUGE]}}).encode()
    p.write_bytes(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 8)
    return load_safetensors, "runs past the end"


def _huge_pth_storage(p, layout):
    main = pickled_dict([("w", pickled_tensor("0", HUGE, 0, (HUGE,), (1,),
                                              legacy=layout == "legacy"))])
    storages = [("0", HUGE, b"\0" * 16)]
    (make_legacy if layout == "legacy" else make_zip)(p, main, storages)
    return load_state_dict, "0"


def _huge_onnx_tensor(p):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    init = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 30, 1 << 30],
                       raw_data=b"\0" * 16)
    g = helper.make_graph([helper.make_node("Relu", ["w"], ["y"])], "g", [],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [init])
    onnx.save(helper.make_model(g), str(p))
    return load_onnx, "raw_data has 16 bytes"


def _huge_tflite_buffer(p):
    tflite = pytest.importorskip("tflite")
    flatbuffers = pytest.importorskip("flatbuffers")
    b = flatbuffers.Builder(1024)
    tflite.BufferStart(b)
    empty = tflite.BufferEnd(b)
    tflite.BufferStart(b)
    tflite.BufferAddOffset(b, 64)  # data stored after the flatbuffer (models > 2 GB)
    tflite.BufferAddSize(b, HUGE)
    huge = tflite.BufferEnd(b)
    name = b.CreateString("w")
    tflite.TensorStartShapeVector(b, 1)
    b.PrependInt32(4)
    shape = b.EndVector()
    tflite.TensorStart(b)
    tflite.TensorAddShape(b, shape)
    tflite.TensorAddBuffer(b, 1)
    tflite.TensorAddName(b, name)
    tensor = tflite.TensorEnd(b)
    tflite.SubGraphStartTensorsVector(b, 1)
    b.PrependUOffsetTRelative(tensor)
    tensors = b.EndVector()
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensors)
    sg = tflite.SubGraphEnd(b)
    tflite.ModelStartSubgraphsVector(b, 1)
    b.PrependUOffsetTRelative(sg)
    sgs = b.EndVector()
    tflite.ModelStartBuffersVector(b, 2)
    b.PrependUOffsetTRelative(huge)
    b.PrependUOffsetTRelative(empty)
    bufs = b.EndVector()
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddSubgraphs(b, sgs)
    tflite.ModelAddBuffers(b, bufs)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    p.write_bytes(bytes(b.Output()))
    return load_tflite, "lies outside the file"


HUGE_CASES = {
    "tmn-data-size": _huge_tmn_data_size,
    "tmn-tensor": _huge_tmn_tensor,
    "safetensors-header": _huge_safetensors_header,
    "safetensors-tensor": _huge_safetensors_tensor,
    "pth-zip-storage": lambda p: _huge_pth_storage(p, "zip"),
    "pth-legacy-storage": lambda p: _huge_pth_storage(p, "legacy"),
    "onnx-tensor": _huge_onnx_tensor,
    "tflite-buffer": _huge_tflite_buffer,
}


@pytest.mark.parametrize("case", list(HUGE_CASES))
def test_sizes_of_2_60_bytes_are_refused_before_allocating(tmp_path, case):
    p = tmp_path / f"huge-{case}.bin"
    reader, reason = HUGE_CASES[case](p)
    tracemalloc.start()  # numpy reports its buffers to tracemalloc too
    try:
        with pytest.raises(FormatError) as ei:
            reader(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(p) in str(ei.value) and reason in str(ei.value)
    assert peak < 16 << 20, f"{peak} bytes allocated while refusing the file"


# ---------------------------------------------------------------------------------------
# images: every broken file is an ImageError naming the file


def _png_header_only(path, width, height):
    """A PNG whose IHDR declares width x height RGB pixels (and no pixel data)."""
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """{format: bytes} of one small valid image per format load_image is used with."""
    from PIL import Image

    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    im = Image.fromarray(rng.integers(0, 256, (23, 31, 3), dtype=np.uint8), "RGB")
    out = {}
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("BMP", "bmp"), ("GIF", "gif"),
                     ("WEBP", "webp")):
        p = d / f"ok.{ext}"
        im.save(p, fmt)
        out[ext] = p.read_bytes()
    return out


def _image_call(path):
    from tinymnet.preprocess import ImageError, load_image

    t0 = time.perf_counter()
    try:
        img = load_image(path)
    except ImageError as exc:
        assert str(path) in str(exc), f"message does not name the file: {exc}"
        img = None
    assert time.perf_counter() - t0 < 10, "load_image took too long"
    return img


@pytest.mark.parametrize("ext", ["png", "jpg", "bmp", "gif", "webp"])
def test_broken_images(tmp_path, images, ext):
    pytest.importorskip("PIL")
    data = images[ext]
    p = tmp_path / f"broken.{ext}"
    assert _image_call(tmp_path / f"ok.{ext}") is None  # missing file
    for n in sorted({0, 1, 8, 16, 40, len(data) // 3, len(data) // 2}):
        p.write_bytes(data[:n])
        assert _image_call(p) is None, f"{ext} truncated to {n} of {len(data)} bytes was read"
    rng = np.random.default_rng(zlib.crc32(ext.encode()))
    for _ in range(20):
        p.write_bytes(data[:8] + rng.bytes(int(rng.integers(0, 3000))))  # right magic, junk
        img = _image_call(p)
        assert img is None or img.mode == "RGB"
        d = bytearray(data)
        for pos in rng.integers(0, len(d), size=4):
            d[pos] ^= 1 << int(rng.integers(0, 8))
        p.write_bytes(bytes(d))
        img = _image_call(p)  # a flip in pixel data may still decode
        assert img is None or (img.mode == "RGB" and img.size == (31, 23))


@pytest.mark.parametrize("side", [10_000, 20_000, (1 << 31) - 1])
def test_decompression_bomb_images_are_refused(tmp_path, side):
    from PIL import Image

    from tinymnet.preprocess import ImageError, load_image

    assert side * side > Image.MAX_IMAGE_PIXELS  # 10000^2 is only warned about by Pillow
    p = tmp_path / "bomb.png"
    _png_header_only(p, side, side)
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="refused") as ei:
            load_image(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(p) in str(ei.value)
    assert peak < 16 << 20
