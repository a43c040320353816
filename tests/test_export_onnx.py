"""ONNX export: onnxruntime on the exported model gives tinymnet's output (same weights, NCHW
input, dynamic batch) for the bundled models, every architecture and every op of the IR."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import tinymnet  # noqa: E402
from tinymnet.bundled import bundled_names  # noqa: E402
from tinymnet.errors import TinymnetError  # noqa: E402
from tinymnet.export_onnx import OPSET, export_onnx, graph_to_onnx  # noqa: E402
from tinymnet.graph import GraphBuilder, run_reference  # noqa: E402
from tinymnet.models import build  # noqa: E402
from tinymnet.passes import optimize  # noqa: E402
from tinymnet.runtime import compile_graph  # noqa: E402

RTOL = 1e-4


def session(proto):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def run_ort(proto, x_nhwc):
    sess = session(proto)
    return sess.run(None, {sess.get_inputs()[0].name:
                           np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))})[0]


def assert_close(got, ref, rtol=RTOL):
    assert got.shape == ref.shape
    err = float(np.max(np.abs(got - ref)))
    assert err <= rtol * float(np.max(np.abs(ref))), (err, float(np.max(np.abs(ref))))


def batch_of(shape, n=2, seed=0):
    h, w, c = shape
    return np.random.default_rng(seed).uniform(-1, 1, (n, h, w, c)).astype(np.float32)


def check_structure(proto, graph, batch_dim=True):
    """Opset, NCHW input with a dynamic batch, no BatchNormalization, the weights of the
    optimized graph unchanged."""
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    (inp,) = proto.graph.input
    dims = inp.type.tensor_type.shape.dim
    _, h, w, c = graph.inputs[graph.input_name]
    assert dims[0].dim_param == "N" and not dims[0].dim_value
    assert [d.dim_value for d in dims[1:]] == [c, h, w]
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    opt = optimize(graph)
    for key, arr in opt.params.items():
        stored = inits.get(key)
        if stored is None:  # SE weights stored (S, C) are written as 1x1 conv weights
            stored = next(v for k, v in inits.items() if k.startswith(key + ":"))
        np.testing.assert_array_equal(stored.reshape(arr.shape), arr)
    return ops


@pytest.mark.parametrize("name", bundled_names())
def test_bundled_models(name):
    model = tinymnet.load(name, threads=1)
    proto = export_onnx(name)
    ops = check_structure(proto, model.graph)
    assert {"Conv", "GlobalAveragePool", "Flatten"} <= ops
    x = batch_of(model.input_shape, n=2)
    assert_close(run_ort(proto, x), model(x))


ARCH_CASES = {
    # arch -> (build kwargs, ops the export must contain)
    "mobilenet_v1": (dict(resolution=96), {"Clip", "Conv", "GlobalAveragePool", "Flatten"}),
    "mobilenet_v2": (dict(resolution=96), {"Clip", "Add", "Gemm", "Flatten"}),
    "mobilenet_v3_large": (dict(resolution=96),
                           {"HardSwish", "HardSigmoid", "Relu", "Mul", "Add", "Gemm"}),
    "mobilenet_v3_small": (dict(resolution=64),
                           {"HardSwish", "HardSigmoid", "Relu", "Mul", "Add", "Gemm"}),
    "efficientnet_lite0": (dict(resolution=96), {"Clip", "Add", "Gemm"}),
    "ghostnet": (dict(resolution=64), {"Concat", "Relu", "HardSigmoid", "Mul", "Add", "Gemm"}),
    "mobilenext": (dict(resolution=64), {"Clip", "Add", "Gemm"}),
}


@pytest.mark.parametrize("arch", sorted(ARCH_CASES))
def test_random_weight_architectures(arch, tmp_path):
    kwargs, want_ops = ARCH_CASES[arch]
    g = build(arch, **kwargs)
    path = tmp_path / f"{arch}.onnx"
    proto = export_onnx(g, path)
    ops = check_structure(proto, g)
    assert want_ops <= ops, want_ops - ops
    assert onnx.load(str(path)).SerializeToString() == proto.SerializeToString()
    x = batch_of(g.inputs[g.input_name][1:], n=2, seed=1)
    want = compile_graph(g, threads=1)(x)
    # Random GhostNet weights blow activations up to ~2e4 from inputs in [-1, 1], and two
    # float32 engines summing in different orders then differ by up to 1.5e-4 of the largest
    # output (AVX2 against ORT); a wrong export (weights, pads, an op) is off by O(1).
    rtol = 5e-4 if arch == "ghostnet" else RTOL
    assert_close(run_ort(proto, x), want, rtol)
    # the batch dimension is dynamic
    assert_close(run_ort(proto, x[:1]), want[:1], rtol)


def test_same_padding_becomes_explicit_pads():
    b = GraphBuilder("same", (9, 10, 3))
    y = b.conv2d("input", "c", 4, 3, stride=2, padding="same", bias=True)
    g = b.build([y])
    proto = graph_to_onnx(g)
    (conv,) = [n for n in proto.graph.node if n.op_type == "Conv"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
    # TF SAME, k3 s2: H 9 -> 5 needs 11 rows: (1, 1); W 10 -> 5 needs 11 columns: (0, 1)
    assert g.resolved_padding(g.nodes[0]) == (1, 1, 0, 1)
    assert attrs["pads"] == [1, 0, 1, 1]  # ONNX order: top, left, bottom, right
    x = batch_of((9, 10, 3), n=2)
    assert_close(run_ort(proto, x), run_reference(g, x))


def _every_op_graph():
    """A graph using every op of the IR, with layouts that matter (non-1x1 flatten, reshape
    back to 4-D, channel concat / slice / softmax, a 4-D output)."""
    b = GraphBuilder("every_op", (12, 12, 5))
    x = b.conv2d("input", "stem", 8, 3, stride=1, padding="same", bias=False)
    x = b.batchnorm(x, "stem_bn", eps=1e-3)
    x = b.add("activation", [x], "stem_act", activation="hardswish")
    dw = b.conv2d(x, "dw", 8, 3, padding=1, groups=8, bias=True)
    x = b.add("add", [dw, x], "res", activation="relu6")
    x = b.add("dropout", [x], "drop", p=0.2)
    a = b.conv2d(x, "branch_a", 6, 1, bias=True, activation="relu")
    a2 = b.conv2d(a, "branch_a2", 6, 1, bias=True, activation="hardswish", alpha=0.2, beta=0.4)
    c = b.add("concat", [x, a2], "cat")
    c = b.add("slice_channels", [c], "slice", start=2, stop=12)
    c = b.squeeze_excite(c, "se", 4, inner="relu", gate="hardsigmoid")
    c = b.squeeze_excite(c, "se2", 4, inner="hardswish", gate="hardsigmoid",
                         conv_layout=False, alpha=0.25, beta=0.5)
    s = b.add("global_avg_pool", [c], "gap")
    s = b.add("activation", [s], "gate", activation="hardsigmoid", alpha=0.2, beta=0.45)
    c = b.add("mul", [c, s], "scale")
    c = b.add("pad", [c], "pad", pads=(1, 0, 0, 1), value=0.5)  # 13x13
    p1 = b.add("avg_pool2d", [c], "avgpool", kernel=3, stride=2, padding="same",
               count_include_pad=False)
    p2 = b.add("max_pool2d", [c], "maxpool", kernel=3, stride=2, padding=(1, 1, 1, 1))
    p3 = b.add("avg_pool2d", [c], "avgpool_incl", kernel=2, stride=2, padding=(0, 1, 0, 1))
    m = b.add("add", [p1, p2], "pools")
    m = b.add("add", [m, p3], "pools3", activation="relu")
    f = b.add("flatten", [m], "flat")                  # (N, 7*7*10): NHWC order matters
    r = b.add("reshape", [f], "reshape4", shape=(7, 7, -1))  # back to a 4-D NHWC tensor
    r = b.conv2d(r, "post", 4, 1, bias=True)
    r = b.add("reshape", [r], "reshape2", shape=(-1,))
    y = b.linear(r, "fc", 16, activation="hardswish")
    y = b.linear(y, "fc2", 7)
    y = b.add("softmax", [y], "probs")
    return b.build([y, "post"])  # a (N, classes) output and a 4-D NHWC one


def test_every_op_matches_the_reference():
    g = _every_op_graph()
    used = {n.op for n in g.nodes}
    from tinymnet.graph import OPS

    assert used == set(OPS), set(OPS) - used
    proto = graph_to_onnx(g)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Transpose", "Reshape", "Concat", "Slice", "Pad", "Softmax", "AveragePool",
            "MaxPool", "HardSwish", "HardSigmoid", "Clip", "Relu"} <= ops
    x = batch_of((12, 12, 5), n=3, seed=2)
    sess = session(proto)
    got = sess.run(None, {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})
    want = run_reference(g, x)
    assert [o.name for o in sess.get_outputs()] == ["probs", "post"]
    for a, b in zip(got, want):
        assert_close(a, b)
    # unoptimised export (BatchNormalization, separate activations) agrees too
    raw = graph_to_onnx(g, optimize=False)
    assert "BatchNormalization" in {n.op_type for n in raw.graph.node}
    got = session(raw).run(None, {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})
    for a, b in zip(got, want):
        assert_close(a, b)


def test_missing_onnx_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    with pytest.raises(TinymnetError, match=r"pip install"):
        export_onnx("mobilenet_v1_025_224_tf")


def run_cli(*argv):
    proc = subprocess.run([sys.executable, "-m", "tinymnet.cli", *map(str, argv)],
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_cli_export_onnx(tmp_path):
    out = tmp_path / "v1.onnx"
    code, stdout, err = run_cli("export-onnx", "mobilenet_v1_025_224_tf", "-o", out)
    assert code == 0, err
    assert stdout.startswith(f"wrote {out}") and "opset 17" in stdout
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    model = tinymnet.load("mobilenet_v1_025_224_tf", threads=1)
    x = batch_of(model.input_shape, n=1)
    assert_close(run_ort(proto, x), model(x))


@pytest.mark.parametrize("argv, fragment", [
    (("no_such_model",), "unknown model"),
    (("mobilenet_v2",), "architecture"),
    (("missing/model.tmn",), "no such file"),
])
def test_cli_export_onnx_errors(tmp_path, argv, fragment):
    code, _, err = run_cli("export-onnx", *argv, "-o", tmp_path / "x.onnx")
    assert code != 0 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tinymnet: error: ") and fragment in lines[0]
    assert not (tmp_path / "x.onnx").exists()


def test_cli_export_onnx_rejects_other_formats(tmp_path):
    from tinymnet.formats import save_safetensors

    src = tmp_path / "w.safetensors"
    save_safetensors(src, {"a": np.zeros(3, np.float32)})
    code, _, err = run_cli("export-onnx", src, "-o", tmp_path / "x.onnx")
    assert code != 0 and "convert it first" in err and len(err.strip().splitlines()) == 1
