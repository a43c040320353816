"""Export a tinymnet model to ONNX (opset 17) with the same weights.

The exported graph is the one tinymnet compiles (:func:`tinymnet.passes.optimize`: BatchNorm
folded, dropout removed, activations and residual adds fused), written back out as standard
ONNX ops so another runtime (onnxruntime) runs exactly the network tinymnet runs:

==================  ===========================================================================
tinymnet op         ONNX
==================  ===========================================================================
conv2d              Conv (weights as they are, OIHW; "same" padding resolved to explicit pads
                    for the model's fixed input size), then Add for a fused residual, then
                    the fused activation as its own node
activation          Relu | Clip(0, 6) | HardSigmoid(alpha, beta) | HardSwish (torch's
                    alpha = 1/6, beta = 0.5) or Mul(x, HardSigmoid(x, alpha, beta)) for others
add / mul           Add (+ activation) / Mul (broadcast over H, W)
squeeze_excite      GlobalAveragePool, Conv, inner act, Conv, gate act, Mul
global_avg_pool     GlobalAveragePool
avg_pool2d          AveragePool (count_include_pad kept)
max_pool2d          MaxPool
linear              Gemm (transB=1) + activation
flatten / reshape   Flatten / Reshape of the NHWC element order: a Transpose to NHWC first,
                    skipped when H = W = 1, where both orders agree
concat, slice,      Concat / Slice / Softmax on the channel axis, Pad on H and W,
softmax, pad        batchnorm (if not folded) as BatchNormalization, dropout as Identity
==================  ===========================================================================

Layouts: tinymnet's 4-D activations are NHWC, ONNX's are NCHW. Every 4-D tensor of the
exported graph is NCHW; tensors of any other rank hold the same elements in the same order as
tinymnet's. The graph input is ``(N, C, H, W)`` float32 with a dynamic batch dimension ``N``;
outputs are exactly tinymnet's outputs (``(N, classes)`` logits; a 4-D output would be
transposed back to NHWC). Tensor names are tinymnet's; initializers are named by param key.

Needs the optional ``onnx`` package (``pip install 'tinymnet[onnx]'``); nothing else in
tinymnet imports this module.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

import numpy as np

from ._args import DEFAULT_ALPHA, DEFAULT_BETA
from .errors import TinymnetError
from .graph import Graph, infer_shapes

__all__ = ["OPSET", "export_onnx", "graph_to_onnx", "load_graph"]

OPSET = 17
BATCH_DIM = "N"


def _onnx():
    try:
        import onnx
    except ImportError:
        raise TinymnetError("exporting to ONNX needs the optional package 'onnx', which is not "
                            "installed: pip install 'tinymnet[onnx]' (or pip install onnx)"
                            ) from None
    return onnx


class _Emitter:
    """Accumulates ONNX nodes and initializers with unique names."""

    def __init__(self, onnx, graph: Graph):
        self.onnx = onnx
        self.helper = onnx.helper
        self.graph = graph
        self.nodes: list = []
        self.inits: Dict[str, object] = {}
        self.used = set(graph.shapes) | set(graph.params)
        self.node_names = set()
        self.rank4: Dict[str, bool] = {}  # tinymnet tensor -> stored as NCHW in ONNX

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            name = f"{base}_{i}"
            i += 1
        self.used.add(name)
        return name

    def node(self, op: str, inputs: List[str], output: Optional[str] = None, name=None, **attrs):
        """Append one node; returns its output (a fresh name unless `output` is given)."""
        base = name or output or op
        node_name, i = base, 1
        while node_name in self.node_names:
            node_name = f"{base}_{i}"
            i += 1
        self.node_names.add(node_name)
        output = output or self.fresh(f"{node_name}:0")
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=node_name, **attrs))
        return output

    def init(self, name: str, array: np.ndarray) -> str:
        """A constant; the same name always means the same array."""
        if name not in self.inits:
            arr = np.ascontiguousarray(array)
            self.inits[name] = self.onnx.numpy_helper.from_array(arr, name)
            self.used.add(name)
        return name

    def param(self, key: str, shape=None) -> str:
        arr = np.asarray(self.graph.params[key], np.float32)
        if shape is not None and tuple(arr.shape) != tuple(shape):
            # e.g. an SE weight stored (S, C) used as a 1x1 conv (S, C, 1, 1)
            return self.init(f"{key}:{'x'.join(map(str, shape))}", arr.reshape(shape))
        return self.init(key, arr)

    def scalar(self, name: str, value: float) -> str:
        return self.init(name, np.array(value, np.float32))

    def activation(self, x: str, act, alpha: float, beta: float, out: Optional[str],
                   base: str) -> str:
        """y = act(x) as one or two ONNX nodes; returns y's name (x itself for no act)."""
        if act is None:
            if out is not None and out != x:
                return self.node("Identity", [x], out, name=f"{base}/identity")
            return x
        if act == "relu":
            return self.node("Relu", [x], out, name=f"{base}/relu")
        if act == "relu6":
            return self.node("Clip", [x, self.scalar("tinymnet/const/zero", 0.0),
                                      self.scalar("tinymnet/const/six", 6.0)],
                             out, name=f"{base}/relu6")
        if act == "hardsigmoid":
            return self.node("HardSigmoid", [x], out, name=f"{base}/hardsigmoid",
                             alpha=float(alpha), beta=float(beta))
        if act == "hardswish":
            if float(alpha) == DEFAULT_ALPHA and float(beta) == DEFAULT_BETA:
                return self.node("HardSwish", [x], out, name=f"{base}/hardswish")
            # ONNX HardSwish has alpha = 1/6, beta = 0.5 built in: x * HardSigmoid(x) instead
            gate = self.node("HardSigmoid", [x], None, name=f"{base}/hardswish_gate",
                             alpha=float(alpha), beta=float(beta))
            return self.node("Mul", [x, gate], out, name=f"{base}/hardswish")
        raise TinymnetError(f"cannot export activation {act!r} to ONNX")  # pragma: no cover

    def to_nhwc_order(self, t: str, base: str) -> str:
        """The tensor's elements in tinymnet's order: transposes a 4-D NCHW tensor to NHWC."""
        if not self.rank4[t]:
            return t
        _, h, w, _ = self.graph.shapes[t]
        if h == 1 and w == 1:
            return t  # (N, C, 1, 1) and (N, 1, 1, C) hold the same elements in the same order
        return self.node("Transpose", [t], None, name=f"{base}/to_nhwc", perm=[0, 2, 3, 1])


