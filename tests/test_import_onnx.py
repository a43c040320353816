"""tinymnet.importers.onnx: ONNX graphs (NCHW) -> our NHWC graph.

* the PaddleOCR text-direction classifier fixture: structure, rendered text upright / upside
  down, and logits against onnxruntime;
* tiny models written with onnx.helper covering the op set, against onnxruntime;
* errors for what an NHWC graph cannot express.
"""
from __future__ import annotations

import glob

import numpy as np
import pytest

try:
    from _fixtures import fixture
except ImportError:  # tests/ made a package
    from ._fixtures import fixture

onnx = pytest.importorskip("onnx", reason="onnx (optional extra) is not installed")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tinymnet.errors import FormatError  # noqa: E402
from tinymnet.graph import run_reference  # noqa: E402
from tinymnet.importers import apply_recipe, import_onnx  # noqa: E402
from tinymnet.runtime import compile_graph  # noqa: E402

try:
    import onnxruntime as ort
except ImportError:  # optional: only the comparisons with onnxruntime need it
    ort = None

needs_ort = pytest.mark.skipif(ort is None, reason="onnxruntime is not installed")


def _rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-12))


def _ort_run(path, x_nchw):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x_nchw})[0]


def _softmax(y):
    e = np.exp(y - y.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# PP-OCR text-direction classifier


@pytest.fixture(scope="module")
def ppocr():
    path = fixture("models", "onnx", "ch_ppocr_mobile_v2.0_cls_infer.onnx")
    imp = import_onnx(path)
    return path, imp, compile_graph(imp.graph)


LINES = ("Hello world, this is text", "Pack my box with jugs", "Sphinx of black quartz")


def _text_images():
    """Three text lines, black on white 384x48 (DejaVuSans 30 px when available)."""
    Image = pytest.importorskip("PIL.Image")
    from PIL import ImageDraw, ImageFont

    fonts = sorted(glob.glob("/usr/share/fonts/**/DejaVuSans.ttf", recursive=True))
    font = ImageFont.truetype(fonts[0], 30) if fonts else ImageFont.load_default(size=30)
    out = []
    for text in LINES:
        im = Image.new("RGB", (384, 48), "white")
        ImageDraw.Draw(im).text((6, 6), text, fill="black", font=font)
        out.append(im)
    return out


def _batch(imp, images):
    from PIL import Image

    return np.concatenate([
        apply_recipe(imp.preprocess, np.asarray(im.resize((192, 48), Image.BILINEAR)))
        for im in images])


def test_ppocr_structure(ppocr):
    _, imp, _ = ppocr
    g = imp.graph
    assert g.inputs[g.input_name] == (None, 48, 192, 3)
    assert g.shapes[g.outputs[0]] == (None, 2) and imp.num_classes == 2
    assert imp.labels == ["0", "180"] and g.meta["dropped_tail"] == ["Softmax"]
    ops = [n.op for n in g.nodes]
    assert ops.count("squeeze_excite") == 9  # GAP/Conv/Relu/Conv/HardSigmoid/Mul, fused
    assert ops.count("batchnorm") == 35 and ops.count("linear") == 1
    se = next(n for n in g.nodes if n.op == "squeeze_excite")
    assert se.attrs["gate"] == "hardsigmoid" and abs(se.attrs["alpha"] - 0.2) < 1e-6
    hs = [n for n in g.nodes if n.attrs.get("activation") == "hardswish"]
    assert len(hs) == 18  # Add/Clip/Mul/Div spelled out -> one activation each
    assert all(abs(n.attrs["alpha"] - 1 / 6) < 1e-7 and n.attrs["beta"] == 0.5 for n in hs)
    strides = {tuple(n.attrs["stride"]) for n in g.nodes if n.op == "conv2d"}
    assert (2, 1) in strides
    pre = imp.preprocess
    assert pre["input_size"] == [48, 192] and pre["mean"] == [127.5] * 3
    assert pre["std"] == [127.5] * 3 and pre["source_layout"] == "NCHW"
    assert pre["layout"] == "NHWC" and pre["crop"] == 1.0


def test_ppocr_reads_text_direction(ppocr):
    _, imp, cm = ppocr
    lines = _text_images()
    probs = _softmax(cm(_batch(imp, lines + [im.rotate(180) for im in lines])).astype(np.float64))
    upright, rotated = probs[:3, 0], probs[3:, 1]
    print(f"\nPP-OCR P(0 deg) upright {upright}, P(180 deg) rotated {rotated}")
    assert (upright >= 0.99).all() and (rotated >= 0.99).all()


@needs_ort
def test_ppocr_matches_onnxruntime(ppocr):
    path, imp, cm = ppocr
    rng = np.random.default_rng(0)
    lines = _text_images()
    batch = np.concatenate([_batch(imp, lines + [lines[0].rotate(180)]),
                            rng.uniform(-1, 1, (2, 48, 192, 3)).astype(np.float32)])
    x_nchw = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    got = cm(batch)
    assert _rel(_softmax(got.astype(np.float64)), _ort_run(path, x_nchw)) < 1e-4
    # the logits themselves: expose the tensor before the softmax as a second output
    proto = onnx.load(str(path))
    softmax = next(n for n in proto.graph.node if n.op_type == "Softmax")
    proto.graph.output.append(
        helper.make_tensor_value_info(softmax.input[0], TensorProto.FLOAT, None))
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = sess.run([softmax.input[0]], {"x": x_nchw})[0]
    assert _rel(got, logits) < 1e-4
    assert _rel(got, run_reference(imp.graph, batch)) < 1e-4


# ---------------------------------------------------------------------------------------------
# Tiny ONNX models


def _const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def _model(nodes, inits, in_shape, out_name, out_shape, opset=13):
    g = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
        initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="tinymnet-tests")
    m.ir_version = 8
    return m


