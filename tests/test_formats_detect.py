"""tinymnet.formats.detect: format from content, never from the file name."""
from __future__ import annotations

import pickle
import shutil
import struct
import zipfile

import numpy as np
import pytest

from tinymnet.errors import FormatError
from tinymnet.formats import FORMATS, detect_format, save_safetensors
from tinymnet.formats.pth import MAGIC_NUMBER

try:
    from _fixtures import fixture
except ImportError:  # tests/ made a package
    from ._fixtures import fixture


@pytest.mark.parametrize("parts,kind", [
    (("models", "pytorch", "efficientnet-lite0-57934424.pth"), "pth-legacy"),
    (("models", "keras", "mobilenet_v1_0.25_224_imagenet.h5"), "h5"),
    (("models", "tflite", "mobilenet_v2_1.0_224_quant.tflite"), "tflite"),
    (("models", "onnx", "ch_ppocr_mobile_v2.0_cls_infer.onnx"), "onnx"),
])
def test_fixtures(tmp_path, parts, kind):
    src = fixture(*parts)
    assert detect_format(src) == kind
    # the extension plays no part
    for name in ("model.bin", "model.pth", "model.tflite", "noext"):
        dst = tmp_path / name
        shutil.copyfile(src, dst)
        assert detect_format(dst) == kind


def test_synthetic_kinds(tmp_path):
    p = tmp_path / "a"
    p.write_bytes(b"TINYMNET" + b"\0" * 32)
    assert detect_format(p) == "tmn"

    save_safetensors(p, {"x": np.zeros(3, np.float32)})
    assert detect_format(p) == "safetensors"

    with zipfile.ZipFile(p, "w") as z:
        z.writestr("mymodel/data.pkl", pickle.dumps({}, protocol=2))
    assert detect_format(p) == "pth-zip"

    for proto in range(6):
        p.write_bytes(pickle.dumps(MAGIC_NUMBER, protocol=proto) + b"rest")
        assert detect_format(p) == "pth-legacy"

    # HDF5 with a 512-byte user block
    p.write_bytes(b"\0" * 512 + b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    assert detect_format(p) == "h5"
    assert set(FORMATS) == {"tmn", "pth-zip", "pth-legacy", "safetensors", "tflite", "h5", "onnx"}


@pytest.mark.parametrize("content,pattern", [
    (b"", "empty"),
    (b"hello world, not a model", "unrecognised"),
    (bytes(range(256)) * 8, "unrecognised"),
    (pickle.dumps({"a": 1}, protocol=2), "pickle that is not a PyTorch checkpoint"),
    (pickle.dumps(12345, protocol=2), "pickle that is not a PyTorch checkpoint"),
    (b"PK\x03\x04" + b"\0" * 100, "corrupt zip"),
    (struct.pack("<Q", 10**9) + b"{}", "unrecognised"),  # header length beyond the file
])
def test_unrecognised(tmp_path, content, pattern):
    p = tmp_path / "weird.bin"
    p.write_bytes(content)
    with pytest.raises(FormatError, match=pattern) as ei:
        detect_format(p)
    assert str(p) in str(ei.value)


def test_zip_that_is_not_a_checkpoint(tmp_path):
    p = tmp_path / "x.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("readme.txt", "hi")
        z.writestr("a/b/data.pkl", "deeper than a checkpoint's")
    with pytest.raises(FormatError, match="not a PyTorch checkpoint"):
        detect_format(p)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(FormatError, match="no such file"):
        detect_format(tmp_path / "nope.pth")
    with pytest.raises(FormatError, match="not a regular file"):
        detect_format(tmp_path)


def test_onnx_with_fields_out_of_order(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    graph_only, rest = onnx.ModelProto(), onnx.ModelProto()
    graph_only.graph.CopyFrom(m.graph)
    rest.CopyFrom(m)
    rest.ClearField("graph")
    p = tmp_path / "reordered.bin"
    p.write_bytes(graph_only.SerializeToString() + rest.SerializeToString())  # graph field first
    assert p.read_bytes()[:1] != b"\x08"
    assert detect_format(p) == "onnx"
