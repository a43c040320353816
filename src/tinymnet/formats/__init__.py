"""Readers for model and weight files: PyTorch checkpoints, safetensors, Keras HDF5,
TFLite flatbuffers and ONNX. None of them executes code from the file; every failure is a
:class:`tinymnet.errors.FormatError` that names the file.

The optional readers import their dependency (h5py, tflite + flatbuffers, onnx) only when
called, so ``import tinymnet.formats`` needs numpy only.
"""
from __future__ import annotations

from ..errors import FormatError
from .detect import FORMATS, detect_format
from .keras_h5 import load_keras_h5, read_keras_model_config
from .onnx_reader import OnnxModel, load_onnx
from .pth import load_checkpoint, load_state_dict
from .safetensors import load_safetensors, save_safetensors
from .tflite import TFLiteModel, load_tflite

__all__ = [
    "FormatError",
    "FORMATS",
    "detect_format",
    "load_state_dict",
    "load_checkpoint",
    "load_safetensors",
    "save_safetensors",
    "load_keras_h5",
    "read_keras_model_config",
    "load_tflite",
    "TFLiteModel",
    "load_onnx",
    "OnnxModel",
    "load_weights",
]


def load_weights(path):
    """``{name: numpy array}`` from any weight file whose format holds a flat tensor dict
    (PyTorch checkpoint, safetensors, Keras HDF5), chosen by content."""
    kind = detect_format(path)
    if kind in ("pth-zip", "pth-legacy"):
        return load_state_dict(path)
    if kind == "safetensors":
        return load_safetensors(path)
    if kind == "h5":
        return load_keras_h5(path)
    raise FormatError(f"{kind} files hold a graph, not a flat weight dict; use the {kind} "
                      "reader (load_tflite / load_onnx) or the converters", path)
