"""`tinymnet.load`: a model file (or graph) ready to run on the C++ kernels."""
from __future__ import annotations

import os
from typing import Optional

from .errors import FormatError
from .graph import Graph
from .runtime import compile_graph


class Model:
    """A compiled model with what is needed to use it.

    ``model(x, layout="NHWC")`` takes a float batch (N, H, W, 3) (or (N, 3, H, W) with
    ``layout="NCHW"``), already normalised as ``model.preprocess`` says, and returns the
    logits (N, classes) as a new float32 NumPy array; one image (H, W, 3) gives (classes,).
    float64/float16 inputs, views, transposed or read-only arrays and nested lists are
    converted; integer, bool, complex and object arrays, other ranks and shapes raise
    ValueError naming ``x``. An image holding NaN or Inf gets NaN logits. It is one C++ call
    (GIL released) on ``threads`` threads (None = the physical cores of this machine).

    Thread safety: calls from several Python threads are safe and give the same results as
    serial calls; one model runs one call at a time (its arena is shared), different models
    run in parallel. A model inherited through ``fork()`` works in the child on one thread.
    """

    def __init__(self, graph: Graph, labels=None, preprocess=None, provenance=None,
                 path: Optional[str] = None, name: Optional[str] = None,
                 threads: Optional[int] = None):
        self.graph = graph
        self.name = name  # the bundled / fetched model name it was loaded by, if any
        self.labels = labels
        self.preprocess = dict(preprocess or {})
        self.provenance = dict(provenance or {})
        self.path = path
        self._compiled = compile_graph(graph, threads)

    @property
    def input_shape(self):
        """(H, W, C) of one input image."""
        return tuple(self._compiled.input_shape[1:])

    @property
    def isa(self) -> str:
        return self._compiled.isa

    @property
    def threads(self) -> int:
        return self._compiled.threads

    @property
    def arena_bytes(self) -> int:
        """Bytes of the activation arena the compiled plan runs in."""
        return self._compiled.arena_bytes

    def __call__(self, x, layout: str = "NHWC"):
        return self._compiled(x, layout)

    def __repr__(self):
        h, w, c = self.input_shape
        src = self.name or self.path
        return f"<tinymnet.Model {self.graph.name} {h}x{w}x{c} isa={self.isa} from {src}>"


def load(model=None, threads: Optional[int] = None) -> Model:
    """Load a model and compile it for this CPU.

    ``model`` is a `.tmn` file (see :mod:`tinymnet.formats.tmn`), the name of a bundled
    pretrained model (``tinymnet models`` lists them; None = the default one) or of a model
    downloaded with ``tinymnet fetch``. ``threads``: how many threads one inference uses
    (None = the physical cores).
    """
    from .bundled import resolve
    from .formats.detect import detect_format
    from .formats.tmn import load_tmn

    path = resolve(model)
    name = None if model is None or os.path.exists(os.fspath(model)) else os.fspath(model)
    if model is None:
        from .bundled import default_model

        name = default_model()
    kind = detect_format(path)
    if kind != "tmn":
        raise FormatError(f"this is a {kind} file; convert it first: "
                          f"tinymnet convert {path} -o model.tmn", path)
    tm = load_tmn(path)
    return Model(tm.graph, tm.labels, tm.preprocess, tm.provenance, path, name, threads)
