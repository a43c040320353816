"""Importers: a whole model file (its op graph, not just its weights) -> a tinymnet Graph.

* :func:`import_tflite` reads one ``.tflite`` file or several chained in order (float, uint8
  and int8 per-tensor/per-channel models);
* :func:`import_onnx` reads an ``.onnx`` file (NCHW semantics mapped onto our NHWC graph).

Both return an :class:`Imported`:

``graph``
    A :class:`tinymnet.graph.Graph` in NHWC whose output is the **logits** (a trailing
    softmax is dropped; see ``graph.meta["dropped_tail"]``). Params are float32; 8-bit
    weights are their exact dequantized values.
``quantized``
    ``{param name: QuantizedTensor}`` for every weight that was stored as 8 bits in the
    source, in *our* layout (conv (Cout, Cin/g, KH, KW), linear (out, in); the quantized axis
    moved along with the transpose). Pass it to ``save_tmn(..., quantized=)`` to keep the
    8 bits: ``quantized[k].dequantize()`` equals ``graph.params[k]`` bit for bit.
``preprocess``
    The input recipe (below).
``num_classes`` / ``label_offset``
    Classes of the output and the index of the first real class: 1001 / 1 for TF-slim
    exports (index 0 is "background", index i is ImageNet-1k class i - 1), 1000 / 0 for
    plain ImageNet heads. ``None`` when the output is not a class vector (segmentation).
``labels``
    Class names when the source defines them (PP-OCR: ``["0", "180"]``), else None.
``provenance``
    Where it came from: source format, file names, sizes and SHA-256, producer, weight
    dtypes, what was dropped or fused.

The preprocess recipe
---------------------
A JSON-able dict that says how to turn an RGB image into the float input the graph expects.
Given a ``uint8`` RGB image ``img`` of shape (h, w, 3):

1. ``crop``: keep a centred square-ish region of ``crop`` times each side (TF-slim's
   ``central_fraction``; ``1.0`` = keep the whole image);
2. ``resize``: resize what is left to ``input_size`` = ``[H, W]`` (``"bilinear"``: stretch
   to exactly H x W);
3. ``x = (pixel - mean) / std`` per channel, where ``pixel`` is the value on the 0..``range``
   scale (``range`` is 255: uint8 pixels as they are) and ``mean`` / ``std`` are 3-lists in
   the same units;
4. feed x as float32 in ``layout`` (always ``"NHWC"`` for our graphs; ``source_layout`` says
   what the original model used).

Keys::

    {"input_size": [H, W], "channels": 3, "color": "RGB", "layout": "NHWC",
     "source_layout": "NHWC" | "NCHW", "range": 255, "crop": 0.875 | 1.0,
     "resize": "bilinear", "mean": [m, m, m], "std": [s, s, s],
     "input_dtype": "uint8" | "int8" | "float32",          # what the source model consumed
     "input_quantization": {"scale": s, "zero_point": z},  # quantized inputs only
     "source": "how mean/std were obtained"}

For a quantized input the graph's float input is the dequantized input tensor, so the recipe
is exact: a uint8 input with scale ``s`` and zero point ``z`` gives ``mean = z`` and
``std = 1 / s`` (``(pixel - z) * s``), e.g. ``(p - 128) / 128`` for the TF-slim QAT models. A
uint8 input that a QUANTIZE op converts to int8 keeps the real value, so the same rule holds
with the uint8 input's qparams. An int8 input is taken as ``pixel - 128`` (the usual
convention), giving ``mean = z + 128``. Float TFLite models carry no normalisation; the
TF/Keras MobileNet convention ``(p - 127.5) / 127.5`` is recorded (``source`` says so).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

__all__ = ["Imported", "import_tflite", "import_onnx", "make_recipe", "apply_recipe"]


@dataclass
class Imported:
    graph: "object"
    quantized: Dict[str, "object"] = field(default_factory=dict)
    preprocess: dict = field(default_factory=dict)
    num_classes: Optional[int] = None
    label_offset: int = 0
    provenance: dict = field(default_factory=dict)
    labels: Optional[list] = None


def make_recipe(input_size, mean, std, *, input_dtype="float32", source_layout="NHWC",
                crop=1.0, source="", quantization=None) -> dict:
    """A preprocess recipe (see the module docstring); mean/std scalars or 3-lists."""
    def three(v):
        v = [float(v)] * 3 if isinstance(v, (int, float)) else [float(x) for x in v]
        if len(v) != 3:
            raise ValueError(f"mean/std need 3 values, got {v}")
        return v

    recipe = {
        "input_size": [int(input_size[0]), int(input_size[1])],
        "channels": 3,
        "color": "RGB",
        "layout": "NHWC",
        "source_layout": source_layout,
        "range": 255,
        "crop": float(crop),
        "resize": "bilinear",
        "mean": three(mean),
        "std": three(std),
        "input_dtype": input_dtype,
        "source": source,
    }
    if quantization is not None:
        recipe["input_quantization"] = {"scale": float(quantization[0]),
                                        "zero_point": int(quantization[1])}
    return recipe


def apply_recipe(recipe: dict, image) -> "object":
    """A uint8 (h, w, 3) RGB array already cropped and resized to ``input_size`` -> the
    float32 (1, H, W, 3) NHWC batch the graph takes (step 3 of the recipe)."""
    import numpy as np

    x = np.asarray(image, dtype=np.float32)
    mean = np.asarray(recipe["mean"], np.float32)
    std = np.asarray(recipe["std"], np.float32)
    return ((x - mean) / std)[None].astype(np.float32)


def import_tflite(paths, **kwargs) -> Imported:
    from .tflite import import_tflite as _imp

    return _imp(paths, **kwargs)


def import_onnx(path, **kwargs) -> Imported:
    from .onnx import import_onnx as _imp

    return _imp(path, **kwargs)
