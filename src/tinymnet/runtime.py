"""Runs a Graph on the C++ kernels.

``compile_graph`` optimises the graph (BN folded, activations and residual adds fused into
their producing convs), creates one kernel op per node (weights packed once) and returns a
``CompiledModel``; calling it runs the nodes in order. The NumPy executor
(:func:`tinymnet.graph.run_reference`) runs the same graph for checking and debugging.
"""
from __future__ import annotations

from typing import Callable, Dict, List

import numpy as np

from . import kernels
from .graph import Graph, infer_shapes
from .passes import optimize

Step = Callable[[List[np.ndarray]], np.ndarray]


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _batchnorm_step(node, params):
    # Only a BatchNorm that could not be folded into a conv gets here (e.g. after an add).
    a = node.attrs
    inv = params[node.params["gamma"]] / np.sqrt(params[node.params["var"]] + a["eps"])
    shift = params[node.params["beta"]] - params[node.params["mean"]] * inv
    inv, shift = inv.astype(np.float32), shift.astype(np.float32)
    return lambda xs: (xs[0] * inv + shift).astype(np.float32)


def _act_kwargs(a):
    return dict(activation=a.get("activation"), alpha=a.get("alpha"), beta=a.get("beta"))


def _make_step(graph: Graph, node) -> Step:
    """One executable step for `node`: a kernel op with packed weights, or a NumPy one-liner
    for data-movement ops."""
    a, p = node.attrs, {role: graph.params[key] for role, key in node.params.items()}
    op = node.op
    if op == "conv2d":
        conv = kernels.Conv2d(p["weight"], p.get("bias"), a["stride"], a["padding"], a["groups"],
                              **_act_kwargs(a))
        return lambda xs: conv(xs[0], residual=xs[1] if len(xs) > 1 else None)
    if op == "linear":
        fc = kernels.Linear(p["weight"], p.get("bias"), **_act_kwargs(a))
        return lambda xs: fc(xs[0])
    if op == "squeeze_excite":
        se = kernels.SqueezeExcite(p["w1"], p["b1"], p["w2"], p["b2"], a["inner"], a["gate"],
                                   a.get("alpha"), a.get("beta"))
        return lambda xs: se(xs[0])
    if op == "activation":
        return lambda xs: kernels.activation(xs[0], a["activation"], a.get("alpha"), a.get("beta"))
    if op == "add":
        return lambda xs: kernels.add(xs[0], xs[1], **_act_kwargs(a))
    if op == "mul":
        return lambda xs: kernels.mul(xs[0], xs[1])
    if op == "global_avg_pool":
        return lambda xs: kernels.global_avg_pool(xs[0])
    if op in ("avg_pool2d", "max_pool2d"):
        pool = (kernels.AvgPool2d(a["kernel"], a["stride"], a["padding"], a["count_include_pad"])
                if op == "avg_pool2d" else kernels.MaxPool2d(a["kernel"], a["stride"], a["padding"]))
        return lambda xs: pool(xs[0])
    if op == "batchnorm":
        return _batchnorm_step(node, graph.params)
    if op == "flatten":
        return lambda xs: xs[0].reshape(xs[0].shape[0], -1)
    if op == "reshape":
        shape = tuple(a["shape"])
        return lambda xs: np.ascontiguousarray(xs[0].reshape((xs[0].shape[0],) + shape))
    if op == "concat":
        return lambda xs: np.concatenate(xs, axis=-1)
    if op == "slice_channels":
        return lambda xs: np.ascontiguousarray(xs[0][..., a["start"]:a["stop"]])
    if op == "pad":
        t, b, l, r = a["pads"]
        return lambda xs: np.pad(xs[0], ((0, 0), (t, b), (l, r), (0, 0)),
                                 constant_values=a.get("value", 0.0)).astype(np.float32)
    if op == "softmax":
        return lambda xs: _softmax(xs[0])
    if op == "dropout":
        return lambda xs: xs[0]
    raise ValueError(f"node {node.name!r}: op {op!r} has no kernel")


class CompiledModel:
    """A graph bound to kernel ops. ``model(x)`` takes NHWC float32 (N, H, W, C) (or NCHW with
    ``layout="NCHW"``) and returns the graph's output (logits) as a NumPy array."""

    def __init__(self, graph: Graph, fuse: bool = True):
        self.graph = optimize(graph) if fuse else graph
        self.input_name = self.graph.input_name
        self.input_shape = tuple(self.graph.inputs[self.input_name])  # (None, H, W, C)
        self.isa = kernels.isa()
        infer_shapes(self.graph)  # validates the whole graph before packing anything
        self._steps = [(n, _make_step(self.graph, n)) for n in self.graph.nodes]
        self._last_use = {}
        for i, n in enumerate(self.graph.nodes):
            for t in n.inputs:
                self._last_use[t] = i

    def _check_input(self, x, layout):
        if layout not in ("NHWC", "NCHW"):
            raise ValueError(f'layout must be "NHWC" or "NCHW", got {layout!r}')
        if not isinstance(x, np.ndarray):
            raise ValueError(f"x must be a numpy array, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"x must be a 4-D {layout} batch, got shape {x.shape}")
        if layout == "NCHW":
            x = x.transpose(0, 2, 3, 1)
        _, h, w, c = self.input_shape
        if x.shape[1:] != (h, w, c):
            want = (h, w, c) if layout == "NHWC" else (c, h, w)
            raise ValueError(f"x must have shape (N, {', '.join(map(str, want))}) in {layout}, "
                             f"got {x.shape if layout == 'NHWC' else x.transpose(0, 3, 1, 2).shape}")
        if x.shape[0] < 1:
            raise ValueError("x must hold at least one image")
        if x.dtype != np.float32:
            if not np.issubdtype(x.dtype, np.floating):
                raise ValueError(f"x must be float32 (already normalised), got {x.dtype}")
            x = x.astype(np.float32)
        return np.ascontiguousarray(x)

    def __call__(self, x, layout: str = "NHWC"):
        values: Dict[str, np.ndarray] = {self.input_name: self._check_input(x, layout)}
        for i, (node, step) in enumerate(self._steps):
            values[node.output] = step([values[t] for t in node.inputs])
            for t in node.inputs:  # free activations as soon as their last reader ran
                if self._last_use.get(t) == i and t not in self.graph.outputs:
                    values.pop(t, None)
        outs = [values[o] for o in self.graph.outputs]
        return outs[0] if len(outs) == 1 else outs


def compile_graph(graph: Graph, fuse: bool = True) -> CompiledModel:
    return CompiledModel(graph, fuse)
