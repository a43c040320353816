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
    """A graph bound to a C++ plan. ``model(x)`` takes NHWC float (N, H, W, C) (or NCHW with
    ``layout="NCHW"``) and returns the graph's output (logits) as a NumPy array (see
    :meth:`__call__`)."""

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

    @property
    def weight_bytes(self) -> int:
        """Bytes of the packed weights the plan holds in memory, not counting those it uses in
        place from the file (mapped_weight_bytes)."""
        return self._plan.weight_bytes

    @property
    def mapped_weight_bytes(self) -> int:
        """Bytes of weights the plan uses where they lie in the mapped .tmn file: GEMM panels
        stored for this CPU (``tinymnet convert --gemm-panels``) and the 8-bit weights of
        one-pixel layers (classifiers, squeeze-excite FCs), which the kernels read as stored."""
        return self._plan.mapped_weight_bytes

    @property
    def step_names(self):
        """The node name of each step the plan runs, in order (a fused conv chain is named by
        its first conv; a concat written in place by its convs runs no step)."""
        return list(self._plan.step_names)

    @property
    def batched_steps(self):
        """The last steps (fully connected layers after the global pool, and views of their
        outputs) that a batch of images runs on all its images at once, each layer's weights
        read once per batch of up to 64 images rather than once per image. Every image gets
        the same bits as alone."""
        names = self.step_names
        return names[len(names) - self._plan.batched_steps:]

    def profile(self, x, repeats: int = 10, layout: str = "NHWC"):
        """Per-step time of running the first image of ``x`` (a batch or one image, as for
        ``model(x)``) ``repeats`` times: a list of (step name, milliseconds per run), in run
        order. Ordinary calls take no timings."""
        x, _ = self._check_input(x, layout)
        if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
            raise ValueError(f"repeats must be a positive int, got {repeats!r}")
        if x.shape[0] < 1:
            raise ValueError("x must hold at least one image")
        first = np.require(x[:1], np.float32, ["C_CONTIGUOUS", "ALIGNED"])
        seconds = self._plan.profile(first, int(repeats))
        return [(name, s * 1e3 / repeats) for name, s in zip(self.step_names, seconds)]

    def _check_input(self, x, layout):
        """-> (x as an (N, H, W, C) array, not yet converted; whether x was one image)."""
        if layout not in ("NHWC", "NCHW"):
            raise ValueError(f'layout must be "NHWC" or "NCHW", got {layout!r}')
        if not isinstance(x, np.ndarray):
            try:  # lists, tuples, anything with __array__
                x = np.asarray(x)
            except (ValueError, TypeError) as e:  # ragged nested lists
                raise ValueError(f"x must be a numpy array or convertible to one: {e}") from None
        if x.dtype.kind != "f":  # int/uint8 pixels need the model's normalisation first
            raise ValueError(f"x must be floating-point (float32 preferred; already normalised "
                             f"as model.preprocess says), got {x.dtype}")
        _, h, w, c = self.input_shape
        want = (h, w, c) if layout == "NHWC" else (c, h, w)
        single = x.ndim == 3
        if single:
            x = x[None]
        if x.ndim != 4 or x.shape[1:] != want:
            other, other_want = ("NCHW", (c, h, w)) if layout == "NHWC" else ("NHWC", (h, w, c))
            hint = ""
            if x.ndim == 4 and x.shape[1:] == other_want:
                hint = f' (this looks like {other}: pass layout="{other}")'
            raise ValueError(f"x must be an {layout} batch (N, {', '.join(map(str, want))}) or "
                             f"one image ({', '.join(map(str, want))}), got shape "
                             f"{np.shape(x)[single:]}{hint}")
        if layout == "NCHW":
            x = x.transpose(0, 2, 3, 1)
        return x, single

    # Inputs that need a copy (other dtype, strided, NCHW) are converted this many images at a
    # time, so a huge batch never needs a second whole copy of itself.
    _CONVERT_IMAGES = 16

    def __call__(self, x, layout: str = "NHWC"):
        """Logits of an NHWC float batch (N, H, W, C) -> (N, ...), or of one image (H, W, C)
        -> (...) without the batch axis. Any float dtype, any strides (views, transposes,
        Fortran order, read-only) are accepted and converted to float32; integer, bool,
        complex or object arrays raise ValueError (normalise pixels first). An empty batch
        gives an empty result. An image holding any NaN or Inf gets all-NaN outputs (the
        kernels' max/min based ReLU clamps would otherwise turn it into finite garbage that
        differs between ISAs); the other images of the batch are unaffected. The result is a
        new array each call, never a view of the model's memory."""
        x, single = self._check_input(x, layout)
        n = x.shape[0]
        out = np.empty((n,) + self.output_shape[1:], np.float32)
        ready = x.dtype == np.float32 and x.flags.c_contiguous and x.flags.aligned
        step = max(n, 1) if ready else self._CONVERT_IMAGES
        for i in range(0, n, step):
            chunk = np.require(x[i:i + step], np.float32, ["C_CONTIGUOUS", "ALIGNED"])
            self._plan.run(chunk, out[i:i + step])  # non-finite images -> NaN outputs (C++)
        return out[0] if single else out


def compile_graph(graph: Graph, threads: Optional[int] = None, fuse: bool = True,
                  fuse_blocks: bool = True) -> CompiledModel:
    """``fuse``: run the graph passes (BN folding, activation/residual fusion) first;
    ``fuse_blocks``: let the plan run conv chains (inverted-residual blocks) band by band
    instead of materialising their widest tensors, and have convs write their channel range of
    a concat's buffer instead of copying (False: every tensor its own buffer, for checking)."""
    return CompiledModel(graph, threads, fuse, fuse_blocks)
