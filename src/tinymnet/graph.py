"""A small graph IR for the MobileNet family.

A :class:`Graph` is a list of :class:`Node` in execution (topological) order. Each node is one
op from the vocabulary below, reads named activation tensors (``inputs``), writes exactly one
named tensor (``output``) and refers to its constant tensors (weights) by name through
``node.params`` (role -> key of ``graph.params``, a dict of float32 numpy arrays). Weight keys
are the source framework's state_dict keys, so a torchvision state_dict loads by name.

Activation tensors are NHWC ``(N, H, W, C)`` or, after ``flatten``/``linear``, ``(N, C)``.
The batch dimension is symbolic: it is stored as ``None`` in ``graph.shapes`` (and ``null`` in
JSON); executors take whatever batch the input has.

Op vocabulary (attributes with their defaults; param roles; inputs):

=================  ==============================================================================
op                 meaning
=================  ==============================================================================
conv2d             y = act(conv(x, weight) + bias + residual).  params: weight (Cout, Cin/g, KH,
                   KW), bias (Cout,) optional.  attrs: stride=(1, 1), padding=(0, 0, 0, 0)
                   (top, bottom, left, right) or "same" (TF SAME, resolved per input size),
                   groups=1, activation=None, alpha=1/6, beta=0.5.  inputs: [x] or
                   [x, residual] (residual has the output's shape).
batchnorm          y = (x - mean) / sqrt(var + eps) * gamma + beta over the last axis.
                   params: gamma, beta, mean, var (C,).  attrs: eps=1e-5.
activation         y = act(x).  attrs: activation (relu, relu6, hardswish, hardsigmoid),
                   alpha, beta.
add                y = act(a + b), same shapes.  attrs: activation=None, alpha, beta.
mul                y = x * s, x (N, H, W, C), s (N, 1, 1, C).
squeeze_excite     y = x * gate(fc2(inner(fc1(mean_hw(x))))).  params: w1 (S, C[,1,1]), b1 (S,),
                   w2 (C, S[,1,1]), b2 (C,).  attrs: inner="relu", gate="hardsigmoid",
                   alpha, beta (used by both activations).
global_avg_pool    mean over H, W -> (N, 1, 1, C).
avg_pool2d         attrs: kernel, stride (default = kernel), padding=(0, 0, 0, 0) or "same",
                   count_include_pad=True (False: divide by in-bounds taps, TF SAME).
max_pool2d         attrs: kernel, stride (default = kernel), padding (padding never wins).
linear             y = act(x @ weight.T + bias), x (N, Cin).  params: weight (Cout, Cin),
                   bias (Cout,) optional.  attrs: activation=None, alpha, beta.
flatten            (N, ...) -> (N, prod(...)) in NHWC element order.
reshape            attrs: shape (without the batch; one entry may be -1), NHWC element order.
concat             along the channel (last) axis; any number of inputs with equal leading dims.
slice_channels     y = x[..., start:stop].  attrs: start, stop.
pad                constant spatial padding.  attrs: pads (top, bottom, left, right), value=0.
softmax            over the last axis.
dropout            identity at inference.  attrs: p=0.
=================  ==============================================================================

``run_reference(graph, x)`` executes any graph with the NumPy ops of :mod:`tinymnet.reference`
(the few trivial ops the reference module does not have are written inline here).
``graph_to_dict``/``graph_from_dict`` turn a graph into a JSON-able dict (params by name and
shape only; the arrays travel separately, e.g. in a ``.tmn`` file).
"""

from __future__ import annotations

import copy
import math
import zlib
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tinymnet._args import (
    DEFAULT_ALPHA,
    DEFAULT_BETA,
    check_activation,
    check_padding,
    conv_out_hw,
    pair,
    resolve_padding,
)

__all__ = [
    "OPS",
    "Node",
    "Graph",
    "GraphBuilder",
    "GraphError",
    "infer_shapes",
    "run_reference",
    "graph_to_dict",
    "graph_from_dict",
    "toposort",
    "check_params",
]

GRAPH_FORMAT = "tinymnet.graph"
GRAPH_VERSION = 1

Shape = Tuple[Optional[int], ...]


class GraphError(ValueError):
    """A malformed graph: unknown op, wrong arity, dangling tensor, inconsistent shapes."""


# ---------------------------------------------------------------------------------------------
# The op vocabulary: inputs, param roles and attributes (with their defaults) of every op.


