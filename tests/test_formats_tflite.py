"""tinymnet.formats.tflite: .tflite flatbuffers -> framework-free description."""
from __future__ import annotations

import numpy as np
import pytest

from tinymnet.errors import FormatError
from tinymnet.formats import detect_format, load_tflite

try:
    from _fixtures import TFLITE_FILES, fixture, fixtures_dir
except ImportError:  # tests/ made a package
    from ._fixtures import TFLITE_FILES, fixture, fixtures_dir

tflite = pytest.importorskip("tflite", reason="tflite (optional extra) is not installed")
flatbuffers = pytest.importorskip("flatbuffers")

# op histograms of the fixtures (also a regression check of op-name decoding)
HISTOGRAMS = {
    "deeplabv3_mnv2_dm05_257_float.tflite": {"CONV_2D": 38, "DEPTHWISE_CONV_2D": 17, "ADD": 10,
                                             "RESIZE_BILINEAR": 3, "AVERAGE_POOL_2D": 1,
                                             "CONCATENATION": 1},
    "mobilenet_edgetpu_1.0_224_uint8.tflite": {"CONV_2D": 46, "ADD": 15, "DEPTHWISE_CONV_2D": 13,
                                               "AVERAGE_POOL_2D": 1, "SQUEEZE": 1, "RESHAPE": 1,
                                               "SOFTMAX": 1},
    "mobilenet_quant_v1_224_head_layers.tflite": {"CONV_2D": 1, "RESHAPE": 1, "SOFTMAX": 1},
    "mobilenet_v1_0.25_224_float.tflite": {"CONV_2D": 15, "DEPTHWISE_CONV_2D": 13,
                                           "AVERAGE_POOL_2D": 1, "SQUEEZE": 1, "SOFTMAX": 1},
    "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite": {"CONV_2D": 14,
                                                              "DEPTHWISE_CONV_2D": 13,
                                                              "AVERAGE_POOL_2D": 1},
    "mobilenet_v2_1.0_224_quant.tflite": {"CONV_2D": 36, "DEPTHWISE_CONV_2D": 17, "ADD": 10,
                                          "AVERAGE_POOL_2D": 1, "RESHAPE": 1, "SOFTMAX": 1},
    "mobilenet_v3_small_1.0_224_uint8.tflite": {"CONV_2D": 43, "HARD_SWISH": 19, "MUL": 18,
                                                "ADD": 15, "DEPTHWISE_CONV_2D": 11,
                                                "AVERAGE_POOL_2D": 11, "RESHAPE": 1, "SOFTMAX": 1},
    "tf2_mobilenet_v2_1.0_224_ptq.tflite": {"CONV_2D": 36, "DEPTHWISE_CONV_2D": 17, "ADD": 10,
                                            "QUANTIZE": 2, "MEAN": 1, "RESHAPE": 1, "SOFTMAX": 1},
}
for _name in ("mobilenet_v1_0.25_128_quant.tflite", "mobilenet_v1_0.25_224_quant.tflite",
              "mobilenet_v1_0.5_160_quant.tflite", "mobilenet_v1_0.75_192_quant.tflite"):
    HISTOGRAMS[_name] = {"CONV_2D": 15, "DEPTHWISE_CONV_2D": 13, "AVERAGE_POOL_2D": 1,
                         "RESHAPE": 1, "SOFTMAX": 1}


def _load(name):
    return load_tflite(fixture("models", "tflite", name))


@pytest.mark.parametrize("name", TFLITE_FILES)
def test_every_fixture_parses(name):
    path = fixture("models", "tflite", name)
    assert detect_format(path) == "tflite"
    m = load_tflite(path)
    assert m.op_histogram() == HISTOGRAMS[name]
    assert len(m.subgraphs) == 1 and len(m.inputs) == 1 and len(m.outputs) == 1
    for op in m.operators:
        assert all(-1 <= i < len(m.tensors) for i in op.inputs)
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            assert op.options["padding"] in ("SAME", "VALID")
            assert op.options["fused_activation_function"] in ("NONE", "RELU", "RELU6")
            w = m.tensors[op.inputs[1]]
            assert w.is_constant and w.data.dtype == np.float32 and w.data.ndim == 4
            if op.name == "DEPTHWISE_CONV_2D":
                assert w.shape[0] == 1  # 1HWC
                assert op.options["depth_multiplier"] >= 1
            b = m.tensors[op.inputs[2]]
            assert b.data.shape == (w.shape[0] if op.name == "CONV_2D" else w.shape[3],)
    for t in m.tensors:
        if t.is_constant and t.quantized and t.dtype in ("uint8", "int8", "int32"):
            zp = t.zero_point if t.scale.size == 1 else t.zero_point.reshape(
                [-1 if d == t.quantized_dimension else 1 for d in range(t.raw.ndim)])
            sc = t.scale if t.scale.size == 1 else t.scale.reshape(zp.shape)
            np.testing.assert_allclose(t.data, (t.raw.astype(np.float64) - zp) * sc, rtol=1e-6)