def _chan_axis(em: _Emitter, t: str) -> int:
    return 1 if em.rank4[t] else -1


def _emit(em: _Emitter, n) -> None:
    g, a, op = em.graph, n.attrs, n.op
    xs = list(n.inputs)
    out = n.output
    act = (a.get("activation"), a.get("alpha", DEFAULT_ALPHA), a.get("beta", DEFAULT_BETA))
    em.rank4[out] = len(g.shapes[out]) == 4

    def with_act(pre_op, inputs, post_inputs=None, **attrs):
        """pre_op(inputs) [+ residual] [-> activation] written to `out`."""
        last = (act[0] is None) and not post_inputs
        y = em.node(pre_op, inputs, out if last else None, name=n.name, **attrs)
        if post_inputs:
            y = em.node("Add", [y] + post_inputs, out if act[0] is None else None,
                        name=f"{n.name}/residual")
        if act[0] is not None:
            em.activation(y, act[0], act[1], act[2], out, n.name)

    if op == "conv2d":
        wkey = n.params["weight"]
        cout, _, kh, kw = g.param_shape(wkey)
        t, b, l, r = g.resolved_padding(n)
        inputs = [xs[0], em.param(wkey)]
        if "bias" in n.params:
            inputs.append(em.param(n.params["bias"]))
        with_act("Conv", inputs, xs[1:] or None, kernel_shape=[kh, kw],
                 strides=list(a["stride"]), pads=[t, l, b, r], group=a["groups"],
                 dilations=[1, 1])
    elif op == "linear":
        if em.rank4[xs[0]]:  # pragma: no cover - shape inference only allows (N, C) inputs
            raise TinymnetError(f"node {n.name!r}: linear on a 4-D tensor")
        inputs = [xs[0], em.param(n.params["weight"])]
        if "bias" in n.params:
            inputs.append(em.param(n.params["bias"]))
        with_act("Gemm", inputs, transB=1)
    elif op == "add":
        with_act("Add", xs)
    elif op == "activation":
        em.activation(xs[0], act[0], act[1], act[2], out, n.name)
    elif op == "mul":
        em.node("Mul", xs, out, name=n.name)
    elif op == "batchnorm":
        p = n.params
        ins = [em.param(p[k]) for k in ("gamma", "beta", "mean", "var")]
        if len(g.shapes[xs[0]]) not in (2, 4):
            raise TinymnetError(f"node {n.name!r}: batchnorm of a rank-{len(g.shapes[xs[0]])} "
                                "tensor cannot be exported (ONNX normalises axis 1)")
        # NCHW or (N, C): the channel axis is axis 1, as ONNX's BatchNormalization wants
        em.node("BatchNormalization", [xs[0]] + ins, out, name=n.name, epsilon=a["eps"])
    elif op == "squeeze_excite":
        c = g.shapes[xs[0]][3]
        s = g.param_shape(n.params["w1"])[0]
        pooled = em.node("GlobalAveragePool", [xs[0]], None, name=f"{n.name}/squeeze")
        ins1 = [pooled, em.param(n.params["w1"], (s, c, 1, 1))]
        if "b1" in n.params:
            ins1.append(em.param(n.params["b1"]))
        h = em.node("Conv", ins1, None, name=f"{n.name}/fc1", kernel_shape=[1, 1])
        h = em.activation(h, a["inner"], a["alpha"], a["beta"], None, f"{n.name}/inner")
        ins2 = [h, em.param(n.params["w2"], (c, s, 1, 1))]
        if "b2" in n.params:
            ins2.append(em.param(n.params["b2"]))
        e = em.node("Conv", ins2, None, name=f"{n.name}/fc2", kernel_shape=[1, 1])
        gate = em.activation(e, a["gate"], a["alpha"], a["beta"], None, f"{n.name}/gate")
        em.node("Mul", [xs[0], gate], out, name=f"{n.name}/excite")
    elif op == "global_avg_pool":
        em.node("GlobalAveragePool", xs, out, name=n.name)
    elif op in ("avg_pool2d", "max_pool2d"):
        t, b, l, r = g.resolved_padding(n)
        attrs = dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                     pads=[t, l, b, r])
        if op == "avg_pool2d":
            em.node("AveragePool", xs, out, name=n.name,
                    count_include_pad=int(a["count_include_pad"]), **attrs)
        else:
            em.node("MaxPool", xs, out, name=n.name, **attrs)
    elif op == "flatten":
        src = em.to_nhwc_order(xs[0], n.name)
        em.node("Flatten", [src], out, name=n.name, axis=1)
    elif op == "reshape":
        src = em.to_nhwc_order(xs[0], n.name)
        shape = em.init(em.fresh(f"{n.name}/shape"),
                        np.array((0,) + tuple(a["shape"]), np.int64))
        if em.rank4[out]:  # the result is NHWC data: reshape, then to NCHW
            y = em.node("Reshape", [src, shape], None, name=n.name)
            em.node("Transpose", [y], out, name=f"{n.name}/to_nchw", perm=[0, 3, 1, 2])
        else:
            em.node("Reshape", [src, shape], out, name=n.name)
    elif op == "concat":
        em.node("Concat", xs, out, name=n.name, axis=_chan_axis(em, xs[0]))
    elif op == "slice_channels":
        ax = _chan_axis(em, xs[0])
        starts = em.init(em.fresh(f"{n.name}/starts"), np.array([a["start"]], np.int64))
        ends = em.init(em.fresh(f"{n.name}/ends"), np.array([a["stop"]], np.int64))
        axes = em.init(em.fresh(f"{n.name}/axes"), np.array([ax], np.int64))
        em.node("Slice", [xs[0], starts, ends, axes], out, name=n.name)
    elif op == "pad":
        t, b, l, r = a["pads"]
        pads = em.init(em.fresh(f"{n.name}/pads"), np.array([0, 0, t, l, 0, 0, b, r], np.int64))
        value = em.scalar(em.fresh(f"{n.name}/value"), a["value"])
        em.node("Pad", [xs[0], pads, value], out, name=n.name, mode="constant")
    elif op == "softmax":
        em.node("Softmax", xs, out, name=n.name, axis=_chan_axis(em, xs[0]))
    elif op == "dropout":
        em.node("Identity", xs, out, name=n.name)
    else:  # pragma: no cover - every op of graph.OPS is handled above
        raise TinymnetError(f"node {n.name!r}: op {op!r} cannot be exported to ONNX")


