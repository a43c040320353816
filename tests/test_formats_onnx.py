"""tinymnet.formats.onnx_reader: ONNX protobuf -> framework-free description."""
from __future__ import annotations

import numpy as np
import pytest

from tinymnet.errors import FormatError
from tinymnet.formats import detect_format, load_onnx

try:
    from _fixtures import fixture
except ImportError:  # tests/ made a package
    from ._fixtures import fixture

onnx = pytest.importorskip("onnx", reason="onnx (optional extra) is not installed")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def test_ppocr_cls_fixture():
    path = fixture("models", "onnx", "ch_ppocr_mobile_v2.0_cls_infer.onnx")
    assert detect_format(path) == "onnx"
    m = load_onnx(path)
    assert m.opset == {"ai.onnx": 11} and m.producer_name == "PaddlePaddle"
    hist = m.op_histogram()
    assert "Constant" not in hist and len(m.graph.constant_nodes) == 308
    assert hist["Conv"] == 53 and hist["HardSigmoid"] == 9 and hist["BatchNormalization"] == 35
    assert len(m.nodes) == 566 - 308
    assert len(m.tensors) == 308  # every weight lives in a Constant node
    (inp,), (out,) = m.inputs, m.outputs
    assert inp.name == "x" and inp.dtype == "float32" and inp.shape == (-1, 3, "?", "?")
    assert out.shape == (-1, 2)
    conv = m.nodes[0]
    assert conv.op_type == "Conv" and conv.inputs[0] == "x"
    assert conv.attributes == {"dilations": [1, 1], "group": 1, "kernel_shape": [3, 3],
                               "pads": [1, 1, 1, 1], "strides": [2, 2]}
    w = m.tensors[conv.inputs[1]]
    assert w.dtype == np.float32 and w.ndim == 4 and w.shape[1:] == (3, 3, 3)
    hs = next(n for n in m.nodes if n.op_type == "HardSigmoid")
    assert isinstance(hs.attributes["alpha"], float)
    # every node input is a graph input, a constant or an earlier node's output
    known = {"x"} | set(m.tensors)
    for n in m.nodes:
        assert all(i in known for i in n.inputs if i)
        known.update(n.outputs)


def _model(nodes, inits=(), inputs=None, outputs=None):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_tensor_encodings_and_constants(tmp_path):
    w = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    h = np.array([1.5, -2.0], np.float16)
    inits = [
        numpy_helper.from_array(w, "w"),  # raw_data
        helper.make_tensor("b", TensorProto.FLOAT, [2], [0.5, -0.5]),  # float_data
        helper.make_tensor("h", TensorProto.FLOAT16, [2], h.tolist()),  # bits in int32_data
        helper.make_tensor("shape", TensorProto.INT64, [2], [1, -1]),
        helper.make_tensor("flags", TensorProto.BOOL, [3], [1, 0, 1]),
        helper.make_tensor("d", TensorProto.DOUBLE, [1], [0.25]),
        helper.make_tensor("i8", TensorProto.INT8, [2], [-3, 4]),
    ]
    nodes = [
        helper.make_node("Constant", [], ["c1"], value_float=2.0),
        helper.make_node("Constant", [], ["c2"], value_ints=[1, 2, 3]),
        helper.make_node("Constant", [], ["c3"], value=numpy_helper.from_array(np.eye(2, dtype=np.float32))),
        helper.make_node("Conv", ["x", "w", "b"], ["conv"], kernel_shape=[2, 2], pads=[0, 0, 1, 1],
                         strides=[1, 1], auto_pad="NOTSET", name="conv0"),
        helper.make_node("Mul", ["conv", "c1"], ["m"]),
        helper.make_node("Reshape", ["m", "shape"], ["y"]),
    ]
    p = tmp_path / "m.onnx"
    onnx.save(_model(nodes, inits), p)
    assert detect_format(p) == "onnx"
    m = load_onnx(p)
    t = m.tensors
    np.testing.assert_array_equal(t["w"], w)
    np.testing.assert_array_equal(t["b"], [0.5, -0.5])
    assert t["h"].dtype == np.float16 and t["h"].tolist() == [1.5, -2.0]
    assert t["shape"].dtype == np.int64 and t["shape"].tolist() == [1, -1]
    assert t["flags"].dtype == np.bool_ and t["flags"].tolist() == [True, False, True]
    assert t["d"].dtype == np.float64 and t["i8"].tolist() == [-3, 4]
    assert t["c1"].dtype == np.float32 and t["c1"].shape == () and float(t["c1"]) == 2.0
    assert t["c2"].dtype == np.int64 and t["c2"].tolist() == [1, 2, 3]
    np.testing.assert_array_equal(t["c3"], np.eye(2))
    assert [n.op_type for n in m.nodes] == ["Conv", "Mul", "Reshape"]
    conv = m.nodes[0]
    assert conv.name == "conv0" and conv.attributes["auto_pad"] == "NOTSET"
    assert conv.attributes["pads"] == [0, 0, 1, 1]
    assert m.inputs[0].shape == ("N", 3, 4, 4) and m.outputs[0].shape is None
    assert [vi.name for vi in m.inputs] == ["x"]  # initializers are not inputs