@dataclass(frozen=True)
class OpSpec:
    n_inputs: Tuple[int, Optional[int]]  # (min, max); max None = any number
    params: Tuple[str, ...] = ()  # roles, in order
    optional_params: Tuple[str, ...] = ()  # roles that may be absent (e.g. bias)
    attrs: Mapping[str, object] = field(default_factory=dict)  # name -> default (REQUIRED)


REQUIRED = object()  # marks an attribute without a default
_ACT_ATTRS = {"activation": None, "alpha": DEFAULT_ALPHA, "beta": DEFAULT_BETA}

OPS: Dict[str, OpSpec] = {
    "conv2d": OpSpec(
        (1, 2),
        ("weight", "bias"),
        ("bias",),
        {"stride": (1, 1), "padding": (0, 0, 0, 0), "groups": 1, **_ACT_ATTRS},
    ),
    "batchnorm": OpSpec((1, 1), ("gamma", "beta", "mean", "var"), (), {"eps": 1e-5}),
    "activation": OpSpec(
        (1, 1), (), (), {"activation": REQUIRED, "alpha": DEFAULT_ALPHA, "beta": DEFAULT_BETA}
    ),
    "add": OpSpec((2, 2), (), (), dict(_ACT_ATTRS)),
    "mul": OpSpec((2, 2)),
    "squeeze_excite": OpSpec(
        (1, 1),
        ("w1", "b1", "w2", "b2"),
        ("b1", "b2"),
        {"inner": "relu", "gate": "hardsigmoid", "alpha": DEFAULT_ALPHA, "beta": DEFAULT_BETA},
    ),
    "global_avg_pool": OpSpec((1, 1)),
    "avg_pool2d": OpSpec(
        (1, 1),
        attrs={
            "kernel": REQUIRED,
            "stride": None,
            "padding": (0, 0, 0, 0),
            "count_include_pad": True,
        },
    ),
    "max_pool2d": OpSpec(
        (1, 1), attrs={"kernel": REQUIRED, "stride": None, "padding": (0, 0, 0, 0)}
    ),
    "linear": OpSpec((1, 1), ("weight", "bias"), ("bias",), dict(_ACT_ATTRS)),
    "flatten": OpSpec((1, 1)),
    "reshape": OpSpec((1, 1), attrs={"shape": REQUIRED}),
    "concat": OpSpec((1, None)),
    "slice_channels": OpSpec((1, 1), attrs={"start": REQUIRED, "stop": REQUIRED}),
    "pad": OpSpec((1, 1), attrs={"pads": REQUIRED, "value": 0.0}),
    "softmax": OpSpec((1, 1)),
    "dropout": OpSpec((1, 1), attrs={"p": 0.0}),
}


def _norm_attr(op: str, key: str, value):
    """Canonical Python value of one attribute (tuples, not lists, so JSON round trips)."""
    if key in ("activation", "inner"):
        act = check_activation(value, key)
        if act is None and op == "activation":
            raise GraphError("an activation node needs an activation, got None")
        return act
    if key == "gate":
        act = check_activation(value, "gate")
        if act is None:
            raise GraphError("squeeze_excite needs a gate activation, got None")
        return act
    if key in ("alpha", "beta", "eps", "value", "p"):
        return float(value)
    if key in ("stride", "kernel"):
        return None if value is None else pair(value, key)
    if key == "padding":
        return check_padding(value)
    if key == "pads":
        pads = check_padding(value)
        if pads == "same":
            raise GraphError('pad needs explicit pads, not "same"')
        return pads
    if key in ("groups", "start", "stop"):
        if isinstance(value, bool) or int(value) != value:
            raise GraphError(f"{op}.{key} must be an int, got {value!r}")
        return int(value)
    if key == "count_include_pad":
        return bool(value)
    if key == "shape":
        shape = tuple(int(v) for v in value)
        if sum(v == -1 for v in shape) > 1 or any(v < -1 or v == 0 for v in shape):
            raise GraphError(f"reshape shape must be positive ints and at most one -1: {value!r}")
        return shape
    raise GraphError(f"{op} has no attribute {key!r}")


def normalize_attrs(op: str, attrs: Mapping[str, object]) -> Dict[str, object]:
    """Fill defaults and canonicalise; raises GraphError on unknown/missing attributes."""
    spec = OPS.get(op)
    if spec is None:
        raise GraphError(f"unknown op {op!r}; known ops: {sorted(OPS)}")
    unknown = set(attrs) - set(spec.attrs)
    if unknown:
        raise GraphError(f"{op} has no attribute(s) {sorted(unknown)}; it takes {list(spec.attrs)}")
    out = {}
    for key, default in spec.attrs.items():
        value = attrs.get(key, default)
        if value is REQUIRED:
            raise GraphError(f"{op} needs the attribute {key!r}")
        out[key] = _norm_attr(op, key, value)
    if op == "avg_pool2d" or op == "max_pool2d":
        if out["stride"] is None:  # torch's default: stride = kernel
            out["stride"] = out["kernel"]
    if op == "conv2d" and out["groups"] < 1:
        raise GraphError(f"conv2d groups must be >= 1, got {out['groups']}")
    return out