def graph_to_onnx(graph: Graph, optimize: bool = True, opset: int = OPSET):
    """The graph as an ``onnx.ModelProto`` (after :func:`tinymnet.passes.optimize` unless
    ``optimize=False``). Raises TinymnetError if onnx is missing or the graph cannot be
    expressed (a graph input that is not 4-D NHWC)."""
    onnx = _onnx()
    helper, TensorProto = onnx.helper, onnx.TensorProto
    if optimize:
        from .passes import optimize as _optimize

        graph = _optimize(graph)
    infer_shapes(graph)
    em = _Emitter(onnx, graph)

    inputs = []
    for name, shape in graph.inputs.items():
        if len(shape) != 4:
            raise TinymnetError(f"graph input {name!r} has shape {shape}: only NHWC image "
                                "inputs (N, H, W, C) can be exported")
        _, h, w, c = shape
        em.rank4[name] = True
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                    [BATCH_DIM, c, h, w]))
    for n in graph.nodes:
        _emit(em, n)

    outputs = []
    for t in graph.outputs:
        shape = list(graph.shapes[t])
        if t in graph.inputs:
            raise TinymnetError(f"graph output {t!r} is the graph input itself")
        if em.rank4[t]:  # keep tinymnet's NHWC output layout
            internal = em.fresh(f"{t}/nchw")
            for node in em.nodes:
                node.output[:] = [internal if o == t else o for o in node.output]
                node.input[:] = [internal if i == t else i for i in node.input]
            em.node("Transpose", [internal], t, name=f"{t}/to_nhwc", perm=[0, 2, 3, 1])
        outputs.append(helper.make_tensor_value_info(
            t, TensorProto.FLOAT, [BATCH_DIM] + [int(s) for s in shape[1:]]))

    from . import __version__

    og = helper.make_graph(em.nodes, graph.name, inputs, outputs, list(em.inits.values()))
    model = helper.make_model(og, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="tinymnet", producer_version=__version__)
    model.ir_version = min(model.ir_version, 8)  # opset 17 = IR 8: readable by older runtimes
    meta = {"source": "tinymnet", "layout": "input NCHW; 4-D tensors NCHW"}
    for k in ("arch", "width"):
        if graph.meta.get(k) is not None:
            meta[k] = str(graph.meta[k])
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    return model


def load_graph(model) -> Graph:
    """The (unoptimised) graph of a bundled model name, a fetched model name, a ``.tmn`` path,
    a :class:`tinymnet.Model` or a :class:`Graph`."""
    if isinstance(model, Graph):
        return model
    if hasattr(model, "graph") and isinstance(model.graph, Graph):
        return model.graph
    from .bundled import resolve
    from .errors import FormatError
    from .formats.detect import detect_format
    from .formats.tmn import load_tmn

    path = resolve(model)
    kind = detect_format(path)
    if kind != "tmn":
        raise FormatError(f"this is a {kind} file, not a tinymnet model; convert it first: "
                          f"tinymnet convert {path} -o model.tmn", path)
    return load_tmn(path).graph


def export_onnx(model, path=None, opset: int = OPSET):
    """Write ``model`` (a bundled model name, a ``.tmn`` path, a ``tinymnet.Model`` or a
    ``Graph``) to ``path`` as ONNX; returns the ``onnx.ModelProto``."""
    proto = graph_to_onnx(load_graph(model), opset=opset)
    if path is not None:
        path = os.fspath(path)
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                f.write(proto.SerializeToString())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return proto
