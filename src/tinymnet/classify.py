"""Image classification with a tinymnet model: the :class:`Classifier` API and the batch
pipeline behind ``tinymnet classify``.

A result is one dict per image::

    {"path": "cat.jpg", "predictions": [{"class": 285, "label": "Egyptian cat",
                                          "score": 0.83}, ...]}
    {"path": "broken.jpg", "error": "broken.jpg: cannot decode: image file is truncated"}

``class`` is the model's class index; for ImageNet models it is the standard ImageNet-1k index
0..999 (TF models have an extra "background" output 0, which is dropped: TF index i is class
i - 1). ``score`` is the softmax of the logits over the real classes (background excluded).
``path`` is None for images given as PIL images or arrays.
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .errors import TinymnetError
from .preprocess import IMAGE_EXTENSIONS, MODES, ImageError, prepare

__all__ = ["Classifier", "collect_images", "classify_paths"]


def _label_offset(meta, n_out: int) -> int:
    off = meta.get("label_offset")
    if off is None:
        off = 1 if n_out == 1001 else 0
    off = int(off)
    if not 0 <= off < n_out:
        raise TinymnetError(f"label_offset {off} does not fit a model with {n_out} outputs")
    return off


class Classifier:
    """Classify images with a model: ``Classifier()`` uses the default bundled model;
    ``model`` may be a bundled model name, a ``.tmn`` path or a loaded :class:`tinymnet.Model`.

    ``preprocess="crop"`` (resize + centre crop as the weights were evaluated) or
    ``"resize"`` (whole image stretched to the input size). ``threads``: threads per
    inference when the model is loaded here (None = the physical cores).
    """

    def __init__(self, model=None, preprocess: str = "crop", threads=None):
        from .model import Model, load

        if preprocess not in MODES:
            raise TinymnetError(f"preprocess must be one of {MODES}, got {preprocess!r}")
        self.model = model if isinstance(model, Model) else load(model, threads=threads)
        self.preprocess = preprocess
        # from the compiled plan and the file header: the Python graph is not needed here
        out_shape = self.model.output_shape
        if len(out_shape) != 1:
            raise TinymnetError(f"{self.name}: the output has shape {(None,) + out_shape}; only "
                                "classifiers (one score per class) can classify images")
        self.num_outputs = int(out_shape[0])
        self.label_offset = _label_offset(self.model.meta, self.num_outputs)
        self.num_classes = self.num_outputs - self.label_offset
        labels = self.model.labels
        if labels is not None and len(labels) == self.num_outputs and self.label_offset:
            labels = labels[self.label_offset:]
        self.labels = list(labels) if labels is not None and len(labels) == self.num_classes \
            else None
        if not self.model.preprocess:
            raise TinymnetError(f"{self.name}: the model records no preprocessing recipe; "
                                "convert it again with `tinymnet convert`")
        self.recipe = dict(self.model.preprocess)
        self.input_size = tuple(self.model.input_shape[:2])

    @property
    def name(self) -> str:
        return getattr(self.model, "name", None) or str(self.model.path or self.model.graph.name)

    # -- the three stages, usable separately ------------------------------------------------
    def prepare(self, image, preprocess: Optional[str] = None) -> np.ndarray:
        """One image (path, PIL image or uint8 array) -> float32 (H, W, 3) model input."""
        return prepare(image, self.recipe, self.input_size, preprocess or self.preprocess)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """float (N, H, W, 3) -> (N, num_classes) softmax scores over the real classes; one
        image (H, W, 3) -> (num_classes,). Inputs are checked and converted as by
        :class:`tinymnet.Model`; an image holding NaN/Inf gets NaN scores."""
        logits = np.asarray(self.model(batch), dtype=np.float64)[..., self.label_offset:]
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def top(self, scores: np.ndarray, top_k: int = 5) -> List[dict]:
        """One image's scores -> its ``predictions`` list (best first)."""
        k = min(int(top_k), scores.shape[-1])
        idx = np.argsort(-scores, kind="stable")[:k]
        return [{"class": int(i), "label": self.labels[i] if self.labels else None,
                 "score": float(scores[i])} for i in idx]

    # -- all at once ----------------------------------------------------------------------
    def classify(self, images, top_k: int = 5, batch_size: int = 16,
                 preprocess: Optional[str] = None) -> List[dict]:
        """Classify one image or a sequence of them (paths, PIL images, uint8 (H, W, 3)
        arrays or a uint8 (N, H, W, 3) batch). Returns one result dict per image, in order
        (see the module doc); a file that cannot be read gets an ``error`` entry instead of
        raising."""
        _check_positive(top_k, "top_k")
        _check_positive(batch_size, "batch_size")
        items = _as_items(images)
        results: List[dict] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            prepared = []
            for img in chunk:
                path = os.fspath(img) if isinstance(img, (str, os.PathLike)) else None
                try:
                    prepared.append((path, self.prepare(img, preprocess), None))
                except ImageError as e:
                    if path is None:  # a bad array / object is a programming error
                        raise
                    prepared.append((path, None, str(e)))
            results.extend(self._finish(prepared, top_k))
        return results

    def _finish(self, prepared, top_k) -> List[dict]:
        """[(path, x or None, error or None)] -> results, running one batch."""
        xs = [x for _, x, _ in prepared if x is not None]
        scores = iter(self.predict(np.stack(xs)) if xs else ())
        out = []
        for path, x, err in prepared:
            if x is None:
                out.append({"path": path, "error": err})
            else:
                out.append({"path": path, "predictions": self.top(next(scores), top_k)})
        return out

    def __repr__(self):
        h, w = self.input_size
        return (f"<tinymnet.Classifier {self.name}: {self.num_classes} classes, {h}x{w}, "
                f"preprocess={self.preprocess}>")