# ---------------------------------------------------------------------------------------------
# Nodes and graphs


@dataclass
class Node:
    name: str
    op: str
    inputs: List[str]
    output: str
    attrs: Dict[str, object] = field(default_factory=dict)
    params: Dict[str, str] = field(default_factory=dict)  # role -> key in graph.params

    def __post_init__(self):
        spec = OPS.get(self.op)
        if spec is None:
            raise GraphError(f"node {self.name!r}: unknown op {self.op!r}")
        self.inputs = list(self.inputs)
        lo, hi = spec.n_inputs
        if len(self.inputs) < lo or (hi is not None and len(self.inputs) > hi):
            want = f"{lo}" if lo == hi else f"{lo}..{hi if hi is not None else 'n'}"
            raise GraphError(
                f"node {self.name!r} ({self.op}) takes {want} inputs, got {self.inputs}"
            )
        self.attrs = normalize_attrs(self.op, self.attrs)
        self.params = {k: v for k, v in dict(self.params).items() if v is not None}
        unknown = set(self.params) - set(spec.params)
        missing = set(spec.params) - set(spec.optional_params) - set(self.params)
        if unknown or missing:
            raise GraphError(
                f"node {self.name!r} ({self.op}): param roles are {list(spec.params)} "
                f"(optional {list(spec.optional_params)}); unknown {sorted(unknown)}, "
                f"missing {sorted(missing)}"
            )

    def copy(self) -> "Node":
        return Node(
            self.name, self.op, list(self.inputs), self.output, dict(self.attrs), dict(self.params)
        )


class Graph:
    """Nodes in execution order, graph inputs/outputs, params and inferred tensor shapes.

    ``inputs`` maps each graph input tensor to its shape (batch None); ``shapes`` maps every
    tensor (inputs included) to its shape and is refreshed by :func:`infer_shapes`.
    ``meta`` holds JSON-able facts about the model (arch, num_classes, preprocessing...).
    """

    def __init__(
        self,
        nodes: Sequence[Node],
        inputs: Mapping[str, Sequence[Optional[int]]],
        outputs: Sequence[str],
        params: Optional[Mapping[str, np.ndarray]] = None,
        name: str = "graph",
        meta: Optional[Mapping[str, object]] = None,
    ):
        self.name = name
        self.nodes: List[Node] = list(nodes)
        self.inputs: Dict[str, Shape] = {k: _batch_none(v) for k, v in inputs.items()}
        self.outputs: List[str] = list(outputs)
        self.params: Dict[str, np.ndarray] = dict(params or {})
        self.meta: Dict[str, object] = dict(meta or {})
        self.shapes: Dict[str, Shape] = {}
        infer_shapes(self)

    # -- structure queries --------------------------------------------------------------------
    def producers(self) -> Dict[str, Node]:
        return {n.output: n for n in self.nodes}

    def consumers(self) -> Dict[str, List[Node]]:
        """tensor -> nodes reading it (a node reading a tensor twice appears twice)."""
        out: Dict[str, List[Node]] = {}
        for n in self.nodes:
            for t in n.inputs:
                out.setdefault(t, []).append(n)
        return out

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def param_shape(self, key: str) -> Tuple[int, ...]:
        try:
            return tuple(self.params[key].shape)
        except KeyError:
            raise GraphError(f"param {key!r} is not in graph.params") from None

    @property
    def input_name(self) -> str:
        if len(self.inputs) != 1:
            raise GraphError(f"graph has {len(self.inputs)} inputs, not one")
        return next(iter(self.inputs))

    def resolved_padding(self, node: Node) -> Tuple[int, int, int, int]:
        """(top, bottom, left, right) of a conv/pool node for this graph's input size."""
        h, w = self.shapes[node.inputs[0]][1:3]
        if node.op == "conv2d":
            kernel = self.param_shape(node.params["weight"])[2:]
        else:
            kernel = node.attrs["kernel"]
        return resolve_padding(node.attrs["padding"], (h, w), kernel, node.attrs["stride"])

    def copy(self) -> "Graph":
        """Nodes and dicts copied; the param arrays are shared (passes never write into them)."""
        return Graph(
            [n.copy() for n in self.nodes],
            self.inputs,
            self.outputs,
            self.params,
            self.name,
            copy.deepcopy(self.meta),
        )

    def __repr__(self):
        return (
            f"Graph({self.name!r}, {len(self.nodes)} nodes, inputs={dict(self.inputs)}, "
            f"outputs={self.outputs}, {len(self.params)} params)"
        )

    def summary(self) -> str:
        lines = [repr(self)]
        for n in self.nodes:
            lines.append(
                f"  {n.name:<36} {n.op:<16} {str(self.shapes.get(n.output)):<24} <- {n.inputs}"
            )
        return "\n".join(lines)


