"""`tinymnet.load`: a model file (or graph) ready to run on the C++ kernels."""
from __future__ import annotations

import os
from typing import Optional

from .errors import FormatError
from .graph import Graph
from .runtime import compile_graph


class Model:
    """A compiled model with what is needed to use it.

    ``model(x, layout="NHWC")`` takes a float32 batch (N, H, W, 3) (or (N, 3, H, W) with
    ``layout="NCHW"``), already normalised as ``model.preprocess`` says, and returns the
    logits (N, classes) as a NumPy array.
    """

    def __init__(self, graph: Graph, labels=None, preprocess=None, provenance=None,
                 path: Optional[str] = None):
        self.graph = graph
        self.labels = labels
        self.preprocess = dict(preprocess or {})
        self.provenance = dict(provenance or {})
        self.path = path
        self._compiled = compile_graph(graph)

    @property
    def input_shape(self):
        """(H, W, C) of one input image."""
        return tuple(self._compiled.input_shape[1:])

    @property
    def isa(self) -> str:
        return self._compiled.isa

    def __call__(self, x, layout: str = "NHWC"):
        return self._compiled(x, layout)

    def __repr__(self):
        h, w, c = self.input_shape
        return f"<tinymnet.Model {self.graph.name} {h}x{w}x{c} isa={self.isa} from {self.path}>"


def load(path) -> Model:
    """Load a `.tmn` file (see :mod:`tinymnet.formats.tmn`) and compile it for this CPU."""
    from .formats.detect import detect_format
    from .formats.tmn import load_tmn

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FormatError("no such file", path)
    kind = detect_format(path)
    if kind != "tmn":
        raise FormatError(f"this is a {kind} file; convert it first: "
                          f"tinymnet convert {path} -o model.tmn", path)
    tm = load_tmn(path)
    return Model(tm.graph, tm.labels, tm.preprocess, tm.provenance, path)
