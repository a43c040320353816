"""The machinery both importers share: a small pre-graph ("net") that also holds a few
elementwise forms our op vocabulary does not have, the pattern rewrites that turn them into
vocabulary ops, and the lowering to a :class:`tinymnet.graph.Graph`.

Extra ops of the pre-graph (all shape-preserving):

* ``affine``   y = x * scale + shift along the last (channel) axis; params ``scale`` and
  ``shift`` are (C,) or (1,) arrays. From ADD/SUB/MUL/DIV by a constant, folded Add-bias...
* ``clip``     y = clip(x, lo, hi) (lo may be -inf, hi inf). From ReLU/ReLU6/Clip, TFLite
  fused activations and the clamps implied by quantized activation ranges.
* ``mul_full`` y = a * b of two equally shaped tensors (only as part of a hard-swish).

Rewrites (:func:`simplify`), each needing every intermediate tensor to have one reader:

* ``affine(s, 0)`` after ``mul_full(x, clip(...))`` moves onto the clip operand
  (x * relu6(x + 3) / 6 -> x * (relu6(x + 3) / 6));
* ``[affine(a1, b1)] -> clip(0, hi) -> affine(a2, 0)`` with scalar a2 > 0 and a2 * hi = 1
  is ``hardsigmoid(alpha=a1 * a2, beta=b1 * a2)``;
* ``mul_full(x, hardsigmoid(x))`` is ``hardswish`` with the same alpha/beta;
* ``clip -> clip`` merges; a pure shift after a conv/linear without activation goes into
  its bias.

Lowering (:func:`lower`): ``clip(0, 6)`` -> relu6, ``clip(0, inf)`` -> relu, any other clip
-> an exact affine/hardsigmoid/affine triple; ``affine`` -> ``batchnorm`` (mean 0, var 1,
eps 0), which the runtime folds into the producing conv; a grouped conv the kernels do not
run (1 < groups < Cin) -> slice_channels + one conv per group + concat; a leftover
``mul_full`` or a depthwise conv with a channel multiplier is an error.
Then activations are fused into their producers and ``global_avg_pool -> conv 1x1 (relu) ->
conv 1x1 -> hardsigmoid -> mul`` becomes one ``squeeze_excite``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import FormatError
from ..formats.tmn import QuantizedTensor
from ..graph import Graph, GraphError, Node, infer_shapes, node_output_shape

EXTRA_OPS = ("affine", "clip", "mul_full")


@dataclass
class PNode:
    name: str
    op: str
    inputs: List[str]
    output: str
    attrs: Dict[str, object] = field(default_factory=dict)
    params: Dict[str, str] = field(default_factory=dict)
    src: str = ""  # where it came from, for error messages ("operator 12 (MUL)")


class Net:
    """Nodes in execution order plus shapes, params and 8-bit weights, built op by op."""

    def __init__(self, path, name: str):
        self.path = path
        self.name = name
        self.nodes: List[PNode] = []
        self.shapes: Dict[str, Tuple] = {}
        self.inputs: Dict[str, Tuple] = {}
        self.outputs: List[str] = []
        self.params: Dict[str, np.ndarray] = {}
        self.quantized: Dict[str, QuantizedTensor] = {}
        self._names = set()

    # -- naming -----------------------------------------------------------------------------
    def unique(self, base: str) -> str:
        base = base or "t"
        name, i = base, 1
        while name in self._names:
            name = f"{base}_{i}"
            i += 1
        self._names.add(name)
        return name

    def param(self, key: str, array, quantized: Optional[QuantizedTensor] = None,
              dtype=np.float32) -> str:
        k, i = key, 1
        while k in self.params:
            k = f"{key}.{i}"
            i += 1
        self.params[k] = np.ascontiguousarray(np.asarray(array, dtype=dtype))
        if quantized is not None:
            self.quantized[k] = quantized
        return k

    def fail(self, msg) -> FormatError:
        return FormatError(msg, self.path)

    # -- building -----------------------------------------------------------------------------
    def add_input(self, name: str, shape) -> str:
        name = self.unique(name)
        self._names.add(name)
        self.inputs[name] = (None,) + tuple(int(s) for s in shape[1:])
        self.shapes[name] = self.inputs[name]
        return name

    def add(self, op: str, inputs: Sequence[str], name: str, params=None, src: str = "",
            **attrs) -> str:
        """Append a node (vocabulary op or one of EXTRA_OPS); returns its output tensor."""
        if name in self.shapes or not name:
            name = self.unique(name)
        else:
            self._names.add(name)
        params = {r: k for r, k in dict(params or {}).items() if k is not None}
        in_shapes = [self.shapes[t] for t in inputs]
        try:
            if op in EXTRA_OPS:
                shape = self._extra_shape(op, in_shapes, params, name)
            else:
                node = Node(name, op, list(inputs), name, attrs, params)
                attrs = node.attrs
                shape = node_output_shape(node, in_shapes, lambda k: self.params[k].shape)
        except (GraphError, ValueError) as e:
            raise self.fail(f"{src or name}: cannot be mapped: {e}") from None
        self.shapes[name] = shape
        self.nodes.append(PNode(name, op, list(inputs), name, dict(attrs), params, src))
        return name

    def _extra_shape(self, op, in_shapes, params, name):
        x = in_shapes[0]
        if op == "mul_full":
            if len(in_shapes) != 2 or tuple(in_shapes[1][1:]) != tuple(x[1:]):
                raise GraphError(f"mul_full needs two equal shapes, got {in_shapes}")
        elif op == "affine":
            for role in ("scale", "shift"):
                n = self.params[params[role]].size
                if n not in (1, x[-1]):
                    raise GraphError(f"{role} has {n} values for {x[-1]} channels")
        return x

    def affine(self, x: str, name: str, scale=1.0, shift=0.0, src="") -> str:
        c = self.shapes[x][-1]
        scale = _per_channel(scale, c)
        shift = _per_channel(shift, c)
        if scale is None or shift is None:
            raise self.fail(f"{src}: a constant operand must be a scalar or one value per "
                            f"channel ({c}) to be mapped")
        if np.all(scale == 1) and np.all(shift == 0):
            return x
        # float64 until lowering, so folded constants (x + 3) / 6 stay exact
        return self.add("affine", [x], name, {
            "scale": self.param(f"{name}.scale", scale, dtype=np.float64),
            "shift": self.param(f"{name}.shift", shift, dtype=np.float64)}, src=src)

    def clip(self, x: str, name: str, lo=-math.inf, hi=math.inf, src="") -> str:
        if lo == -math.inf and hi == math.inf:
            return x
        return self.add("clip", [x], name, src=src, lo=float(lo), hi=float(hi))


def _per_channel(value, c) -> Optional[np.ndarray]:
    """A constant operand broadcast over the channel axis as a (1,) or (C,) float64 array, or
    None when it varies along any other axis."""
    a = np.asarray(value, dtype=np.float64)
    if a.size == 1:
        return a.reshape(1)
    squeezed = a.reshape([s for s in a.shape if s != 1] or [1])
    if squeezed.ndim == 1 and squeezed.size == c and a.shape[-1] == c:
        return squeezed
    return None


# ---------------------------------------------------------------------------------------------
# Rewrites on the pre-graph


def _consumers(net: Net) -> Dict[str, List[PNode]]:
    out: Dict[str, List[PNode]] = {}
    for n in net.nodes:
        for t in n.inputs:
            out.setdefault(t, []).append(n)
    return out


def _sole(net: Net, cons, tensor: str, reader: PNode) -> bool:
    rs = cons.get(tensor, [])
    return len(rs) == 1 and rs[0] is reader and tensor not in net.outputs


def _scalar(net: Net, node: PNode, role: str) -> Optional[float]:
    a = net.params[node.params[role]]
    if a.size == 1 or np.all(a == a.reshape(-1)[0]):
        return float(a.reshape(-1)[0])
    return None


def _rename(net: Net, old: str, new: str):
    for n in net.nodes:
        n.inputs = [new if t == old else t for t in n.inputs]
    net.outputs = [new if t == old else t for t in net.outputs]


def _remove(net: Net, node: PNode, replace_with: str):
    """Drop `node`; its readers read `replace_with` instead (its output name is kept when
    it is a graph output, by renaming the replacement's producer)."""
    net.nodes.remove(node)
    if node.output in net.outputs:
        prod = next((n for n in net.nodes if n.output == replace_with), None)
        if prod is not None and replace_with not in net.outputs:
            _rename(net, replace_with, node.output)
            prod.output = node.output
            net.shapes[node.output] = net.shapes[replace_with]
            return
    _rename(net, node.output, replace_with)


def _push_scale_into_gate(net: Net) -> bool:
    """affine(s, 0) after mul_full(x, clip(..)) -> mul_full(x, affine(s, 0)(clip(..)))."""
    prods = {n.output: n for n in net.nodes}
    cons = _consumers(net)
    for a in net.nodes:
        if a.op != "affine":
            continue
        s, b = _scalar(net, a, "scale"), _scalar(net, a, "shift")
        m = prods.get(a.inputs[0])
        if s is None or b != 0 or s <= 0 or m is None or m.op != "mul_full" \
                or not _sole(net, cons, m.output, a):
            continue
        for i, t in enumerate(m.inputs):
            c = prods.get(t)
            if c is not None and c.op == "clip" and _sole(net, cons, c.output, m) \
                    and m.inputs[1 - i] != t:
                # move the affine between the clip and the mul; the mul takes over the
                # affine's output tensor so its readers are unchanged
                mid, out = m.output, a.output
                net.nodes.remove(a)
                a.inputs, a.output = [c.output], mid
                m.inputs[i], m.output = mid, out
                a.name, m.name = m.name, a.name
                net.nodes.insert(net.nodes.index(m), a)
                return True
    return False


def _hardsigmoid(net: Net) -> bool:
    """[affine(a1, b1)] -> clip(0, hi) -> affine(a2, 0), a2 * hi == 1 -> hardsigmoid."""
    prods = {n.output: n for n in net.nodes}
    cons = _consumers(net)
    for a2 in net.nodes:
        if a2.op != "affine":
            continue
        s2, b2 = _scalar(net, a2, "scale"), _scalar(net, a2, "shift")
        c = prods.get(a2.inputs[0])
        if s2 is None or b2 != 0 or s2 <= 0 or c is None or c.op != "clip" \
                or c.attrs["lo"] != 0 or not math.isfinite(c.attrs["hi"]) \
                or abs(s2 * c.attrs["hi"] - 1) > 2e-3 or not _sole(net, cons, c.output, a2):
            continue
        a1 = prods.get(c.inputs[0])
        s1 = b1 = None
        if a1 is not None and a1.op == "affine" and _sole(net, cons, a1.output, c):
            s1, b1 = _scalar(net, a1, "scale"), _scalar(net, a1, "shift")
        if s1 is None or b1 is None:
            a1, s1, b1 = None, 1.0, 0.0
        x = a1.inputs[0] if a1 is not None else c.inputs[0]
        idx = net.nodes.index(a2)
        node = PNode(a2.name, "activation", [x], a2.output,
                     {"activation": "hardsigmoid", "alpha": s1 * s2, "beta": b1 * s2}, {},
                     a2.src)
        net.nodes[idx] = node
        net.nodes.remove(c)
        if a1 is not None:
            net.nodes.remove(a1)
        return True
    return False


def _hardswish(net: Net) -> bool:
    """mul_full(x, hardsigmoid(x)) -> hardswish(x)."""
    prods = {n.output: n for n in net.nodes}
    cons = _consumers(net)
    for m in net.nodes:
        if m.op != "mul_full":
            continue
        for i, t in enumerate(m.inputs):
            g = prods.get(t)
            x = m.inputs[1 - i]
            if g is not None and g.op == "activation" and g.attrs["activation"] == "hardsigmoid" \
                    and g.inputs[0] == x and _sole(net, cons, g.output, m):
                idx = net.nodes.index(m)
                net.nodes[idx] = PNode(m.name, "activation", [x], m.output,
                                       {"activation": "hardswish", "alpha": g.attrs["alpha"],
                                        "beta": g.attrs["beta"]}, {}, m.src)
                net.nodes.remove(g)
                return True
    return False


def _merge_clips(net: Net) -> bool:
    prods = {n.output: n for n in net.nodes}
    cons = _consumers(net)
    for c2 in net.nodes:
        c1 = prods.get(c2.inputs[0]) if c2.op == "clip" else None
        if c1 is not None and c1.op == "clip" and _sole(net, cons, c1.output, c2):
            lo = max(c1.attrs["lo"], c2.attrs["lo"])
            hi = min(c1.attrs["hi"], c2.attrs["hi"])
            if lo > hi:
                continue
            c2.attrs = {"lo": lo, "hi": hi}
            c2.inputs = list(c1.inputs)
            net.nodes.remove(c1)
            return True
    return False


def _fold_shift(net: Net) -> bool:
    """affine(1, b) right after a conv2d / linear (no activation, one reader) -> its bias."""
    prods = {n.output: n for n in net.nodes}
    cons = _consumers(net)
    for a in net.nodes:
        if a.op != "affine" or not np.all(net.params[a.params["scale"]] == 1):
            continue
        p = prods.get(a.inputs[0])
        if p is None or p.op not in ("conv2d", "linear") or p.attrs.get("activation") \
                or len(p.inputs) != 1 or not _sole(net, cons, p.output, a):
            continue
        cout = net.shapes[p.output][-1]
        shift = np.broadcast_to(net.params[a.params["shift"]].astype(np.float64), (cout,))
        old = net.params[p.params["bias"]].astype(np.float64) if "bias" in p.params else 0.0
        p.params["bias"] = net.param(f"{p.name}.bias", old + shift)
        _remove(net, a, p.output)
        return True
    return False


def simplify(net: Net) -> None:
    for rewrite in (_merge_clips, _push_scale_into_gate, _hardsigmoid, _hardswish, _fold_shift):
        while rewrite(net):
            pass


# ---------------------------------------------------------------------------------------------
# Lowering to a Graph


def lower(net: Net, meta=None) -> Graph:
    """The pre-graph as a Graph of vocabulary ops, activations fused, SE blocks fused."""
    from ..passes.dead import remove_dead_nodes
    from ..passes.fuse import fuse_activations

    simplify(net)
    nodes: List[Node] = []
    params = dict(net.params)

    def vocab(name, op, inputs, output, attrs=None, prm=None, src=""):
        try:
            nodes.append(Node(name, op, inputs, output, attrs or {}, prm or {}))
        except GraphError as e:
            raise net.fail(f"{src or name}: {e}") from None

    def new_param(key, arr):
        k, i = key, 1
        while k in params:
            k = f"{key}.{i}"
            i += 1
        params[k] = np.ascontiguousarray(np.asarray(arr, np.float32))
        return k

    def affine_bn(name, x, out, scale, shift, c, src):
        scale = np.broadcast_to(np.asarray(scale, np.float64), (c,))
        shift = np.broadcast_to(np.asarray(shift, np.float64), (c,))
        prm = {"gamma": new_param(f"{name}.gamma", scale),
               "beta": new_param(f"{name}.beta", shift),
               "mean": new_param(f"{name}.mean", np.zeros(c)),
               "var": new_param(f"{name}.var", np.ones(c))}
        vocab(name, "batchnorm", [x], out, {"eps": 0.0}, prm, src)

    taken = set(net.shapes) | {n.name for n in net.nodes}

    def fresh(base):
        k, i = base, 1
        while k in taken:
            k = f"{base}_{i}"
            i += 1
        taken.add(k)
        return k

    for n in net.nodes:
        if n.op == "affine":
            c = net.shapes[n.output][-1]
            affine_bn(n.name, n.inputs[0], n.output, net.params[n.params["scale"]],
                      net.params[n.params["shift"]], c, n.src)
        elif n.op == "clip":
            lo, hi = n.attrs["lo"], n.attrs["hi"]
            x, c = n.inputs[0], net.shapes[n.output][-1]
            if lo == 0 and abs(hi - 6) < 1e-6:
                vocab(n.name, "activation", [x], n.output, {"activation": "relu6"}, src=n.src)
            elif lo == 0 and hi == math.inf:
                vocab(n.name, "activation", [x], n.output, {"activation": "relu"}, src=n.src)
            elif hi == math.inf:  # relu(x - lo) + lo
                t1, t2 = fresh(f"{n.name}/sub"), fresh(f"{n.name}/relu")
                affine_bn(t1, x, t1, 1.0, -lo, c, n.src)
                vocab(t2, "activation", [t1], t2, {"activation": "relu"}, src=n.src)
                affine_bn(n.name, t2, n.output, 1.0, lo, c, n.src)
            elif lo == -math.inf:  # -relu(hi - x) + hi
                t1, t2 = fresh(f"{n.name}/neg"), fresh(f"{n.name}/relu")
                affine_bn(t1, x, t1, -1.0, hi, c, n.src)
                vocab(t2, "activation", [t1], t2, {"activation": "relu"}, src=n.src)
                affine_bn(n.name, t2, n.output, -1.0, hi, c, n.src)
            else:  # lo + (hi - lo) * clip((x - lo) / (hi - lo), 0, 1)
                w = hi - lo
                t = fresh(f"{n.name}/unit")
                vocab(t, "activation", [x], t,
                      {"activation": "hardsigmoid", "alpha": 1.0 / w, "beta": -lo / w},
                      src=n.src)
                affine_bn(n.name, t, n.output, w, lo, c, n.src)
        elif n.op == "conv2d" and _needs_split(net, n):
            split_grouped_conv(net, n, params, vocab, fresh)
        elif n.op == "mul_full":
            raise net.fail(f"{n.src or n.name}: an elementwise product of two feature maps "
                           "is only supported as part of a hard-swish x * relu6(x + 3) / 6")
        else:
            vocab(n.name, n.op, n.inputs, n.output, n.attrs, n.params, n.src)

    try:
        g = Graph(nodes, net.inputs, net.outputs, params, net.name, meta)
    except GraphError as e:
        raise net.fail(f"the imported graph is inconsistent: {e}") from None
    g = fuse_activations(g)
    g = fuse_squeeze_excite(g)
    g = remove_dead_nodes(g)
    return g


# ---------------------------------------------------------------------------------------------
# Grouped convolutions: the kernels run groups == 1 and depthwise (groups == Cin == Cout)


def _needs_split(net: Net, n: PNode) -> bool:
    g = n.attrs["groups"]
    cin = net.shapes[n.inputs[0]][-1]
    cout = net.shapes[n.output][-1]
    return g != 1 and not (g == cin == cout)


def split_grouped_conv(net: Net, n: PNode, params, vocab, fresh) -> None:
    """conv2d with 1 < groups < Cin as slice_channels -> conv per group -> concat (exact)."""
    g = n.attrs["groups"]
    cin = net.shapes[n.inputs[0]][-1]
    cout = net.shapes[n.output][-1]
    if g == cin:
        raise net.fail(f"{n.src or n.name}: a depthwise convolution with channel multiplier "
                       f"{cout // cin} is not supported (only one filter per input channel)")
    cig, cog = cin // g, cout // g
    w = net.params[n.params["weight"]]
    b = net.params[n.params["bias"]] if "bias" in n.params else None
    qt = net.quantized.get(n.params["weight"])
    attrs = dict(n.attrs, groups=1)
    outs = []
    for k in range(g):
        sl = fresh(f"{n.name}/in{k}")
        vocab(sl, "slice_channels", [n.inputs[0]], sl, {"start": k * cig, "stop": (k + 1) * cig},
              src=n.src)
        wk = f"{n.params['weight']}#g{k}"
        params[wk] = np.ascontiguousarray(w[k * cog:(k + 1) * cog])
        if qt is not None and (qt.scale.size == 1 or qt.axis == 0):
            per = qt.scale.size > 1
            net.quantized[wk] = QuantizedTensor(
                np.ascontiguousarray(qt.q[k * cog:(k + 1) * cog]),
                qt.scale[k * cog:(k + 1) * cog] if per else qt.scale,
                qt.zero_point[k * cog:(k + 1) * cog] if per else qt.zero_point, qt.axis)
        prm = {"weight": wk}
        if b is not None:
            prm["bias"] = f"{n.params['bias']}#g{k}"
            params[prm["bias"]] = np.ascontiguousarray(b[k * cog:(k + 1) * cog])
        co = fresh(f"{n.name}/g{k}")
        vocab(co, "conv2d", [sl], co, attrs, prm, src=n.src)
        outs.append(co)
    vocab(n.name, "concat", outs, n.output, src=n.src)


# ---------------------------------------------------------------------------------------------
# SE fusion on the final graph


def _is_1x1_fc(graph: Graph, n: Node) -> bool:
    if n.op != "conv2d" or n.attrs["groups"] != 1 or len(n.inputs) != 1 \
            or tuple(n.attrs["stride"]) != (1, 1):
        return False
    if graph.param_shape(n.params["weight"])[2:] != (1, 1):
        return False
    return graph.resolved_padding(n) == (0, 0, 0, 0) and graph.shapes[n.inputs[0]][1:3] == (1, 1)


def fuse_squeeze_excite(graph: Graph) -> Graph:
    """global_avg_pool(x) -> conv1x1 (relu/relu6) -> conv1x1 -> hardsigmoid -> mul(x, .)
    becomes squeeze_excite(x). Every intermediate must have that one reader."""
    g = graph.copy()
    while True:
        prods, cons = g.producers(), g.consumers()

        def sole(t, reader, cons=cons):
            rs = cons.get(t, [])
            return len(rs) == 1 and rs[0] is reader and t not in g.outputs

        found = None
        for m in g.nodes:
            if m.op != "mul":
                continue
            x, s = m.inputs
            gate = prods.get(s)
            if gate is None or not sole(s, m):
                continue
            act_node = None
            if gate.op == "activation" and gate.attrs["activation"] == "hardsigmoid":
                act_node, fc2 = gate, prods.get(gate.inputs[0])
                if fc2 is None or not sole(fc2.output, gate) or fc2.attrs.get("activation"):
                    continue
                alpha, beta = gate.attrs["alpha"], gate.attrs["beta"]
            elif gate.op == "conv2d" and gate.attrs["activation"] == "hardsigmoid":
                fc2, alpha, beta = gate, gate.attrs["alpha"], gate.attrs["beta"]
            else:
                continue
            if fc2 is None or not _is_1x1_fc(g, fc2):
                continue
            fc1 = prods.get(fc2.inputs[0])
            if fc1 is None or not _is_1x1_fc(g, fc1) or not sole(fc1.output, fc2) \
                    or fc1.attrs.get("activation") not in ("relu", "relu6"):
                continue
            gap = prods.get(fc1.inputs[0])
            if gap is None or gap.op != "global_avg_pool" or gap.inputs[0] != x \
                    or not sole(gap.output, fc1):
                continue
            found = (m, act_node, fc2, fc1, gap, alpha, beta)
            break
        if found is None:
            break
        m, act_node, fc2, fc1, gap, alpha, beta = found
        prm = {"w1": fc1.params["weight"], "w2": fc2.params["weight"]}
        for role, conv in (("b1", fc1), ("b2", fc2)):
            if "bias" in conv.params:
                prm[role] = conv.params["bias"]
            else:
                cout = g.param_shape(conv.params["weight"])[0]
                key = f"{conv.name}.bias"
                while key in g.params:
                    key += "_"
                g.params[key] = np.zeros(cout, np.float32)
                prm[role] = key
        se = Node(m.name, "squeeze_excite", [m.inputs[0]], m.output,
                  {"inner": fc1.attrs["activation"], "gate": "hardsigmoid", "alpha": alpha,
                   "beta": beta}, prm)
        idx = g.nodes.index(m)
        g.nodes[idx] = se
        for n in (act_node, fc2, fc1, gap):
            if n is not None:
                g.nodes.remove(n)
    infer_shapes(g)
    return g


# ---------------------------------------------------------------------------------------------
# helpers shared by both importers


MAX_DILATED_KERNEL = 1 << 26  # elements of a dense kernel made from a dilated one (256 MB)


def expand_dilation(w: np.ndarray, dh: int, dw: int, fill=0) -> np.ndarray:
    """(O, I, KH, KW) kernel with dilation (dh, dw) as the equivalent dense kernel with zeros
    (or `fill`, per output channel, for quantized weights) between the taps."""
    if dh == 1 and dw == 1:
        return w
    o, i, kh, kw = w.shape
    ekh, ekw = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if dh < 1 or dw < 1 or o * i * ekh * ekw > MAX_DILATED_KERNEL:
        # the factors come from the file: refuse before allocating
        raise ValueError(f"a {kh}x{kw} kernel with dilation {dh}x{dw} cannot be expanded "
                         f"(to {ekh}x{ekw} taps per channel pair)")
    out = np.empty((o, i, ekh, ekw), dtype=w.dtype)
    out[...] = np.asarray(fill, dtype=w.dtype).reshape(-1, 1, 1, 1) if np.size(fill) > 1 \
        else np.asarray(fill, dtype=w.dtype)
    out[:, :, ::dh, ::dw] = w
    return out


def check_quantized(graph: Graph,
                    quantized: Dict[str, QuantizedTensor]) -> Dict[str, QuantizedTensor]:
    """Keep the 8-bit weights whose dequantized value is exactly the graph's param (a weight
    a rewrite changed is stored as float instead)."""
    out = {}
    used = {k for n in graph.nodes for k in n.params.values()}
    for k, qt in quantized.items():
        if k in used and k in graph.params and np.array_equal(qt.dequantize(), graph.params[k]):
            out[k] = qt
    return out