def _batch_none(shape) -> Shape:
    shape = tuple(shape)
    return (None,) + tuple(int(s) for s in shape[1:])


# ---------------------------------------------------------------------------------------------
# Shape inference


def _need_rank(node, shape, rank):
    if len(shape) != rank:
        raise GraphError(f"node {node.name!r} ({node.op}) needs a rank-{rank} input, got {shape}")


def node_output_shape(node: Node, in_shapes: Sequence[Shape], param_shape: Callable) -> Shape:
    """Output shape of one node given its input shapes; checks weights against the inputs."""
    op, a = node.op, node.attrs
    x = in_shapes[0]
    where = f"node {node.name!r} ({op})"

    if op == "conv2d":
        _need_rank(node, x, 4)
        n, h, w, c = x
        wshape = param_shape(node.params["weight"])
        if len(wshape) != 4:
            raise GraphError(f"{where}: weight must be (Cout, Cin/g, KH, KW), got {wshape}")
        cout, cin_g, kh, kw = wshape
        g = a["groups"]
        if c % g or cout % g or cin_g * g != c:
            raise GraphError(
                f"{where}: weight {wshape} with groups={g} does not fit {c} input channels"
            )
        if "bias" in node.params and param_shape(node.params["bias"]) != (cout,):
            raise GraphError(
                f"{where}: bias must be ({cout},), got {param_shape(node.params['bias'])}"
            )
        pads = resolve_padding(a["padding"], (h, w), (kh, kw), a["stride"])
        oh, ow = conv_out_hw((h, w), (kh, kw), a["stride"], pads, what=where)
        out = (n, oh, ow, cout)
        if len(in_shapes) == 2 and tuple(in_shapes[1][1:]) != out[1:]:
            raise GraphError(f"{where}: residual {in_shapes[1]} does not match output {out}")
        return out

    if op == "batchnorm":
        for role in ("gamma", "beta", "mean", "var"):
            if param_shape(node.params[role]) != (x[-1],):
                raise GraphError(
                    f"{where}: {role} must be ({x[-1]},), got {param_shape(node.params[role])}"
                )
        return x

    if op in ("activation", "dropout", "softmax"):
        return x

    if op == "add":
        if tuple(x[1:]) != tuple(in_shapes[1][1:]):
            raise GraphError(f"{where}: shapes {x} and {in_shapes[1]} differ")
        return x

    if op == "mul":
        s = in_shapes[1]
        _need_rank(node, x, 4)
        if len(s) != 4 or tuple(s[1:]) != (1, 1, x[3]):
            raise GraphError(f"{where}: scale must be (N, 1, 1, {x[3]}), got {s}")
        return x

    if op == "squeeze_excite":
        _need_rank(node, x, 4)
        c = x[3]
        w1, w2 = param_shape(node.params["w1"]), param_shape(node.params["w2"])
        if len(w1) not in (2, 4) or w1[1] != c or (len(w1) == 4 and w1[2:] != (1, 1)):
            raise GraphError(f"{where}: w1 must be (S, {c}[, 1, 1]), got {w1}")
        s = w1[0]
        if len(w2) not in (2, 4) or w2[:2] != (c, s) or (len(w2) == 4 and w2[2:] != (1, 1)):
            raise GraphError(f"{where}: w2 must be ({c}, {s}[, 1, 1]), got {w2}")
        for role, n_out in (("b1", s), ("b2", c)):
            if role in node.params and param_shape(node.params[role]) != (n_out,):
                raise GraphError(f"{where}: {role} must be ({n_out},)")
        return x

    if op == "global_avg_pool":
        _need_rank(node, x, 4)
        return (x[0], 1, 1, x[3])

    if op in ("avg_pool2d", "max_pool2d"):
        _need_rank(node, x, 4)
        pads = resolve_padding(a["padding"], x[1:3], a["kernel"], a["stride"])
        oh, ow = conv_out_hw(x[1:3], a["kernel"], a["stride"], pads, what=where)
        return (x[0], oh, ow, x[3])

    if op == "linear":
        _need_rank(node, x, 2)
        wshape = param_shape(node.params["weight"])
        if len(wshape) != 2 or wshape[1] != x[1]:
            raise GraphError(f"{where}: weight must be (Cout, {x[1]}), got {wshape}")
        if "bias" in node.params and param_shape(node.params["bias"]) != (wshape[0],):
            raise GraphError(f"{where}: bias must be ({wshape[0]},)")
        return (x[0], wshape[0])

    if op == "flatten":
        return (x[0], int(np.prod(x[1:])))

    if op == "reshape":
        total = int(np.prod(x[1:]))
        shape = list(a["shape"])
        known = int(np.prod([s for s in shape if s != -1]))
        if -1 in shape:
            if total % known:
                raise GraphError(f"{where}: cannot reshape {x} to {a['shape']}")
            shape[shape.index(-1)] = total // known
        if int(np.prod(shape)) != total:
            raise GraphError(f"{where}: cannot reshape {x} to {a['shape']}")
        return (x[0],) + tuple(shape)

    if op == "concat":
        lead = tuple(x[1:-1])
        for s in in_shapes:
            if len(s) != len(x) or tuple(s[1:-1]) != lead:
                raise GraphError(
                    f"{where}: inputs {list(in_shapes)} differ outside the channel axis"
                )
        return tuple(x[:-1]) + (sum(s[-1] for s in in_shapes),)

    if op == "slice_channels":
        c = x[-1]
        if not 0 <= a["start"] < a["stop"] <= c:
            raise GraphError(
                f"{where}: need 0 <= start < stop <= {c}, got {a['start']}:{a['stop']}"
            )
        return tuple(x[:-1]) + (a["stop"] - a["start"],)

    if op == "pad":
        _need_rank(node, x, 4)
        t, b, l, r = a["pads"]
        return (x[0], x[1] + t + b, x[2] + l + r, x[3])

    raise GraphError(f"{where}: no shape rule")  # unreachable: OPS and this function agree