def test_v2_quant_io():
    m = _load("mobilenet_v2_1.0_224_quant.tflite")
    i, o = m.tensors[m.inputs[0]], m.tensors[m.outputs[0]]
    assert (i.shape, i.dtype, o.shape, o.dtype) == ((1, 224, 224, 3), "uint8", (1, 1001), "uint8")
    assert i.quantized and i.zero_point[0] == 128
    assert abs(i.scale[0] - 1 / 128) < 1e-6
    assert o.scale[0] == pytest.approx(1 / 256)


def test_v1_float_first_conv_and_head():
    m = _load("mobilenet_v1_0.25_224_float.tflite")
    first = m.operators[0]
    assert first.name == "CONV_2D"
    assert first.options["stride_w"] == first.options["stride_h"] == 2
    assert first.options["padding"] == "SAME"
    assert first.options["fused_activation_function"] == "RELU6"
    w = m.tensors[first.inputs[1]]
    assert w.shape == (8, 3, 3, 3) and w.dtype == "float32" and not w.quantized  # OHWI
    assert w.data is w.raw
    dw = m.tensors[m.operators[1].inputs[1]]
    assert m.operators[1].name == "DEPTHWISE_CONV_2D" and dw.shape == (1, 3, 3, 8)
    pool = next(op for op in m.operators if op.name == "AVERAGE_POOL_2D")
    assert pool.options["filter_width"] == pool.options["filter_height"] == 7
    assert pool.options["padding"] == "VALID"
    sq = next(op for op in m.operators if op.name == "SQUEEZE")
    assert sq.options["squeeze_dims"] == [1, 2]
    assert m.tensors[m.inputs[0]].shape == (1, 224, 224, 3)


def test_int8_per_channel():
    m = _load("tf2_mobilenet_v2_1.0_224_ptq.tflite")
    assert m.operators[0].name == "QUANTIZE"
    conv = m.operators[1]
    w, b = m.tensors[conv.inputs[1]], m.tensors[conv.inputs[2]]
    assert w.dtype == "int8" and w.scale.shape == (32,) and w.quantized_dimension == 0
    assert (w.zero_point == 0).all()
    np.testing.assert_allclose(w.data[5], w.raw[5].astype(np.float64) * w.scale[5], rtol=1e-6)
    assert b.dtype == "int32" and b.scale.shape == (32,) and b.data.dtype == np.float32
    mean = next(op for op in m.operators if op.name == "MEAN")
    assert mean.options["keep_dims"] in (True, False)
    axes = m.tensors[mean.inputs[1]]
    assert axes.dtype == "int32" and not axes.quantized and sorted(axes.data.tolist()) == [1, 2]


def test_v3_small_has_hard_swish():
    m = _load("mobilenet_v3_small_1.0_224_uint8.tflite")
    assert m.op_histogram()["HARD_SWISH"] == 19
    assert m.tensors[m.outputs[0]].shape == (1, 1001)


def test_split_v1_qparams_chain():
    body = _load("mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")
    head = _load("mobilenet_quant_v1_224_head_layers.tflite")
    out, inp = body.tensors[body.outputs[0]], head.tensors[head.inputs[0]]
    assert out.shape == inp.shape == (1, 1, 1, 1024)
    assert out.scale[0] == pytest.approx(0.0235285, rel=1e-4) and out.zero_point[0] == 0
    assert out.scale[0] == inp.scale[0] and out.zero_point[0] == inp.zero_point[0]


def test_edgetpu_unknown_activation_shapes():
    m = _load("mobilenet_edgetpu_1.0_224_uint8.tflite")
    out = m.tensors[m.outputs[0]]
    assert out.shape == () and not out.shape_known  # importer must infer shapes
    assert m.tensors[m.inputs[0]].shape_known


def test_deeplab_resize_options():
    m = _load("deeplabv3_mnv2_dm05_257_float.tflite")
    rb = [op for op in m.operators if op.name == "RESIZE_BILINEAR"]
    assert all(isinstance(op.options["align_corners"], bool) for op in rb)
    assert m.tensors[m.outputs[0]].shape == (1, 257, 257, 21)


# ---------------------------------------------------------------------------------------
# a hand-built model with a custom op and an unknown builtin code