def _save(m, path):
    onnx.save(m, str(path))
    return path


def _tiny_cnn(path):
    """Conv variants, BN, the hard-swish spellings, SE, pools, pad, concat, Gemm, Softmax."""
    rng = np.random.default_rng(0)
    w = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)  # noqa: E731
    inits = [
        _const("w1", w(8, 3, 3, 3)), _const("b1", w(8)),
        _const("bn_s", rng.uniform(0.5, 1.5, 8).astype(np.float32)), _const("bn_b", w(8)),
        _const("bn_m", w(8)), _const("bn_v", rng.uniform(0.5, 2, 8).astype(np.float32)),
        _const("three", np.float32(3)), _const("zero", np.float32(0)),
        _const("six", np.float32(6)),
        _const("wdw", w(8, 1, 3, 3)),
        _const("wse1", w(4, 8, 1, 1)), _const("bse1", w(4)),
        _const("wse2", w(8, 4, 1, 1)), _const("bse2_4d", w(1, 8, 1, 1)),
        _const("w2", w(8, 4, 3, 3)),  # groups=2
        _const("half", np.float32(0.5)), _const("chan", w(1, 8, 1, 1)),
        _const("wfc", w(16, 5)), _const("bfc", w(5)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], auto_pad="SAME_UPPER",
                         strides=[2, 2], kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"],
                         epsilon=1e-3),
        # hard-swish as Add / Clip / Mul / Div
        helper.make_node("Add", ["bn", "three"], ["hs_a"]),
        helper.make_node("Clip", ["hs_a", "zero", "six"], ["hs_c"]),
        helper.make_node("Mul", ["bn", "hs_c"], ["hs_m"]),
        helper.make_node("Div", ["hs_m", "six"], ["hs"]),
        # depthwise, dilation 2, explicit asymmetric pads, relu6 as Clip
        helper.make_node("Conv", ["hs", "wdw"], ["dw"], group=8, dilations=[2, 2],
                         pads=[2, 1, 2, 3], strides=[1, 2]),
        helper.make_node("Clip", ["dw", "zero", "six"], ["dw6"]),
        # SE: GAP -> Conv+bias -> Relu -> Conv -> Add(reshaped bias) -> HardSigmoid -> Mul
        helper.make_node("GlobalAveragePool", ["dw6"], ["se_p"]),
        helper.make_node("Conv", ["se_p", "wse1", "bse1"], ["se_1"]),
        helper.make_node("Relu", ["se_1"], ["se_r"]),
        helper.make_node("Conv", ["se_r", "wse2"], ["se_2"]),
        helper.make_node("Add", ["se_2", "bse2_4d"], ["se_2b"]),
        helper.make_node("HardSigmoid", ["se_2b"], ["se_g"], alpha=0.2, beta=0.5),
        helper.make_node("Mul", ["dw6", "se_g"], ["se"]),
        # hard-swish as Mul(x, HardSigmoid(x)) and as the HardSwish op (opset 14)
        helper.make_node("HardSigmoid", ["se"], ["hsig"], alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", ["hsig", "se"], ["hs2"]),
        helper.make_node("Conv", ["hs2", "w2"], ["g2"], group=2, pads=[1, 1, 1, 1]),
        helper.make_node("HardSwish", ["g2"], ["hs3"]),
        # constants: Sub, per-channel Mul, Div
        helper.make_node("Sub", ["hs3", "half"], ["sub"]),
        helper.make_node("Mul", ["sub", "chan"], ["cm"]),
        helper.make_node("Div", ["cm", "six"], ["dv"]),
        # pools, pad, concat, residual add
        helper.make_node("AveragePool", ["dv"], ["ap"], kernel_shape=[3, 3], strides=[1, 1],
                         pads=[1, 1, 1, 1], count_include_pad=0),
        helper.make_node("Add", ["ap", "dv"], ["res"]),
        helper.make_node("MaxPool", ["res"], ["mp"], kernel_shape=[2, 2], strides=[2, 2],
                         ceil_mode=1),
        helper.make_node("Pad", ["mp", "pads"], ["pd"], mode="constant"),
        helper.make_node("AveragePool", ["pd"], ["ap2"], kernel_shape=[2, 2], strides=[2, 2],
                         pads=[0, 0, 1, 1], count_include_pad=1),
        helper.make_node("GlobalAveragePool", ["ap2"], ["gap"]),
        helper.make_node("GlobalAveragePool", ["mp"], ["gap2"]),
        helper.make_node("Concat", ["gap", "gap2"], ["cat"], axis=1),
        helper.make_node("Flatten", ["cat"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "wfc", "bfc"], ["logits"], alpha=0.5, beta=2.0),
        helper.make_node("Softmax", ["logits"], ["prob"], axis=-1),
    ]
    inits.append(_const("pads", np.array([0, 0, 1, 0, 0, 0, 0, 2], np.int64)))
    m = _model(nodes, inits, [1, 3, 15, 22], "prob", [1, 5], opset=14)
    return _save(m, path)


