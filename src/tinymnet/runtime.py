"""Compiles a Graph into a C++ plan and runs it.

``compile_graph`` optimises the graph (BN folded, activations and residual adds fused into
their producing convs) and hands its JSON op list and weights to ``_C.Plan``, which packs the
weights, plans one activation arena and runs every step in C++ with the GIL released
(``model(x)`` is one C++ call). Conv chains such as expand -> depthwise -> project run band by
band of output rows, so the expanded tensors never exist whole (MobileNetV2-224: 1.3 MiB of
activations instead of 5.7). The NumPy executor (:func:`tinymnet.graph.run_reference`)
runs the same graph for checking and debugging.

``CompiledModel.from_tmn`` builds the plan straight from a mapped ``.tmn`` file whose graph
was stored already optimised: no passes, no Python copy of the weights (8-bit weights are
dequantized by the C++ packing): loading is the checksum and the weight packing.
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

    @classmethod
    def from_tmn(cls, file, threads: Optional[int] = None,
                 fuse_blocks: bool = True) -> Optional["CompiledModel"]:
        """The plan of a ``_C.TmnFile`` whose header says its graph is stored optimised, or
        None if it does not (or if its ``optimized`` entry disagrees with the plan).
        ``graph`` and ``input_name`` are then None: the graph stays in the file."""
        opt = file.header("optimized")
        if not isinstance(opt, dict) or not isinstance(opt.get("output_shape"), list):
            return None
        self = cls.__new__(cls)
        self._plan = file.plan(_check_threads(threads), bool(fuse_blocks))
        self.graph = self.input_name = None
        self.input_shape = (None, *self._plan.input_dims)
        self.output_shape = (None, *opt["output_shape"][1:])
        if (not all(isinstance(d, int) and d > 0 for d in self.output_shape[1:])
                or int(np.prod(self.output_shape[1:])) != int(np.prod(self._plan.output_dims))):
            return None
        self.isa = _C.isa()
        return self

    @property
    def threads(self) -> int:
        return self._plan.threads

    @property
    def arena_bytes(self) -> int:
        """Bytes of the activation arena (one image at a time)."""
        return self._plan.arena_bytes

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
    instead of materialising their widest tensors."""
    return CompiledModel(graph, threads, fuse, fuse_blocks)