def infer_shapes(graph: Graph) -> Dict[str, Shape]:
    """Recompute graph.shapes; raises GraphError on any inconsistency (unknown tensor, a tensor
    written twice, a node reading a tensor before it is produced, shape mismatch)."""
    shapes: Dict[str, Shape] = dict(graph.inputs)
    names = set()
    for node in graph.nodes:
        if node.name in names:
            raise GraphError(f"duplicate node name {node.name!r}")
        names.add(node.name)
        missing = [t for t in node.inputs if t not in shapes]
        if missing:
            raise GraphError(f"node {node.name!r} reads {missing} before they are produced")
        if node.output in shapes:
            raise GraphError(f"tensor {node.output!r} is written twice (node {node.name!r})")
        shapes[node.output] = node_output_shape(
            node, [shapes[t] for t in node.inputs], graph.param_shape
        )
    for t in graph.outputs:
        if t not in shapes:
            raise GraphError(f"graph output {t!r} is never produced")
    graph.shapes = shapes
    return shapes


def toposort(nodes: Sequence[Node], available: Sequence[str]) -> List[Node]:
    """Stable topological order: each node goes as early as its inputs allow, ties keep the
    given order. Used by passes that rewire inputs (e.g. a fused residual)."""
    ready = set(available)
    pending = list(nodes)
    out: List[Node] = []
    while pending:
        for i, n in enumerate(pending):
            if all(t in ready for t in n.inputs):
                out.append(pending.pop(i))
                ready.add(n.output)
                break
        else:
            raise GraphError(f"cycle or missing tensor among {[n.name for n in pending]}")
    return out


# ---------------------------------------------------------------------------------------------
# Params: validation and deterministic random init