def test_external_data(tmp_path):
    w = np.arange(4096, dtype=np.float32).reshape(64, 64)
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [numpy_helper.from_array(w, "w")],
                   inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])])
    p = tmp_path / "ext.onnx"
    onnx.save(model, p, save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.data", size_threshold=0)
    np.testing.assert_array_equal(load_onnx(p).tensors["w"], w)
    (tmp_path / "ext.data").write_bytes((tmp_path / "ext.data").read_bytes()[:100])
    with pytest.raises(FormatError, match="outside ext.data"):
        load_onnx(p)


def test_external_data_cannot_escape(tmp_path):
    t = helper.make_tensor("w", TensorProto.FLOAT, [2], [0.0, 0.0])
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="../../etc/passwd")
    p = tmp_path / "evil.onnx"
    onnx.save(_model([helper.make_node("Add", ["x", "w"], ["y"])], [t]), p)
    with pytest.raises(FormatError, match="relative path inside"):
        load_onnx(p)


@pytest.mark.parametrize("case", ["raw_size", "typed_size", "undefined_input", "no_output",
                                  "bad_constant", "no_nodes"])
def test_inconsistent_models(tmp_path, case):
    good = helper.make_node("Relu", ["x"], ["y"])
    if case == "raw_size":
        t = numpy_helper.from_array(np.zeros(4, np.float32), "w")
        t.raw_data = t.raw_data[:-1]
        model = _model([helper.make_node("Add", ["x", "w"], ["y"])], [t])
        pattern = "raw_data has 15 bytes"
    elif case == "typed_size":
        t = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
        t.dims[0] = 5
        model = _model([helper.make_node("Add", ["x", "w"], ["y"])], [t])
        pattern = "2 values in float_data"
    elif case == "undefined_input":
        model = _model([helper.make_node("Add", ["x", "nowhere"], ["y"])])
        pattern = "'nowhere' is not defined"
    elif case == "no_output":
        model = _model([helper.make_node("Relu", ["x"], ["z"])])
        pattern = "never produced"
    elif case == "bad_constant":
        model = _model([helper.make_node("Constant", [], ["c"], value_float=1.0, value_int=2), good])
        pattern = "exactly one value"
    else:
        model = _model([])
        pattern = "no graph nodes"
    p = tmp_path / f"{case}.onnx"
    p.write_bytes(model.SerializeToString())
    with pytest.raises(FormatError, match=pattern) as ei:
        load_onnx(p)
    assert str(p) in str(ei.value)


def test_truncated_fixture_copy(tmp_path):
    data = fixture("models", "onnx", "ch_ppocr_mobile_v2.0_cls_infer.onnx").read_bytes()
    p = tmp_path / "cut.onnx"
    for n in (1, 10, 1000, len(data) // 3, len(data) // 2, len(data) - 7):
        p.write_bytes(data[:n])
        with pytest.raises(FormatError) as ei:
            load_onnx(p)
        assert str(p) in str(ei.value)
