"""tinymnet.importers.tflite: TFLite op graphs -> our graph.

* tiny float models written here with the flatbuffers builder, op by op, run through our
  importer and (when ai-edge-litert is installed) the TFLite interpreter;
* every fixture: the NumPy reference executor and the C++ kernels agree on the imported graph;
* the float fixtures (MobileNetV1 0.25 and DeepLabV3) against the TFLite interpreter;
* errors: unsupported ops, truncated files, impossible chains name the file.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

try:
    from _fixtures import TFLITE_FILES, fixture
except ImportError:  # tests/ made a package
    from ._fixtures import TFLITE_FILES, fixture

tflite = pytest.importorskip("tflite", reason="tflite (optional extra) is not installed")
flatbuffers = pytest.importorskip("flatbuffers")

from tinymnet.errors import FormatError  # noqa: E402
from tinymnet.graph import run_reference  # noqa: E402
from tinymnet.importers import apply_recipe, import_tflite  # noqa: E402
from tinymnet.runtime import compile_graph  # noqa: E402

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # optional: only the comparisons with the TFLite runtime need it
    Interpreter = None

needs_litert = pytest.mark.skipif(Interpreter is None,
                                  reason="ai-edge-litert (TFLite interpreter) is not installed")


def _rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-12))


# ---------------------------------------------------------------------------------------------
# A minimal TFLite writer (float32 tensors, builtin ops) for op-level tests


class TinyTFLite:
    def __init__(self):
        self.tensors = []  # (name, shape, dtype, data)
        self.ops = []  # (opname, inputs, outputs, options_name, options)

    def tensor(self, name, shape, data=None, dtype="float32"):
        if data is not None:
            data = np.ascontiguousarray(np.asarray(data, dtype=dtype).reshape(shape))
        self.tensors.append((name, tuple(shape), dtype, data))
        return len(self.tensors) - 1

    def const(self, name, data, dtype="float32"):
        data = np.asarray(data, dtype=dtype)
        return self.tensor(name, data.shape, data, dtype)

    def op(self, opname, inputs, outputs, options=None, **fields):
        self.ops.append((opname, list(inputs), list(outputs), options, fields))
        return outputs[0] if len(outputs) == 1 else outputs

    def write(self, path, inputs, outputs):
        b = flatbuffers.Builder(1 << 16)
        T = tflite

        def ivec(start, values):
            start(b, len(values))
            for v in reversed(values):
                b.PrependInt32(int(v))
            return b.EndVector()

        def ovec(start, offsets):
            start(b, len(offsets))
            for o in reversed(offsets):
                b.PrependUOffsetTRelative(o)
            return b.EndVector()

        buffers = []
        T.BufferStart(b)
        buffers.append(T.BufferEnd(b))
        tensor_offsets = []
        for name, shape, dtype, data in self.tensors:
            buf = 0
            if data is not None:
                b.StartVector(1, data.nbytes, 16)
                raw = data.tobytes()
                b.head = b.head - len(raw)
                b.Bytes[b.head:b.head + len(raw)] = raw
                vec = b.EndVector(data.nbytes) if _old_fb() else b.EndVector()
                T.BufferStart(b)
                T.BufferAddData(b, vec)
                buffers.append(T.BufferEnd(b))
                buf = len(buffers) - 1
            name_off = b.CreateString(name)
            shape_off = ivec(T.TensorStartShapeVector, shape)
            T.TensorStart(b)
            T.TensorAddShape(b, shape_off)
            T.TensorAddType(b, getattr(T.TensorType, dtype.upper()))
            T.TensorAddBuffer(b, buf)
            T.TensorAddName(b, name_off)
            tensor_offsets.append(T.TensorEnd(b))
        codes, op_offsets = [], []
        for opname, ins, outs, options, fields in self.ops:
            code = getattr(T.BuiltinOperator, opname)
            if code not in codes:
                codes.append(code)
            opt_off = None
            if options is not None:
                getattr(T, f"{options}Start")(b)
                for key, value in fields.items():
                    getattr(T, f"{options}Add{key}")(b, value)
                opt_off = getattr(T, f"{options}End")(b)
            in_off = ivec(T.OperatorStartInputsVector, ins)
            out_off = ivec(T.OperatorStartOutputsVector, outs)
            T.OperatorStart(b)
            T.OperatorAddOpcodeIndex(b, codes.index(code))
            T.OperatorAddInputs(b, in_off)
            T.OperatorAddOutputs(b, out_off)
            if opt_off is not None:
                T.OperatorAddBuiltinOptionsType(b, getattr(T.BuiltinOptions, options))
                T.OperatorAddBuiltinOptions(b, opt_off)
            op_offsets.append(T.OperatorEnd(b))
        code_offsets = []
        for code in codes:
            T.OperatorCodeStart(b)
            T.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            T.OperatorCodeAddBuiltinCode(b, code)
            T.OperatorCodeAddVersion(b, 1)
            code_offsets.append(T.OperatorCodeEnd(b))
        t_vec = ovec(T.SubGraphStartTensorsVector, tensor_offsets)
        o_vec = ovec(T.SubGraphStartOperatorsVector, op_offsets)
        i_vec = ivec(T.SubGraphStartInputsVector, inputs)
        out_vec = ivec(T.SubGraphStartOutputsVector, outputs)
        T.SubGraphStart(b)
        T.SubGraphAddTensors(b, t_vec)
        T.SubGraphAddOperators(b, o_vec)
        T.SubGraphAddInputs(b, i_vec)
        T.SubGraphAddOutputs(b, out_vec)
        sg = T.SubGraphEnd(b)
        sg_vec = ovec(T.ModelStartSubgraphsVector, [sg])
        c_vec = ovec(T.ModelStartOperatorCodesVector, code_offsets)
        b_vec = ovec(T.ModelStartBuffersVector, buffers)
        desc = b.CreateString("tinymnet test model")
        T.ModelStart(b)
        T.ModelAddVersion(b, 3)
        T.ModelAddOperatorCodes(b, c_vec)
        T.ModelAddSubgraphs(b, sg_vec)
        T.ModelAddBuffers(b, b_vec)
        T.ModelAddDescription(b, desc)
        b.Finish(T.ModelEnd(b), file_identifier=b"TFL3")
        with open(path, "wb") as f:
            f.write(b.Output())
        return path


def _old_fb():
    import inspect

    return "vectorNumElems" in inspect.signature(flatbuffers.Builder.EndVector).parameters


SAME, VALID = tflite.Padding.SAME, tflite.Padding.VALID
NONE, RELU, RELU6 = (tflite.ActivationFunctionType.NONE, tflite.ActivationFunctionType.RELU,
                     tflite.ActivationFunctionType.RELU6)


def _w(rng, *shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _conv(m, rng, x, name, cout, cin, k, out_shape, stride=1, pad=SAME, act=NONE, dil=1):
    w = m.const(f"{name}/w", _w(rng, cout, k, k, cin))
    b = m.const(f"{name}/b", _w(rng, cout, scale=0.1))
    y = m.tensor(name, out_shape)
    return m.op("CONV_2D", [x, w, b], [y], "Conv2DOptions", Padding=pad, StrideW=stride,
                StrideH=stride, FusedActivationFunction=act, DilationWFactor=dil,
                DilationHFactor=dil)


def _convs_model(path):
    """Conv variants, pools, pad, mean, fully connected, softmax."""
    rng = np.random.default_rng(0)
    m = TinyTFLite()
    x = m.tensor("input", (1, 17, 19, 6))
    t = _conv(m, rng, x, "conv_s2", 8, 6, 3, (1, 9, 10, 8), stride=2, act=RELU6)
    w = m.const("dw/w", _w(rng, 1, 3, 3, 8))
    b = m.const("dw/b", _w(rng, 8, scale=0.1))
    t = m.op("DEPTHWISE_CONV_2D", [t, w, b], [m.tensor("dw_dil2", (1, 9, 10, 8))],
             "DepthwiseConv2DOptions", Padding=SAME, StrideW=1, StrideH=1, DepthMultiplier=1,
             FusedActivationFunction=RELU, DilationWFactor=2, DilationHFactor=2)
    t = _conv(m, rng, t, "conv_dil3", 12, 8, 3, (1, 9, 10, 12), dil=3)
    t = _conv(m, rng, t, "conv_valid", 12, 12, 2, (1, 8, 9, 12), pad=VALID, act=RELU)
    t = m.op("AVERAGE_POOL_2D", [t], [m.tensor("avg_same", (1, 4, 5, 12))], "Pool2DOptions",
             Padding=SAME, StrideW=2, StrideH=2, FilterWidth=3, FilterHeight=3)
    t = m.op("MAX_POOL_2D", [t], [m.tensor("max_same", (1, 4, 5, 12))], "Pool2DOptions",
             Padding=SAME, StrideW=1, StrideH=1, FilterWidth=2, FilterHeight=3)
    pads = m.const("pads", np.array([[0, 0], [1, 0], [0, 2], [0, 0]]), "int32")
    t = m.op("PAD", [t, pads], [m.tensor("pad", (1, 5, 7, 12))])
    t = _conv(m, rng, t, "conv_1x1", 16, 12, 1, (1, 5, 7, 16), pad=VALID)
    axes = m.const("axes", np.array([1, 2]), "int32")
    t = m.op("MEAN", [t, axes], [m.tensor("mean", (1, 16))], "ReducerOptions", KeepDims=False)
    w = m.const("fc/w", _w(rng, 10, 16))
    b = m.const("fc/b", _w(rng, 10, scale=0.1))
    t = m.op("FULLY_CONNECTED", [t, w, b], [m.tensor("logits", (1, 10))],
             "FullyConnectedOptions", FusedActivationFunction=NONE)
    out = m.op("SOFTMAX", [t], [m.tensor("probs", (1, 10))], "SoftmaxOptions", Beta=1.0)
    return m.write(path, [x], [out])


def _eltwise_model(path):
    """Hard-swish and hard-sigmoid spelled with ADD/RELU6/MUL, an SE block, constants, a 1x1
    broadcast resize, concat, residual add, reshape."""
    rng = np.random.default_rng(1)
    m = TinyTFLite()
    x = m.tensor("input", (1, 8, 8, 4))
    c = _conv(m, rng, x, "stem", 8, 4, 3, (1, 8, 8, 8))
    three, sixth = m.const("three", 3.0), m.const("sixth", 1.0 / 6.0)
    # hard-swish: x * relu6(x + 3) * (1/6)
    a = m.op("ADD", [c, three], [m.tensor("hs/add", (1, 8, 8, 8))], "AddOptions",
             FusedActivationFunction=RELU6)
    p = m.op("MUL", [c, a], [m.tensor("hs/mul", (1, 8, 8, 8))], "MulOptions",
             FusedActivationFunction=NONE)
    h = m.op("MUL", [p, sixth], [m.tensor("hs/out", (1, 8, 8, 8))], "MulOptions",
             FusedActivationFunction=NONE)
    # squeeze-excite with a hard-sigmoid gate (ADD / RELU6 op / MUL)
    axes = m.const("axes", np.array([1, 2]), "int32")
    s = m.op("MEAN", [h, axes], [m.tensor("se/mean", (1, 1, 1, 8))], "ReducerOptions",
             KeepDims=True)
    s = _conv(m, rng, s, "se/fc1", 4, 8, 1, (1, 1, 1, 4), act=RELU)
    s = _conv(m, rng, s, "se/fc2", 8, 4, 1, (1, 1, 1, 8))
    s = m.op("ADD", [s, three], [m.tensor("se/add", (1, 1, 1, 8))], "AddOptions",
             FusedActivationFunction=NONE)
    s = m.op("RELU6", [s], [m.tensor("se/relu6", (1, 1, 1, 8))])
    s = m.op("MUL", [s, sixth], [m.tensor("se/gate", (1, 1, 1, 8))], "MulOptions",
             FusedActivationFunction=NONE)
    y = m.op("MUL", [h, s], [m.tensor("se/out", (1, 8, 8, 8))], "MulOptions",
             FusedActivationFunction=NONE)
    # constants: sub, div, per-channel mul, clamps
    y = m.op("SUB", [y, m.const("half", 0.5)], [m.tensor("sub", (1, 8, 8, 8))], "SubOptions",
             FusedActivationFunction=NONE)
    y = m.op("DIV", [y, m.const("two", 2.0)], [m.tensor("div", (1, 8, 8, 8))], "DivOptions",
             FusedActivationFunction=NONE)
    y = m.op("MUL", [y, m.const("chan", _w(rng, 8, scale=1.0))],
             [m.tensor("chan_mul", (1, 8, 8, 8))], "MulOptions", FusedActivationFunction=NONE)
    y = m.op("MAXIMUM", [y, m.const("lo", -0.2)], [m.tensor("max", (1, 8, 8, 8))])
    y = m.op("MINIMUM", [y, m.const("hi", 0.7)], [m.tensor("min", (1, 8, 8, 8))])
    y = m.op("HARD_SWISH", [_conv(m, rng, y, "proj", 8, 8, 1, (1, 8, 8, 8))],
             [m.tensor("hswish_op", (1, 8, 8, 8))])
    # residual add, image pooling broadcast (1x1 -> 8x8 resize), concat
    y = m.op("ADD", [y, h], [m.tensor("residual", (1, 8, 8, 8))], "AddOptions",
             FusedActivationFunction=RELU)
    g = m.op("AVERAGE_POOL_2D", [y], [m.tensor("gap", (1, 1, 1, 8))], "Pool2DOptions",
             Padding=VALID, StrideW=8, StrideH=8, FilterWidth=8, FilterHeight=8)
    size = m.const("size", np.array([8, 8]), "int32")
    g = m.op("RESIZE_BILINEAR", [g, size], [m.tensor("broadcast", (1, 8, 8, 8))],
             "ResizeBilinearOptions", AlignCorners=True)
    y = m.op("CONCATENATION", [y, g], [m.tensor("concat", (1, 8, 8, 16))],
             "ConcatenationOptions", Axis=3)
    y = _conv(m, rng, y, "head", 6, 16, 3, (1, 4, 4, 6), stride=2)
    shape = m.const("shape", np.array([1, -1]), "int32")
    out = m.op("RESHAPE", [y, shape], [m.tensor("flat", (1, 96))])
    return m.write(path, [x], [out])


def _run_litert(path, x):
    it = Interpreter(str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_tflite")
    return {"convs": _convs_model(d / "convs.tflite"),
            "eltwise": _eltwise_model(d / "eltwise.tflite")}


def test_tiny_convs_structure(tiny):
    imp = import_tflite(tiny["convs"])
    g = imp.graph
    ops = [n.op for n in g.nodes]
    assert ops.count("conv2d") == 5 and "softmax" not in ops  # trailing softmax dropped
    assert g.meta["dropped_tail"] == ["SOFTMAX"] and imp.num_classes == 10
    dw = g.node("dw_dil2")
    assert dw.attrs["groups"] == 8 and g.params[dw.params["weight"]].shape == (8, 1, 5, 5)
    w = g.params[g.node("conv_dil3").params["weight"]]  # 3x3 dilation 3 -> 7x7 with zeros
    assert w.shape == (12, 8, 7, 7) and not w[:, :, 1::3].any() and not w[:, :, :, 2::3].any()
    avg = g.node("avg_same")
    assert avg.attrs["padding"] == "same" and avg.attrs["count_include_pad"] is False
    assert g.node("pad").attrs["pads"] == (1, 0, 0, 2)
    assert g.shapes[g.outputs[0]] == (None, 10)
    assert imp.preprocess["mean"] == [127.5] * 3 and imp.preprocess["input_dtype"] == "float32"


def test_tiny_eltwise_structure(tiny):
    g = import_tflite(tiny["eltwise"]).graph
    ops = [n.op for n in g.nodes]
    acts = [n.attrs.get("activation") for n in g.nodes]
    assert "squeeze_excite" in ops  # MEAN -> conv relu -> conv -> ADD/RELU6/MUL -> MUL
    assert acts.count("hardswish") == 2  # the spelled-out one and the HARD_SWISH op
    se = next(n for n in g.nodes if n.op == "squeeze_excite")
    assert math.isclose(se.attrs["alpha"], 1 / 6, rel_tol=1e-6)
    assert math.isclose(se.attrs["beta"], 0.5, rel_tol=1e-6)
    assert ops.count("max_pool2d") == 2  # the 1x1 -> 8x8 broadcast, one axis at a time


@pytest.mark.parametrize("which", ["convs", "eltwise"])
def test_tiny_models_reference_vs_kernels(tiny, which):
    imp = import_tflite(tiny[which])
    shape = (2,) + imp.graph.inputs[imp.graph.input_name][1:]
    x = np.random.default_rng(5).uniform(-1, 1, shape).astype(np.float32)
    assert _rel(compile_graph(imp.graph)(x), run_reference(imp.graph, x)) < 1e-5


@needs_litert
@pytest.mark.parametrize("which", ["convs", "eltwise"])
def test_tiny_models_match_tflite_interpreter(tiny, which):
    imp = import_tflite(tiny[which])
    cm = compile_graph(imp.graph)
    shape = (1,) + imp.graph.inputs[imp.graph.input_name][1:]
    for seed in range(3):
        x = np.random.default_rng(seed).uniform(-2, 2, shape).astype(np.float32)
        want = _run_litert(tiny[which], x)
        got = cm(x)
        if which == "convs":  # the interpreter applies the softmax we dropped
            e = np.exp(got - got.max(-1, keepdims=True))
            got = e / e.sum(-1, keepdims=True)
        assert _rel(got, want) < 1e-4, seed


def test_unsupported_op_names_file_op_and_index(tmp_path):
    m = TinyTFLite()
    x = m.tensor("input", (1, 4, 4, 3))
    y = m.op("TANH", [x], [m.tensor("tanh", (1, 4, 4, 3))])
    path = m.write(tmp_path / "tanh.tflite", [x], [y])
    with pytest.raises(FormatError) as e:
        import_tflite(path)
    msg = str(e.value)
    assert str(path) in msg and "operator 0 (TANH)" in msg and "not supported" in msg


def test_depth_multiplier_and_full_mul_are_clear_errors(tmp_path):
    rng = np.random.default_rng(0)
    m = TinyTFLite()
    x = m.tensor("input", (1, 4, 4, 3))
    w = m.const("w", _w(rng, 1, 3, 3, 6))
    y = m.op("DEPTHWISE_CONV_2D", [x, w, m.const("b", np.zeros(6))], [m.tensor("dw", (1, 4, 4, 6))],
             "DepthwiseConv2DOptions", Padding=SAME, StrideW=1, StrideH=1, DepthMultiplier=2)
    path = m.write(tmp_path / "dm2.tflite", [x], [y])
    with pytest.raises(FormatError, match=r"operator 0 \(DEPTHWISE_CONV_2D\).*depth_multiplier"):
        import_tflite(path)

    m = TinyTFLite()
    x = m.tensor("input", (1, 4, 4, 3))
    y = m.op("MUL", [x, x], [m.tensor("sq", (1, 4, 4, 3))], "MulOptions")
    path = m.write(tmp_path / "square.tflite", [x], [y])
    with pytest.raises(FormatError, match="elementwise product"):
        import_tflite(path)

    m = TinyTFLite()
    x = m.tensor("input", (1, 4, 4, 3))
    sig = m.op("LOGISTIC", [x], [m.tensor("sig", (1, 4, 4, 3))])
    y = m.op("MUL", [x, sig], [m.tensor("swish", (1, 4, 4, 3))], "MulOptions")
    path = m.write(tmp_path / "swish.tflite", [x], [y])
    with pytest.raises(FormatError, match=r"operator 0 \(LOGISTIC\).*sigmoid"):
        import_tflite(path)


# ---------------------------------------------------------------------------------------------
# The fixtures


@pytest.fixture(scope="module")
def imported():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = import_tflite(fixture("models", "tflite", name))
        return cache[name]

    return get


@pytest.mark.parametrize("name", TFLITE_FILES)
def test_fixture_reference_vs_kernels(imported, name):
    imp = imported(name)
    g = imp.graph
    shape = (1,) + g.inputs[g.input_name][1:]
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    assert _rel(compile_graph(g)(x), run_reference(g, x)) < 1e-4
    # every 8-bit weight is stored losslessly in our layout
    for key, qt in imp.quantized.items():
        assert np.array_equal(qt.dequantize(), g.params[key]), key
        assert qt.q.dtype in (np.uint8, np.int8) and qt.q.shape == g.params[key].shape
        assert qt.scale.size in (1, qt.q.shape[qt.axis])


def test_fixture_structures(imported):
    v3 = imported("mobilenet_v3_small_1.0_224_uint8.tflite")
    ops = [n.op for n in v3.graph.nodes]
    # the ADD(+3)/RELU6/MUL(1/6) gates became hard-sigmoids (8 of the 9 SE blocks fused; the
    # first has a ReLU on its second FC, implied by that tensor's uint8 range)
    assert ops.count("squeeze_excite") == 8 and "batchnorm" not in ops
    acts = {n.attrs.get("activation") for n in v3.graph.nodes} | {
        n.attrs.get("gate") for n in v3.graph.nodes}
    assert {"hardswish", "hardsigmoid"} <= acts
    assert len(v3.quantized) == 54 and v3.provenance["implied_activation_clamps"] > 0
    ptq = imported("tf2_mobilenet_v2_1.0_224_ptq.tflite")
    per_channel = [qt for qt in ptq.quantized.values() if qt.scale.size > 1]
    assert per_channel and all(qt.axis == 0 and qt.q.dtype == np.int8 for qt in per_channel)
    dw = next(n for n in ptq.graph.nodes if n.op == "conv2d" and n.attrs["groups"] > 1)
    qt = ptq.quantized[dw.params["weight"]]  # 1HWC quantized on axis 3 -> (C,1,KH,KW) axis 0
    assert qt.q.shape[1] == 1 and qt.scale.size == qt.q.shape[0]
    edge = imported("mobilenet_edgetpu_1.0_224_uint8.tflite")  # activation shapes left out
    assert edge.graph.shapes[edge.graph.outputs[0]] == (None, 1001)
    head = imported("mobilenet_quant_v1_224_head_layers.tflite")
    assert head.graph.inputs[head.graph.input_name] == (None, 1, 1, 1024)


def test_chained_files(imported):
    body = fixture("models", "tflite", "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")
    head = fixture("models", "tflite", "mobilenet_quant_v1_224_head_layers.tflite")
    imp = import_tflite([body, head])
    g = imp.graph
    assert g.inputs[g.input_name] == (None, 224, 224, 3) and g.shapes[g.outputs[0]] == (None, 1001)
    assert imp.provenance["chain"][0]["qparams_match_previous_output"] is True
    assert [f["name"] for f in imp.provenance["files"]] == [body.name, head.name]
    assert len(imp.quantized) == 28  # 27 body convs + the head's 1x1 conv
    other = fixture("models", "tflite", "mobilenet_v1_0.25_128_quant.tflite")
    with pytest.raises(FormatError, match="cannot chain") as e:
        import_tflite([other, head])
    assert str(head) in str(e.value)


def test_truncated_and_garbage_files(tmp_path, tiny):
    data = tiny["convs"].read_bytes()
    for n in (len(data) // 2, len(data) // 5, 16):
        bad = tmp_path / f"cut{n}.tflite"
        bad.write_bytes(data[:n])
        with pytest.raises(FormatError) as e:
            import_tflite(bad)
        assert str(bad) in str(e.value)
    bad = tmp_path / "noise.tflite"
    bad.write_bytes(b"\x10\x00\x00\x00TFL3" + os.urandom(200))
    with pytest.raises(FormatError):
        import_tflite(bad)
    with pytest.raises(FormatError, match="no such file"):
        import_tflite(tmp_path / "missing.tflite")


# ---------------------------------------------------------------------------------------------
# Against the TFLite interpreter


def _photo(name, size):
    Image = pytest.importorskip("PIL.Image")
    with Image.open(fixture("images", name)) as im:
        return np.asarray(im.convert("RGB").resize(size, Image.BILINEAR))


def _resize_align_corners(y, oh, ow):
    """TF's bilinear resize with align_corners=True (NHWC, float64)."""
    n, h, w, c = y.shape
    ys, xs = np.arange(oh) * (h - 1) / (oh - 1), np.arange(ow) * (w - 1) / (ow - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[None, :, None, None], (xs - x0)[None, None, :, None]
    top = y[:, y0][:, :, x0] * (1 - fx) + y[:, y0][:, :, x1] * fx
    bottom = y[:, y1][:, :, x0] * (1 - fx) + y[:, y1][:, :, x1] * fx
    return top * (1 - fy) + bottom * fy


@needs_litert
@pytest.mark.filterwarnings("ignore:.*experimental_preserve_all_tensors")
def test_float_mobilenet_v1_matches_interpreter(imported):
    path = fixture("models", "tflite", "mobilenet_v1_0.25_224_float.tflite")
    imp = imported(path.name)
    cm = compile_graph(imp.graph)
    it = Interpreter(str(path), experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    logits_index = next(d["index"] for d in it.get_tensor_details()
                        if d["name"] == "MobilenetV1/Logits/SpatialSqueeze")
    for name in ("cat.bmp", "coffee.png", "grace_hopper.bmp"):
        x = apply_recipe(imp.preprocess, _photo(name, (224, 224)))
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        assert _rel(cm(x), it.get_tensor(logits_index)) < 1e-4, name


@needs_litert
def test_deeplab_matches_interpreter(imported):
    path = fixture("models", "tflite", "deeplabv3_mnv2_dm05_257_float.tflite")
    imp = imported(path.name)
    g = imp.graph
    # dilated depthwise convs became dense kernels, the ASPP image pooling a broadcast, the
    # final 33x33 -> 257x257 upsampling is left to post-processing
    assert imp.num_classes is None and g.shapes[g.outputs[0]] == (None, 33, 33, 21)
    assert g.meta["postprocess"] == [{"op": "resize_bilinear", "size": [257, 257],
                                      "align_corners": True, "half_pixel_centers": False}]
    kernels = {g.params[n.params["weight"]].shape[2] for n in g.nodes if n.op == "conv2d"}
    assert {3, 5, 9} <= kernels
    cm = compile_graph(g)
    it = Interpreter(str(path))
    it.allocate_tensors()
    expect = {"cat.bmp": 8, "grace_hopper.bmp": 15}  # VOC cat, person (SOURCES.md)
    for name, cls in expect.items():
        x = apply_recipe(imp.preprocess, _photo(name, (257, 257)))
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        want = it.get_tensor(it.get_output_details()[0]["index"])
        got = _resize_align_corners(cm(x).astype(np.float64), 257, 257)
        assert _rel(got, want) < 1e-4, name
        assert cls in np.unique(got.argmax(-1))