def _check_positive(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TinymnetError(f"{name} must be a positive int, got {value!r}")


def _as_items(images) -> list:
    if isinstance(images, (str, os.PathLike)):
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return list(images)
        return [images]
    try:
        from PIL import Image

        if isinstance(images, Image.Image):
            return [images]
    except ImportError:  # pragma: no cover
        pass
    try:
        return list(images)
    except TypeError:
        raise TinymnetError(f"images must be an image or a sequence of images, got "
                            f"{type(images).__name__}") from None


# ---------------------------------------------------------------------------------------------
# the batch pipeline of `tinymnet classify`


def collect_images(paths: Sequence[str]) -> Tuple[List[str], bool]:
    """Expand PATHs: files as given (whatever their extension), directories recursed (sorted)
    for image files (jpg, jpeg, png, bmp, webp, gif, any case). -> (files, any directory)."""
    out: List[str] = []
    saw_dir = False
    for p in paths:
        if os.path.isdir(p):
            saw_dir = True
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if f.lower().endswith(IMAGE_EXTENSIONS):
                        out.append(os.path.join(root, f))
        else:
            out.append(p)  # missing files are reported when they are read
    return out, saw_dir


_DONE = object()


class _Failure:
    def __init__(self, exc):
        self.exc = exc


def _decode_in_background(classifier: Classifier, paths: Sequence[str], mode: str,
                          maxsize: int, stop: threading.Event) -> "queue.Queue":
    """Start a thread that decodes + preprocesses ``paths`` in order into a bounded queue of
    (path, x or None, error or None), then _DONE (or a _Failure on an unexpected error)."""
    q: "queue.Queue" = queue.Queue(maxsize=maxsize)

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for p in paths:
                try:
                    item = (p, classifier.prepare(p, mode), None)
                except ImageError as e:
                    item = (p, None, str(e))
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(_Failure(e))

    threading.Thread(target=work, name="tinymnet-decode", daemon=True).start()
    return q


def classify_paths(classifier: Classifier, paths: Sequence[str], top_k: int = 5,
                   batch_size: int = 16, mode: Optional[str] = None) -> Iterator[dict]:
    """Yield one result per path, in order, while a background thread decodes the next
    images (bounded queue of 2 batches) and the engine runs batches of ``batch_size``."""
    _check_positive(top_k, "top_k")
    _check_positive(batch_size, "batch_size")
    mode = mode or classifier.preprocess
    stop = threading.Event()
    q = _decode_in_background(classifier, paths, mode, 2 * batch_size, stop)
    pending, n_ready = [], 0
    try:
        while True:
            item = q.get()
            if isinstance(item, _Failure):
                raise item.exc
            if item is _DONE:
                break
            pending.append(item)
            n_ready += item[1] is not None
            if n_ready >= batch_size:
                yield from classifier._finish(pending, top_k)
                pending, n_ready = [], 0
        if pending:
            yield from classifier._finish(pending, top_k)
    finally:
        stop.set()


# ---------------------------------------------------------------------------------------------
# output formats


def format_table_rows(result: dict) -> List[str]:
    if "error" in result:
        return [f"{result['path']}", f"  error: {result['error']}"]
    lines = [f"{result['path']}"]
    for rank, p in enumerate(result["predictions"], 1):
        label = p["label"] if p["label"] is not None else ""
        lines.append(f"  {rank:>2}  {p['score']:.4f}  {p['class']:>4}  {label}")
    return lines


CSV_HEADER = ["path", "rank", "class", "label", "score", "error"]


def csv_rows(result: dict) -> List[list]:
    if "error" in result:
        return [[result["path"], "", "", "", "", result["error"]]]
    return [[result["path"], rank, p["class"], p["label"] if p["label"] is not None else "",
             f"{p['score']:.6g}", ""] for rank, p in enumerate(result["predictions"], 1)]