def _tiny_shape_reshape(path):
    """PyTorch's x.view(x.size(0), -1) after a global pool, then MatMul + Add."""
    rng = np.random.default_rng(1)
    inits = [_const("w", (rng.standard_normal((6, 3, 1, 1)) * 0.5).astype(np.float32)),
             _const("idx0", np.array(0, np.int64)), _const("m1", np.array([-1], np.int64)),
             _const("fc", rng.standard_normal((6, 4)).astype(np.float32)),
             _const("fb", rng.standard_normal(4).astype(np.float32))]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Shape", ["p"], ["s"]),
        helper.make_node("Gather", ["s", "idx0"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "zero_axis"], ["n1"]),
        helper.make_node("Concat", ["n1", "m1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["p", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc"], ["mm"]),
        helper.make_node("Add", ["mm", "fb"], ["out"]),
    ]
    inits.append(_const("zero_axis", np.array([0], np.int64)))
    m = _model(nodes, inits, ["N", 3, "H", "W"], "out", ["N", 4])
    return _save(m, path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_onnx")
    return {"cnn": _tiny_cnn(d / "cnn.onnx"), "reshape": _tiny_shape_reshape(d / "rs.onnx")}


def test_tiny_cnn_structure(tiny):
    imp = import_onnx(tiny["cnn"])
    g = imp.graph
    ops = [n.op for n in g.nodes]
    acts = [n.attrs.get("activation") for n in g.nodes]
    assert "squeeze_excite" in ops and acts.count("hardswish") == 3
    assert g.meta["dropped_tail"] == ["Softmax"] and imp.num_classes == 5
    dw = next(n for n in g.nodes if n.op == "conv2d" and n.attrs["groups"] == 8)
    assert g.params[dw.params["weight"]].shape == (8, 1, 5, 5)
    assert dw.attrs["padding"] == (2, 2, 1, 3) and dw.attrs["stride"] == (1, 2)
    assert imp.preprocess["source_layout"] == "NCHW"
    assert "assumed" in imp.preprocess["source"]  # an ONNX file has no normalisation


@needs_ort
@pytest.mark.parametrize("which", ["cnn", "reshape"])
def test_tiny_models_match_onnxruntime(tiny, which):
    imp = import_onnx(tiny[which], input_size=(8, 8) if which == "reshape" else None)
    cm = compile_graph(imp.graph)
    shape = (3,) + imp.graph.inputs[imp.graph.input_name][1:]
    x = np.random.default_rng(2).uniform(-2, 2, shape).astype(np.float32)
    x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if which == "cnn":
        want = np.concatenate([_ort_run(tiny[which], x_nchw[i:i + 1]) for i in range(3)])
        got = _softmax(cm(x).astype(np.float64))
    else:
        want, got = _ort_run(tiny[which], x_nchw), cm(x)
    assert _rel(got, want) < 1e-4
    assert _rel(cm(x), run_reference(imp.graph, x)) < 1e-5


def test_dynamic_size_needs_input_size(tiny):
    with pytest.raises(FormatError, match="input_size"):
        import_onnx(tiny["reshape"])
    imp = import_onnx(tiny["reshape"], input_size=(8, 8), mean=0, std=1)
    assert imp.preprocess["mean"] == [0.0] * 3 and imp.preprocess["input_size"] == [8, 8]


def _one_op_model(tmp_path, nodes, out_shape, inits=(), name="m.onnx"):
    m = _model(nodes, list(inits), [1, 4, 6, 6], "y", out_shape)
    return _save(m, tmp_path / name)


def test_nchw_order_dependent_ops_are_refused(tmp_path):
    path = _one_op_model(tmp_path, [helper.make_node("Flatten", ["x"], ["y"])], [1, 144])
    with pytest.raises(FormatError, match=r"node 0 \(Flatten.*NCHW"):
        import_onnx(path)
    path = _one_op_model(tmp_path, [helper.make_node("Transpose", ["x"], ["y"],
                                                     perm=[0, 2, 3, 1])], [1, 6, 6, 4])
    with pytest.raises(FormatError, match="Transpose"):
        import_onnx(path)


def test_unsupported_and_broken_files(tmp_path, tiny):
    path = _one_op_model(tmp_path, [helper.make_node("Tanh", ["x"], ["y"])], [1, 4, 6, 6])
    with pytest.raises(FormatError) as e:
        import_onnx(path)
    assert str(path) in str(e.value) and "node 0 (Tanh" in str(e.value)
    path = _one_op_model(tmp_path, [helper.make_node("Sigmoid", ["x"], ["s"]),
                                    helper.make_node("Mul", ["x", "s"], ["y"])], [1, 4, 6, 6],
                         name="swish.onnx")
    with pytest.raises(FormatError, match="sigmoid"):
        import_onnx(path)
    data = tiny["cnn"].read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(FormatError) as e:
        import_onnx(cut)
    assert str(cut) in str(e.value)