def _build_model(unknown_code=250, weight_len=4) -> bytes:
    T = tflite
    b = flatbuffers.Builder(1024)

    def ivec(start, vals, prepend="PrependInt32"):
        start(b, len(vals))
        for v in reversed(vals):
            getattr(b, prepend)(v)
        return b.EndVector()

    wdata = b.CreateNumpyVector(np.array([0, 2, 4, 6][:weight_len], dtype=np.uint8))
    T.BufferStart(b)
    empty_buf = T.BufferEnd(b)
    T.BufferStart(b)
    T.BufferAddData(b, wdata)
    w_buf = T.BufferEnd(b)

    scale = ivec(T.QuantizationParametersStartScaleVector, [0.5], "PrependFloat32")
    zp = ivec(T.QuantizationParametersStartZeroPointVector, [2], "PrependInt64")
    T.QuantizationParametersStart(b)
    T.QuantizationParametersAddScale(b, scale)
    T.QuantizationParametersAddZeroPoint(b, zp)
    quant = T.QuantizationParametersEnd(b)

    tensors = []
    for name, shape, ttype, buf, q in (("in", [1, 4], T.TensorType.FLOAT32, 0, None),
                                       ("w", [4], T.TensorType.UINT8, 1, quant),
                                       ("out", [1, 4], T.TensorType.FLOAT32, 0, None)):
        n = b.CreateString(name)
        sh = ivec(T.TensorStartShapeVector, shape)
        T.TensorStart(b)
        T.TensorAddName(b, n)
        T.TensorAddShape(b, sh)
        T.TensorAddType(b, ttype)
        T.TensorAddBuffer(b, buf)
        if q is not None:
            T.TensorAddQuantization(b, q)
        tensors.append(T.TensorEnd(b))

    ops = []
    for opcode_index, ins, outs, custom in ((0, [0, 1], [2], b"\x01\x02"), (1, [2, -1], [2], None)):
        iv = ivec(T.OperatorStartInputsVector, ins)
        ov = ivec(T.OperatorStartOutputsVector, outs)
        cv = b.CreateNumpyVector(np.frombuffer(custom, np.uint8)) if custom else None
        T.OperatorStart(b)
        T.OperatorAddOpcodeIndex(b, opcode_index)
        T.OperatorAddInputs(b, iv)
        T.OperatorAddOutputs(b, ov)
        if cv is not None:
            T.OperatorAddCustomOptions(b, cv)
        ops.append(T.OperatorEnd(b))

    tvec = ivec(T.SubGraphStartTensorsVector, tensors, "PrependUOffsetTRelative")
    ovec = ivec(T.SubGraphStartOperatorsVector, ops, "PrependUOffsetTRelative")
    gin = ivec(T.SubGraphStartInputsVector, [0])
    gout = ivec(T.SubGraphStartOutputsVector, [2])
    T.SubGraphStart(b)
    T.SubGraphAddTensors(b, tvec)
    T.SubGraphAddOperators(b, ovec)
    T.SubGraphAddInputs(b, gin)
    T.SubGraphAddOutputs(b, gout)
    sg = T.SubGraphEnd(b)

    cname = b.CreateString("MyCustomOp")
    T.OperatorCodeStart(b)
    T.OperatorCodeAddBuiltinCode(b, T.BuiltinOperator.CUSTOM)
    T.OperatorCodeAddDeprecatedBuiltinCode(b, T.BuiltinOperator.CUSTOM)
    T.OperatorCodeAddCustomCode(b, cname)
    T.OperatorCodeAddVersion(b, 1)
    oc0 = T.OperatorCodeEnd(b)
    T.OperatorCodeStart(b)
    T.OperatorCodeAddBuiltinCode(b, unknown_code)
    T.OperatorCodeAddDeprecatedBuiltinCode(b, 127)
    T.OperatorCodeAddVersion(b, 2)
    oc1 = T.OperatorCodeEnd(b)

    codes = ivec(T.ModelStartOperatorCodesVector, [oc0, oc1], "PrependUOffsetTRelative")
    sgs = ivec(T.ModelStartSubgraphsVector, [sg], "PrependUOffsetTRelative")
    bufs = ivec(T.ModelStartBuffersVector, [empty_buf, w_buf], "PrependUOffsetTRelative")
    desc = b.CreateString("hand-built")
    T.ModelStart(b)
    T.ModelAddVersion(b, 3)
    T.ModelAddOperatorCodes(b, codes)
    T.ModelAddSubgraphs(b, sgs)
    T.ModelAddDescription(b, desc)
    T.ModelAddBuffers(b, bufs)
    b.Finish(T.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_custom_and_unknown_ops(tmp_path):
    p = tmp_path / "custom.tflite"
    p.write_bytes(_build_model())
    assert detect_format(p) == "tflite"
    m = load_tflite(p)
    assert m.description == "hand-built" and m.version == 3
    custom, unknown = m.operators
    assert custom.name == "CUSTOM" and custom.custom_code == "MyCustomOp"
    assert custom.custom_options == b"\x01\x02"
    assert unknown.name == "UNKNOWN_250" and unknown.version == 2 and unknown.inputs == (2, -1)
    assert m.op_histogram() == {"CUSTOM:MyCustomOp": 1, "UNKNOWN_250": 1}
    w = m.tensors[1]
    assert w.raw.tolist() == [0, 2, 4, 6] and w.data.tolist() == [-1.0, 0.0, 1.0, 2.0]


def test_buffer_size_mismatch(tmp_path):
    p = tmp_path / "short.tflite"
    p.write_bytes(_build_model(weight_len=3))
    with pytest.raises(FormatError, match="buffer holds 3 bytes but uint8 \\(4,\\) needs 4"):
        load_tflite(p)


def test_not_a_tflite_file(tmp_path):
    p = tmp_path / "x.tflite"
    p.write_bytes(b"\0" * 64)
    with pytest.raises(FormatError, match="TFL3"):
        load_tflite(p)


def test_fixture_dir_helper():
    d = fixtures_dir()
    assert d is None or (d / "SOURCES.md").is_file()