def check_params(
    expected: Mapping[str, Tuple[int, ...]], given: Mapping[str, object], what: str = "params"
) -> Dict[str, np.ndarray]:
    """Match a name -> array dict against the expected name -> shape dict.

    Returns float32 contiguous arrays. Keys ending in ``num_batches_tracked`` (a torch
    BatchNorm counter, never used at inference) are ignored. Raises ValueError listing every
    missing, unexpected and wrong-shape key at once, so a converter bug shows in one go.
    """
    given = {k: v for k, v in given.items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    arrays, wrong = {}, []
    for k in expected:
        if k not in given:
            continue
        arr = np.ascontiguousarray(np.asarray(given[k], dtype=np.float32))
        if arr.shape != tuple(expected[k]):
            wrong.append(f"{k}: expected {tuple(expected[k])}, got {arr.shape}")
        arrays[k] = arr
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if wrong:
            parts.append("wrong shapes [" + "; ".join(wrong) + "]")
        raise ValueError(f"{what} do not match the model: " + ", ".join(parts))
    return arrays


def random_param(name: str, shape: Tuple[int, ...], kind: str, seed: int = 0) -> np.ndarray:
    """Deterministic random init of one param, seeded by (seed, name) so it does not depend on
    the order params are created in.

    Weights are He-normal (fan-in); BatchNorm statistics are deliberately non-trivial
    (gamma ~ U(0.5, 1.5), var ~ U(0.5, 2), mean/beta ~ N(0, 0.1)) so tests of BN folding and
    of converters exercise every term.
    """
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    if kind == "weight":
        fan_in = int(np.prod(shape[1:])) or 1
        arr = rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
    elif kind == "linear":  # last layers: no gain, keeps logits O(1)
        fan_in = int(np.prod(shape[1:])) or 1
        arr = rng.normal(0.0, math.sqrt(1.0 / fan_in), shape)
    elif kind == "bias":
        arr = rng.normal(0.0, 0.05, shape)
    elif kind == "gamma":
        arr = rng.uniform(0.5, 1.5, shape)
    elif kind in ("beta", "mean"):
        arr = rng.normal(0.0, 0.1, shape)
    elif kind == "var":
        arr = rng.uniform(0.5, 2.0, shape)
    else:
        raise ValueError(f"unknown param kind {kind!r}")
    return arr.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Building graphs


class GraphBuilder:
    """Builds a graph one node at a time, tracking shapes as it goes.

    Params are declared (name, shape, init kind) while building and materialised by
    :meth:`build`: from ``params=`` if given (checked with :func:`check_params`), else with
    :func:`random_param`. Tensor names equal the producing node's name.
    """

    def __init__(self, name: str, input_shape: Sequence[int], input_name: str = "input", meta=None):
        self.name = name
        self.input = input_name
        self.nodes: List[Node] = []
        self.shapes: Dict[str, Shape] = {input_name: _batch_none((None,) + tuple(input_shape))}
        self.param_specs: Dict[str, Tuple[Tuple[int, ...], str]] = {}
        self.meta = dict(meta or {})

    def shape(self, tensor: str) -> Shape:
        return self.shapes[tensor]

    def channels(self, tensor: str) -> int:
        return self.shapes[tensor][-1]

    def param(self, name: str, shape: Sequence[int], kind: str) -> str:
        shape = tuple(int(s) for s in shape)
        if name in self.param_specs and self.param_specs[name][0] != shape:
            raise GraphError(f"param {name!r} declared twice with different shapes")
        self.param_specs[name] = (shape, kind)
        return name

    def add(self, op: str, inputs: Sequence[str], name: str, params=None, **attrs) -> str:
        """Append a node; returns its output tensor name (= the node name)."""
        if name in self.shapes:
            raise GraphError(f"name {name!r} is already used")
        node = Node(name, op, list(inputs), name, attrs, dict(params or {}))
        missing = [t for t in node.inputs if t not in self.shapes]
        if missing:
            raise GraphError(f"node {name!r} reads unknown tensors {missing}")
        self.shapes[name] = node_output_shape(
            node, [self.shapes[t] for t in node.inputs], lambda k: self.param_specs[k][0]
        )
        self.nodes.append(node)
        return name

    # -- one helper per parameterised op (names follow torch's module conventions) ------------
    def conv2d(
        self,
        x,
        name,
        out_channels,
        kernel,
        stride=1,
        padding=0,
        groups=1,
        bias=False,
        activation=None,
        residual=None,
        **act_attrs,
    ) -> str:
        """Conv with params ``{name}.weight`` (and ``{name}.bias``); int padding p = (p, p, p, p)."""
        kh, kw = pair(kernel, "kernel")
        cin = self.channels(x)
        params = {
            "weight": self.param(f"{name}.weight", (out_channels, cin // groups, kh, kw), "weight")
        }
        if bias:
            params["bias"] = self.param(f"{name}.bias", (out_channels,), "bias")
        inputs = [x] if residual is None else [x, residual]
        return self.add(
            "conv2d",
            inputs,
            name,
            params,
            stride=stride,
            padding=padding,
            groups=groups,
            activation=activation,
            **act_attrs,
        )

    def batchnorm(
        self, x, name, eps, suffixes=("weight", "bias", "running_mean", "running_var")
    ) -> str:
        """BatchNorm with torch's key names ``{name}.weight/.bias/.running_mean/.running_var``."""
        c = self.channels(x)
        params = {
            role: self.param(f"{name}.{suffix}", (c,), role)
            for role, suffix in zip(("gamma", "beta", "mean", "var"), suffixes)
        }
        return self.add("batchnorm", [x], name, params, eps=eps)

    def linear(self, x, name, out_features, bias=True, activation=None, init="linear") -> str:
        params = {"weight": self.param(f"{name}.weight", (out_features, self.channels(x)), init)}
        if bias:
            params["bias"] = self.param(f"{name}.bias", (out_features,), "bias")
        return self.add("linear", [x], name, params, activation=activation)

    def squeeze_excite(
        self,
        x,
        name,
        squeeze_channels,
        inner="relu",
        gate="hardsigmoid",
        fc1="fc1",
        fc2="fc2",
        conv_layout=True,
        **act_attrs,
    ) -> str:
        """SE whose two FCs are ``{name}.{fc1}`` and ``{name}.{fc2}`` (weight + bias); with
        ``conv_layout`` the weights are 1x1 convs (S, C, 1, 1) as in torchvision."""
        c = self.channels(x)
        tail = (1, 1) if conv_layout else ()
        params = {
            "w1": self.param(f"{name}.{fc1}.weight", (squeeze_channels, c) + tail, "weight"),
            "b1": self.param(f"{name}.{fc1}.bias", (squeeze_channels,), "bias"),
            "w2": self.param(f"{name}.{fc2}.weight", (c, squeeze_channels) + tail, "weight"),
            "b2": self.param(f"{name}.{fc2}.bias", (c,), "bias"),
        }
        return self.add("squeeze_excite", [x], name, params, inner=inner, gate=gate, **act_attrs)

    def build(
        self, outputs: Sequence[str], params: Optional[Mapping[str, object]] = None, seed: int = 0
    ) -> Graph:
        expected = {k: shape for k, (shape, _) in self.param_specs.items()}
        if params is None:
            arrays = {
                k: random_param(k, shape, kind, seed)
                for k, (shape, kind) in self.param_specs.items()
            }
        else:
            arrays = check_params(expected, params, what=f"params for {self.name}")
        inputs = {self.input: self.shapes[self.input]}
        return Graph(self.nodes, inputs, list(outputs), arrays, self.name, self.meta)


# ---------------------------------------------------------------------------------------------
# Reference executor


def _run_node(
    ref, node: Node, xs: List[np.ndarray], params: Mapping[str, np.ndarray]
) -> np.ndarray:
    a = node.attrs
    p = {role: params[key] for role, key in node.params.items()}
    op = node.op
    if op == "conv2d":
        return ref.conv2d(
            xs[0],
            p["weight"],
            p.get("bias"),
            a["stride"],
            a["padding"],
            a["groups"],
            a["activation"],
            a["alpha"],
            a["beta"],
            residual=xs[1] if len(xs) > 1 else None,
        )
    if op == "batchnorm":
        x = xs[0].astype(np.float64)
        scale = p["gamma"].astype(np.float64) / np.sqrt(p["var"].astype(np.float64) + a["eps"])
        return ((x - p["mean"]) * scale + p["beta"]).astype(np.float32)
    if op == "activation":
        return ref.activation(xs[0], a["activation"], a["alpha"], a["beta"])
    if op == "add":
        return ref.add(xs[0], xs[1], a["activation"], a["alpha"], a["beta"])
    if op == "mul":
        return ref.mul(xs[0], xs[1])
    if op == "squeeze_excite":
        return ref.squeeze_excite(
            xs[0],
            p["w1"],
            p.get("b1"),
            p["w2"],
            p.get("b2"),
            a["inner"],
            a["gate"],
            a["alpha"],
            a["beta"],
        )
    if op == "global_avg_pool":
        return ref.global_avg_pool(xs[0])
    if op == "avg_pool2d":
        return ref.avg_pool2d(xs[0], a["kernel"], a["stride"], a["padding"], a["count_include_pad"])
    if op == "max_pool2d":
        return ref.max_pool2d(xs[0], a["kernel"], a["stride"], a["padding"])
    if op == "linear":
        return ref.linear(xs[0], p["weight"], p.get("bias"), a["activation"], a["alpha"], a["beta"])
    if op == "flatten":
        return xs[0].reshape(xs[0].shape[0], -1)
    if op == "reshape":
        return xs[0].reshape((xs[0].shape[0],) + a["shape"])
    if op == "concat":
        return np.concatenate(xs, axis=-1)
    if op == "slice_channels":
        return np.ascontiguousarray(xs[0][..., a["start"] : a["stop"]])
    if op == "pad":
        t, b, l, r = a["pads"]
        return np.pad(xs[0], ((0, 0), (t, b), (l, r), (0, 0)), constant_values=a["value"])
    if op == "softmax":
        x = xs[0].astype(np.float64)
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    if op == "dropout":
        return xs[0]
    raise GraphError(f"node {node.name!r}: no reference implementation for {op!r}")


def run_reference(graph: Graph, x, return_all: bool = False):
    """Run the graph with the NumPy reference ops.

    ``x`` is an NHWC float array for a single-input graph, or a dict input name -> array.
    Returns the output array (a list for several outputs), or with ``return_all`` the dict of
    every tensor (handy to find where two graphs diverge).
    """
    from tinymnet import reference as ref  # lazy: importing the IR must stay cheap

    feeds = x if isinstance(x, Mapping) else {graph.input_name: x}
    if set(feeds) != set(graph.inputs):
        raise ValueError(f"graph inputs are {list(graph.inputs)}, got {list(feeds)}")
    env: Dict[str, np.ndarray] = {}
    for name, arr in feeds.items():
        arr = np.asarray(arr, dtype=np.float32)
        want = graph.inputs[name]
        if arr.ndim != len(want) or tuple(arr.shape[1:]) != tuple(want[1:]):
            raise ValueError(
                f"input {name!r} must have shape (N, {', '.join(map(str, want[1:]))}), got {arr.shape}"
            )
        env[name] = arr

    # Drop each tensor after its last reader so a full network does not keep every activation.
    last_use = {}
    for i, node in enumerate(graph.nodes):
        for t in node.inputs:
            last_use[t] = i
    keep = set(graph.outputs)
    for i, node in enumerate(graph.nodes):
        env[node.output] = _run_node(ref, node, [env[t] for t in node.inputs], graph.params)
        if not return_all:
            for t in set(node.inputs):
                if last_use[t] == i and t not in keep:
                    del env[t]
    if return_all:
        return env
    outs = [env[t] for t in graph.outputs]
    return outs[0] if len(outs) == 1 else outs


# ---------------------------------------------------------------------------------------------
# Serialisation to a JSON-able dict (params by name; arrays are stored elsewhere)


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def graph_to_dict(graph: Graph) -> dict:
    """Every node with every (normalised) attribute; params listed by name, shape and dtype."""
    used = []
    for n in graph.nodes:
        for key in n.params.values():
            if key not in used:
                used.append(key)
    return {
        "format": GRAPH_FORMAT,
        "version": GRAPH_VERSION,
        "name": graph.name,
        "meta": copy.deepcopy(graph.meta),
        "inputs": [{"name": k, "shape": list(v)} for k, v in graph.inputs.items()],
        "outputs": list(graph.outputs),
        "nodes": [
            {
                "name": n.name,
                "op": n.op,
                "inputs": list(n.inputs),
                "output": n.output,
                "attrs": {k: _jsonable(v) for k, v in n.attrs.items()},
                "params": dict(n.params),
            }
            for n in graph.nodes
        ],
        "params": [
            {"name": k, "shape": list(graph.params[k].shape), "dtype": str(graph.params[k].dtype)}
            for k in used
            if k in graph.params
        ],
    }


def graph_from_dict(d: Mapping, params: Mapping[str, object]) -> Graph:
    """Inverse of :func:`graph_to_dict`; ``params`` must hold exactly the params it lists."""
    if d.get("format") != GRAPH_FORMAT:
        raise GraphError(f"not a {GRAPH_FORMAT} dict (format={d.get('format')!r})")
    if int(d.get("version", -1)) > GRAPH_VERSION:
        raise GraphError(
            f"graph version {d.get('version')} is newer than supported {GRAPH_VERSION}"
        )
    expected = {p["name"]: tuple(p["shape"]) for p in d["params"]}
    arrays = check_params(expected, params, what="params for the serialised graph")
    nodes = [
        Node(n["name"], n["op"], n["inputs"], n["output"], n.get("attrs", {}), n.get("params", {}))
        for n in d["nodes"]
    ]
    inputs = {i["name"]: tuple(i["shape"]) for i in d["inputs"]}
    return Graph(nodes, inputs, d["outputs"], arrays, d.get("name", "graph"), d.get("meta", {}))
