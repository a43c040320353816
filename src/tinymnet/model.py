"""`tinymnet.load`: a model file (or graph) ready to run on the C++ kernels."""
from __future__ import annotations

import os
from typing import Optional

from . import _C
from .bundled import resolve  # imported with the loader, not at the first load
from .errors import FormatError
from .graph import Graph
from .runtime import CompiledModel, compile_graph


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
        self.meta = dict(graph.meta)  # the graph's metadata (arch, label_offset, ...)
        self._compiled = compile_graph(graph, threads)

    @classmethod
    def _from_file(cls, file, path: str, name: Optional[str], threads) -> Optional["Model"]:
        """A model compiled by the C++ reader from a mapped .tmn that stores its optimised
        graph (None otherwise); the Python graph is read from the file on first use."""
        compiled = CompiledModel.from_tmn(file, threads)
        if compiled is None:
            return None
        self = cls.__new__(cls)
        self._graph, self._crc = None, file.crc
        self.name, self.path, self._compiled = name, path, compiled
        self.labels = file.header("labels")
        self.preprocess = dict(file.header("preprocess") or {})
        self.provenance = dict(file.header("provenance") or {})
        self.meta = dict(file.header("graph", "meta") or {})  # not the whole graph
        return self

    @property
    def graph(self) -> Graph:
        """The model's graph as stored in its file (for the bundled models, the optimised
        graph the plan runs), read on first use when the C++ reader built the plan."""
        if self._graph is None:
            from .formats.tmn import load_tmn

            tm = load_tmn(self.path)
            if tm.crc != self._crc:
                raise FormatError("the file changed since the model was loaded", self.path)
            self._graph = tm.graph
        return self._graph

    @graph.setter
    def graph(self, graph: Graph):
        self._graph = graph

    @property
    def input_shape(self):
        """(H, W, C) of one input image."""
        return tuple(self._compiled.input_shape[1:])

    @property
    def output_shape(self):
        """Shape of one image's output, e.g. (1001,) for TF-slim classifiers."""
        return tuple(self._compiled.output_shape[1:])

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

    @property
    def weight_bytes(self) -> int:
        """Bytes of the packed weights the compiled plan holds in memory."""
        return self._compiled.weight_bytes

    @property
    def mapped_weight_bytes(self) -> int:
        """Bytes of weights used in place from the mapped model file (not copied): GEMM panels
        stored for this CPU and 8-bit weights of one-pixel layers."""
        return self._compiled.mapped_weight_bytes

    @property
    def batched_steps(self):
        """Names of the last steps (the classifier's layers) that a batch runs on all its
        images at once, reading their weights once per batch rather than once per image."""
        return self._compiled.batched_steps

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

    A .tmn whose GEMM weights are stored packed for this CPU (``tinymnet convert`` writes
    them so) or that has 8-bit one-pixel layers (the bundled models) stays mapped while the
    model lives, those weights used in place: replace such a file by renaming a new one over
    it, not by rewriting it in place.
    """
    path = resolve(model)
    name = None if model is None or os.path.exists(os.fspath(model)) else os.fspath(model)
    if model is None:
        from .bundled import default_model

        name = default_model()
    # Fast path: a .tmn that stores its optimised graph is mapped, checked (sizes, CRC-32) and
    # packed by C++ alone. Anything else, or any problem with the file, takes the full reader,
    # which says what is wrong.
    try:
        file = _C.TmnFile(path)
    except ValueError:
        file = None
    if file is not None:
        try:
            m = Model._from_file(file, path, name, threads)
        except ValueError:  # a graph the plan refuses: the full reader names the problem
            m = None
        if m is not None:
            return m
    from .formats.detect import detect_format
    from .formats.tmn import load_tmn

    kind = detect_format(path)
    if kind != "tmn":
        raise FormatError(f"this is a {kind} file; convert it first: "
                          f"tinymnet convert {path} -o model.tmn", path)
    tm = load_tmn(path)
    return Model(tm.graph, tm.labels, tm.preprocess, tm.provenance, path, name, threads)
