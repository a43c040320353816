"""Compiles a Graph into a C++ plan and runs it.

``compile_graph`` optimises the graph (BN folded, activations and residual adds fused into
their producing convs) and hands its JSON op list and weights to ``_C.Plan``, which packs the
weights, plans one activation arena and runs every step in C++ with the GIL released
(``model(x)`` is one C++ call). Conv chains such as expand -> depthwise -> project run band by
band of output rows, so the expanded tensors never exist whole (MobileNetV2-224: 1.3 MiB of
activations instead of 5.7). The NumPy executor (:func:`tinymnet.graph.run_reference`)
runs the same graph for checking and debugging.
"""
from __future__ import annotations

import json
from typing import Optional

import numpy as np

from . import _C
from .graph import Graph, graph_to_dict, infer_shapes
from .passes import optimize


def default_threads() -> int:
    """Physical cores of this machine: the default thread count of a model."""
    return _C.default_threads()


def _check_threads(threads):
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    return int(threads)


class CompiledModel:
    """A graph bound to a C++ plan. ``model(x)`` takes NHWC float32 (N, H, W, C) (or NCHW with
    ``layout="NCHW"``) and returns the graph's output (logits) as a NumPy array."""

    def __init__(self, graph: Graph, threads: Optional[int] = None, fuse: bool = True,
                 fuse_blocks: bool = True):
        self.graph = optimize(graph) if fuse else graph
        shapes = infer_shapes(self.graph)  # validates the whole graph before packing anything
        self.input_name = self.graph.input_name
        self.input_shape = tuple(self.graph.inputs[self.input_name])  # (None, H, W, C)
        self.output_shape = tuple(shapes[self.graph.outputs[0]])      # (None, ...)
        params = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.graph.params.items()}
        self._plan = _C.Plan(json.dumps(graph_to_dict(self.graph)), params,
                             _check_threads(threads), bool(fuse_blocks))
        self.isa = _C.isa()

    @property
    def threads(self) -> int:
        return self._plan.threads

    @property
    def arena_bytes(self) -> int:
        """Bytes of the activation arena (one image at a time)."""
        return self._plan.arena_bytes

    @property
    def step_names(self):
        """The node name of each step the plan runs, in order (a fused conv chain is named by
        its first conv; a concat written in place by its convs runs no step)."""
        return list(self._plan.step_names)

    def profile(self, x, repeats: int = 10, layout: str = "NHWC"):
        """Per-step time of running the first image of ``x`` ``repeats`` times: a list of
        (step name, milliseconds per run), in run order. Ordinary calls take no timings."""
        x = self._check_input(x, layout)
        if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
            raise ValueError(f"repeats must be a positive int, got {repeats!r}")
        seconds = self._plan.profile(x[:1], int(repeats))
        return [(name, s * 1e3 / repeats) for name, s in zip(self.step_names, seconds)]

    def _check_input(self, x, layout):
        if layout not in ("NHWC", "NCHW"):
            raise ValueError(f'layout must be "NHWC" or "NCHW", got {layout!r}')
        if not isinstance(x, np.ndarray):
            raise ValueError(f"x must be a numpy array, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"x must be a 4-D {layout} batch, got shape {x.shape}")
        _, h, w, c = self.input_shape
        want = (h, w, c) if layout == "NHWC" else (c, h, w)
        if x.shape[1:] != want:
            raise ValueError(f"x must have shape (N, {', '.join(map(str, want))}) in {layout}, "
                             f"got {x.shape}")
        if x.shape[0] < 1:
            raise ValueError("x must hold at least one image")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"x must be float32 (already normalised), got {x.dtype}")
        if layout == "NCHW":
            x = x.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(x, dtype=np.float32)

    def __call__(self, x, layout: str = "NHWC"):
        x = self._check_input(x, layout)
        out = np.empty((x.shape[0],) + self.output_shape[1:], np.float32)
        self._plan.run(x, out)
        return out


def compile_graph(graph: Graph, threads: Optional[int] = None, fuse: bool = True,
                  fuse_blocks: bool = True) -> CompiledModel:
    """``fuse``: run the graph passes (BN folding, activation/residual fusion) first;
    ``fuse_blocks``: let the plan run conv chains (inverted-residual blocks) band by band
    instead of materialising their widest tensors, and have convs write their channel range of
    a concat's buffer instead of copying (False: every tensor its own buffer, for checking)."""
    return CompiledModel(graph, threads, fuse, fuse_blocks)
