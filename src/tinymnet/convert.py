"""Convert pretrained weights into a tinymnet model (a Graph plus what is needed to use it).

``convert(sources)`` reads one or more files, tells their format from their content (never the
extension), recognises which network the weights belong to, builds that network with the
weights and returns a :class:`ConvertedModel`; ``convert_file(sources, "m.tmn")`` also writes
it as a ``.tmn`` file for :func:`tinymnet.load`.

Understood sources
==================

=============================  ==================================  ==========================
weights                        recognised by                       network (builder)
=============================  ==================================  ==========================
torchvision state dict         ``features.N.conv.*``                mobilenet_v2
(.pth zip or legacy,           ``features.N.block.*``, 17 / 13      mobilenet_v3_large / _small
safetensors)                   feature blocks
timm state dict                ``conv_stem``, ``blocks.i.j.*``,     mobilenet_v2 (timm
                               ``bn2`` (V2) or ``conv_head.bias``   ``mobilenetv2_*``),
                               (V3), 17 / 16 / 12 blocks            mobilenet_v3_large / _small
                               ``blocks.i.j.ghost1.*``              ghostnet (timm
                                                                    ``ghostnet_050/100/130``)
MobileNeXt, the official       ``features.N.conv.M`` with M >= 5    mobilenext (torchvision
code's state dict              (flat sandglass Sequential)          layout and recipe)
efficientnet_pytorch state     ``_conv_stem``, ``_blocks.N.*``,     efficientnet_lite0
dict                           16 blocks without squeeze-excite
Keras HDF5 (``model.save``)    ``conv1``, ``conv_dw_N``,            mobilenet_v1
                               ``conv_pw_N``, ``conv_preds``
=============================  ==================================  ==========================

Several files are merged into one weight dict (sharded checkpoints); a name found twice is an
error. TFLite and ONNX files hold a graph rather than a weight dict: they go to the importers
of :mod:`tinymnet.importers` (or one given to :func:`register_importer`), whose 8-bit weights
stay 8-bit in the .tmn; a ``.tmn`` is passed through.

The width multiplier and the number of classes are read from the weights' shapes: the width
is the one of the standard widths of the architecture whose layout matches every shape
exactly (``width=`` picks another one); the classes are the rows of the classifier. When
the network or the width cannot be told apart, a :class:`FormatError` lists the candidates
and says which option (``arch=``/``width=``) settles it.

timm names are mapped to the builders' (torchvision) names. timm's MobileNets compute exactly
what torchvision's do (same blocks, SE widths, activations, symmetric padding) except for BN
eps (1e-5, from :data:`tinymnet.models.BN_EPS`) and, for V3, the head: timm applies a 1x1
``conv_head`` with bias to the pooled features, which is the same affine map as torchvision's
``classifier.0`` Linear, so its weight is reshaped (C, Cin, 1, 1) -> (C, Cin) (its width is
passed to the builder as ``head_channels``). timm V3 at widths other than 1.0 is not
supported: timm scales the expanded channels from the scaled block input (torchvision scales
the table's expanded channels) and keeps a 16-channel stem below 0.75. timm V2 matches
torchvision at every width. timm's GhostNet needs no mapping: the ghostnet builder uses its
names (BN eps 1e-5, ``BN_EPS["timm_ghostnet"]``).

What the model records
======================

``preprocess`` is the input recipe of the weights' training pipeline, as data, with the keys
of :func:`tinymnet.importers.make_recipe` (centre ``crop`` fraction, ``resize`` to
``input_size``, then ``(pixel - mean) / std`` per channel with pixels in 0..255, fed as
float32 NHWC) plus ``steps``, the source pipeline's exact resize/crop sequence (torchvision:
short side to 256, centre crop 224). :func:`normalize` applies the mean/std part.

``labels`` are embedded only when a labels file is given (``labels=``) or found through
``$TINYMNET_LABELS``; tinymnet itself does not ship one yet, and the provenance says whether
labels were embedded. ``provenance`` names every source file with its sha256, format and
size, and the architecture, width, weight layout and BN eps used.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from .errors import FormatError, TinymnetError
from .graph import Graph
from .formats._common import sha256_file

__all__ = [
    "ConvertedModel",
    "convert",
    "convert_file",
    "normalize",
    "preprocess_recipe",
    "read_labels",
    "register_importer",
    "STANDARD_WIDTHS",
]

PathLike = Union[str, "os.PathLike[str]"]

# Width multipliers published for each architecture (tried in this order when inferring).
STANDARD_WIDTHS: Dict[str, Tuple[float, ...]] = {
    "mobilenet_v1": (1.0, 0.75, 0.5, 0.25),
    "mobilenet_v2": (1.0, 0.75, 0.5, 0.35, 1.3, 1.4),
    "mobilenet_v3_large": (1.0, 0.75, 0.5, 0.35, 1.25),
    "mobilenet_v3_small": (1.0, 0.75, 0.5, 0.35, 1.25),
    "ghostnet": (1.0, 0.5, 1.3),
    "mobilenext": (1.0, 0.75, 0.5, 0.35, 1.4),
}

# timm model names accepted by arch= (name -> builder arch); the _NNN suffix is the width.
_TIMM_ALIAS = re.compile(r"^(?:mobilenetv(2|3_large|3_small)|(ghostnet))_(\d{3})$")

# The classifier weight of each builder (its rows are the classes).
_CLASSIFIER = {
    "mobilenet_v1": "conv_preds.weight",
    "mobilenet_v2": "classifier.1.weight",
    "mobilenet_v3_large": "classifier.3.weight",
    "mobilenet_v3_small": "classifier.3.weight",
    "efficientnet_lite0": "_fc.weight",
    "ghostnet": "classifier.weight",
    "mobilenext": "classifier.1.weight",
}

# Where each weight layout's networks come from and which recipe they were trained with.
_LAYOUT_ARCHS = {
    "torchvision": ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "mobilenext"),
    "timm": ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "ghostnet"),
    "efficientnet_pytorch": ("efficientnet_lite0",),
    "keras": ("mobilenet_v1",),
}


@dataclass
class ConvertedModel:
    """A converted network: ``graph`` (weights in ``graph.params``), ``labels`` (list of class
    names or None), ``preprocess`` (the input recipe), ``provenance`` (where it came from) and
    ``quantized`` (param name -> QuantizedTensor for weights a graph importer read as 8 bits;
    written as 8 bits by :func:`convert_file`)."""

    graph: Graph
    labels: Optional[List[str]] = None
    preprocess: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    quantized: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Preprocessing recipes and labels

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_recipe(recipe: str, resolution: int = 224) -> dict:
    """The input recipe ``"torchvision"``, ``"timm"``, ``"tf"`` (Keras / TF-slim: x/127.5 - 1)
    or ``"efficientnet_lite"`` ((x - 127) / 128) for a square input of ``resolution``.

    The keys are those of :func:`tinymnet.importers.make_recipe` (``crop`` fraction,
    ``resize``, ``mean``/``std`` on the 0..255 scale, ...) plus ``recipe``, ``steps`` (the exact
    resize/crop sequence of the source pipeline: torchvision resizes the short side to
    ``resolution / 0.875`` and centre-crops a square, which ``crop`` 0.875 approximates) and
    ``description``."""
    r = int(resolution)
    if recipe in ("torchvision", "timm"):
        short = int(round(r / 0.875))  # 256 for 224
        interp = "bilinear" if recipe == "torchvision" else "bicubic"
        steps = [
            {"op": "resize_short_side", "size": short, "interpolation": interp},
            {"op": "center_crop", "size": [r, r]},
        ]
        mean = [round(m * 255.0, 6) for m in _IMAGENET_MEAN]
        std = [round(s * 255.0, 6) for s in _IMAGENET_STD]
        text = (f"resize the short side to {short} ({interp}), centre crop {r}x{r}, RGB, "
                "(x/255 - ImageNet mean) / ImageNet std")
        layout = "NCHW"
    elif recipe in ("tf", "efficientnet_lite"):
        interp = "bilinear"
        steps = [
            {"op": "central_crop_fraction", "fraction": 0.875},
            {"op": "resize", "size": [r, r], "interpolation": interp},
        ]
        if recipe == "tf":
            mean, std = [127.5] * 3, [127.5] * 3
            text = f"centre crop 87.5%, resize to {r}x{r} (bilinear), RGB, (x - 127.5) / 127.5"
            layout = "NHWC"
        else:
            mean, std = [127.0] * 3, [128.0] * 3
            text = (f"centre crop 87.5%, resize to {r}x{r} (bilinear), RGB, (x - 127) / 128 "
                    "(ImageNet mean/std gives nearly the same)")
            layout = "NCHW"
    else:
        raise ValueError(f"unknown preprocessing recipe {recipe!r}")
    from .importers import make_recipe

    out = make_recipe([r, r], mean, std, source_layout=layout, crop=0.875,
                      source=f"{recipe} training/evaluation pipeline")
    out["resize"] = interp
    out.update(recipe=recipe, steps=steps, description=text)
    return out


def normalize(pixels, preprocess: Mapping) -> np.ndarray:
    """``(pixels - mean) / std`` per channel as float32; ``pixels`` are 0..255 RGB values
    (..., 3), already resized/cropped to the model's input size."""
    x = np.asarray(pixels, dtype=np.float32)
    mean = np.asarray(preprocess.get("mean", (0.0, 0.0, 0.0)), np.float32)
    std = np.asarray(preprocess.get("std", (1.0, 1.0, 1.0)), np.float32)
    return ((x - mean) / std).astype(np.float32)


def read_labels(path: PathLike, num_classes: Optional[int] = None) -> List[str]:
    """Class names, one a line. A file with one more line than ``num_classes`` whose first
    line is ``background`` (the TF-slim 1001-class list) is fitted to a 1000-class model by
    dropping that line. ValueError if the count does not match ``num_classes``."""
    path = os.fspath(path)
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = [ln.strip() for ln in f.read().splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise TinymnetError(f"{path}: cannot read labels: {e}") from None
    while lines and not lines[-1]:
        lines.pop()
    if num_classes is not None and len(lines) != num_classes:
        if len(lines) == num_classes + 1 and lines[0].lower() in ("background", "__background__"):
            lines = lines[1:]
        else:
            raise TinymnetError(f"{path}: {len(lines)} labels for a model with {num_classes} "
                                "classes")
    return lines


def _resolve_labels(labels, num_classes: int, imagenet: bool):
    """-> (labels or None, note for the provenance)."""
    if labels is not None:
        if isinstance(labels, (str, os.PathLike)):
            return read_labels(labels, num_classes), f"from {os.path.basename(os.fspath(labels))}"
        names = [str(v) for v in labels]
        if len(names) != num_classes:
            raise TinymnetError(f"{len(names)} labels given for a model with {num_classes} "
                                "classes")
        return names, "given"
    env = os.environ.get("TINYMNET_LABELS")
    if env and imagenet:
        try:
            return read_labels(env, num_classes), f"from $TINYMNET_LABELS ({os.path.basename(env)})"
        except TinymnetError:
            pass
    return None, "none embedded (pass labels= / --labels FILE)"


# ---------------------------------------------------------------------------------------------
# Sources



def _source_record(path: str, kind: str) -> dict:
    return {"file": os.path.basename(path), "format": kind, "bytes": os.path.getsize(path),
            "sha256": sha256_file(path)}


def _as_list(sources) -> List[str]:
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    paths = [os.fspath(s) for s in sources]
    if not paths:
        raise TinymnetError("no source file given")
    return paths


_IMPORTERS: Dict[str, Callable] = {}


def register_importer(kind: str, func: Callable) -> None:
    """Make ``convert`` hand files of format ``kind`` ("tflite", "onnx") to ``func(paths)``,
    which returns a :class:`tinymnet.importers.Imported`, a :class:`ConvertedModel` or a
    Graph. By default the importers of :mod:`tinymnet.importers` are used."""
    _IMPORTERS[kind] = func


def _default_importer(kind: str) -> Optional[Callable]:
    try:
        from . import importers
    except ImportError:
        return None
    if kind == "tflite" and hasattr(importers, "import_tflite"):
        return lambda paths: importers.import_tflite(paths)
    if kind == "onnx" and hasattr(importers, "import_onnx"):
        def _onnx(paths):
            if len(paths) != 1:
                raise FormatError("give one .onnx file", ", ".join(paths))
            return importers.import_onnx(paths[0])
        return _onnx
    return None


def _run_importer(kind: str, paths: List[str]):
    func = _IMPORTERS.get(kind) or _default_importer(kind)
    unsupported = FormatError(f"converting {kind} files is not supported yet (no {kind} "
                              "importer is available in this tinymnet)", ", ".join(paths))
    if func is None:
        raise unsupported
    try:
        return func(paths)
    except ValueError:  # FormatError and friends: already a clear message
        raise
    except ImportError as e:
        if "tinymnet" in str(e):  # the importer module itself is absent
            raise unsupported from e
        raise FormatError(f"converting {kind} files needs a package that is missing: {e}",
                          ", ".join(paths)) from e
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - the CLI promises one-line errors
        raise FormatError(f"the {kind} importer failed: {type(e).__name__}: {e}",
                          ", ".join(paths)) from e


# ---------------------------------------------------------------------------------------------
# Weight layouts -> builder names


def _block_indices(keys, pattern: str) -> List[Tuple[int, ...]]:
    rx = re.compile(pattern)
    found = set()
    for k in keys:
        m = rx.match(k)
        if m:
            found.add(tuple(int(g) for g in m.groups()))
    return sorted(found)


def _detect_layout(weights: Mapping[str, np.ndarray]) -> Optional[str]:
    keys = weights.keys()
    if "_conv_stem.weight" in keys or any(k.startswith("_blocks.") for k in keys):
        return "efficientnet_pytorch"
    if "conv_stem.weight" in keys and any(k.startswith("blocks.") for k in keys):
        return "timm"
    if any(k.startswith("features.") for k in keys):
        return "torchvision"
    if any(k.startswith(("conv1/", "conv_dw_1/", "conv_pw_1/", "conv_preds/")) for k in keys):
        return "keras"
    return None


def _detect_arch(layout: str, weights: Mapping[str, np.ndarray]) -> List[str]:
    """The archs whose key pattern these weights have (one, or several when ambiguous)."""
    keys = list(weights)
    if layout == "torchvision":
        feats = _block_indices(keys, r"^features\.(\d+)\.")
        n = feats[-1][0] + 1 if feats else 0
        if any(re.match(r"^features\.\d+\.conv\.[5-9]\.", k) for k in keys):
            return ["mobilenext"]  # the official code's flat sandglass Sequential
        if any(re.match(r"^features\.\d+\.conv\.", k) for k in keys):
            return ["mobilenet_v2"]
        if any(re.match(r"^features\.\d+\.block\.", k) for k in keys):
            return {17: ["mobilenet_v3_large"], 13: ["mobilenet_v3_small"]}.get(
                n, ["mobilenet_v3_large", "mobilenet_v3_small"])
        return list(_LAYOUT_ARCHS[layout])
    if layout == "timm":
        if any(re.match(r"^blocks\.\d+\.\d+\.ghost1\.", k) for k in keys):
            return ["ghostnet"]
        n = len(_block_indices(keys, r"^blocks\.(\d+)\.(\d+)\."))
        if "bn2.weight" in weights and "conv_head.bias" not in weights:
            return ["mobilenet_v2"]
        if "conv_head.bias" in weights or "bn2.weight" not in weights:
            return {16: ["mobilenet_v3_large"], 12: ["mobilenet_v3_small"]}.get(
                n, ["mobilenet_v3_large", "mobilenet_v3_small"])
        return list(_LAYOUT_ARCHS[layout])
    return list(_LAYOUT_ARCHS[layout])


def _map_timm(weights: Mapping[str, np.ndarray], arch: str) -> Dict[str, np.ndarray]:
    """timm MobileNetV2/V3 state dict -> torchvision (builder) names. Keys that have no
    counterpart keep their timm name, so the builder reports them as unexpected."""
    v3 = arch != "mobilenet_v2"
    out: Dict[str, np.ndarray] = {}
    used = set()

    def put(src_prefix, dst_prefix, bn=False):
        suffixes = (("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
                    if bn else ("weight", "bias"))
        for s in suffixes:
            k = f"{src_prefix}.{s}"
            if k in weights:
                out[f"{dst_prefix}.{s}"] = weights[k]
                used.add(k)

    put("conv_stem", "features.0.0")
    put("bn1", "features.0.1", bn=True)
    blocks = _block_indices(weights, r"^blocks\.(\d+)\.(\d+)\.")
    for idx, (i, j) in enumerate(blocks, start=1):
        src = f"blocks.{i}.{j}"
        dst = f"features.{idx}"
        has = lambda name, src=src: f"{src}.{name}.weight" in weights  # noqa: E731
        if has("conv") and not has("conv_dw"):  # ConvBnAct (V3's last stage)
            put(f"{src}.conv", f"{dst}.0")
            put(f"{src}.bn1", f"{dst}.1", bn=True)
            continue
        part = "block" if v3 else "conv"
        parts = []  # (timm conv, timm bn or None, SE?) in execution order
        if has("conv_pwl"):  # InvertedResidual: expand, depthwise, [SE], project
            parts = [("conv_pw", "bn1"), ("conv_dw", "bn2"), ("se", None), ("conv_pwl", "bn3")]
        else:  # DepthwiseSeparableConv: depthwise, [SE], pointwise
            parts = [("conv_dw", "bn1"), ("se", None), ("conv_pw", "bn2")]
        n = 0
        for conv, bn in parts:
            if conv == "se":
                if f"{src}.se.conv_reduce.weight" in weights:
                    put(f"{src}.se.conv_reduce", f"{dst}.{part}.{n}.fc1")
                    put(f"{src}.se.conv_expand", f"{dst}.{part}.{n}.fc2")
                    n += 1
                continue
            if not has(conv):
                continue
            last = conv in ("conv_pwl",) or (conv == "conv_pw" and not has("conv_pwl"))
            if v3 or not last:  # Conv2dNormActivation: {n}.0 conv, {n}.1 BN
                put(f"{src}.{conv}", f"{dst}.{part}.{n}.0")
                put(f"{src}.{bn}", f"{dst}.{part}.{n}.1", bn=True)
                n += 1
            else:  # torchvision V2's projection: bare conv {n}, BN {n+1}
                put(f"{src}.{conv}", f"{dst}.{part}.{n}")
                put(f"{src}.{bn}", f"{dst}.{part}.{n + 1}", bn=True)
                n += 2
    if v3:
        for s in ("weight", "bias"):
            k = f"conv_head.{s}"
            if k in weights:
                w = np.asarray(weights[k])
                out[f"classifier.0.{s}"] = w.reshape(w.shape[0], -1) if s == "weight" else w
                used.add(k)
        put("classifier", "classifier.3")
    else:
        put("conv_head", f"features.{len(blocks) + 1}.0")
        put("bn2", f"features.{len(blocks) + 1}.1", bn=True)
        put("classifier", "classifier.1")
    for k, v in weights.items():
        if k not in used:
            out.setdefault(k, v)
    return out


def _map_keras(weights: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Keras ``layer/var`` weights -> builder names and torch layouts (HWIO -> OIHW,
    depthwise HWC1 -> C1HW, BN gamma/beta/moving_* -> weight/bias/running_*)."""
    bn_names = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                "moving_variance": "running_var"}
    out: Dict[str, np.ndarray] = {}
    for key, value in weights.items():
        layer, _, var = key.rpartition("/")
        a = np.asarray(value)
        if var == "kernel" and a.ndim == 4:
            out[f"{layer}.weight"] = a.transpose(3, 2, 0, 1)
        elif var == "depthwise_kernel" and a.ndim == 4:
            h, w, c, m = a.shape
            out[f"{layer}.weight"] = a.transpose(2, 3, 0, 1).reshape(c * m, 1, h, w)
        elif var == "bias":
            out[f"{layer}.bias"] = a
        elif var in bn_names:
            out[f"{layer}.{bn_names[var]}"] = a
        else:
            out[key] = a  # reported as unexpected by the builder
    return out


def _keras_facts(path: str) -> dict:
    """Resolution and BN eps from a Keras file's model_config, when it has one."""
    from .formats import read_keras_model_config

    try:
        cfg = read_keras_model_config(path)
    except FormatError:
        return {}
    if not isinstance(cfg, dict):
        return {}
    facts: dict = {}
    layers = (cfg.get("config") or {}).get("layers") or []
    if not isinstance(layers, list):
        return facts
    eps = set()
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        conf = layer.get("config") or {}
        if layer.get("class_name") == "InputLayer":
            shape = conf.get("batch_input_shape") or conf.get("batch_shape")
            if (isinstance(shape, list) and len(shape) == 4 and isinstance(shape[1], int)
                    and shape[1] == shape[2]):
                facts["resolution"] = shape[1]
        if layer.get("class_name") == "BatchNormalization" and "epsilon" in conf:
            try:
                eps.add(float(conf["epsilon"]))
            except (TypeError, ValueError):
                pass
    if len(eps) == 1:
        facts["bn_eps"] = eps.pop()
    if cfg.get("keras_version"):
        facts["keras_version"] = str(cfg["keras_version"])
    return facts


def _check_arrays(params: Mapping[str, np.ndarray], path: str) -> Dict[str, np.ndarray]:
    """Only numeric float tensors with finite values go into a model."""
    out = {}
    for k, v in params.items():
        if k.endswith("num_batches_tracked"):
            continue
        a = np.asarray(v)
        if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
            raise FormatError(f"tensor {k!r} has dtype {a.dtype}, not a number type", path)
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise FormatError(f"tensor {k!r} holds NaN or infinite values", path)
        out[k] = a
    return out


def _summarise_mismatch(expected: Mapping[str, Tuple[int, ...]], given: Mapping[str, np.ndarray],
                        limit: int = 3) -> str:
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected and not k.endswith("num_batches_tracked")]
    wrong = [f"{k} {tuple(np.shape(given[k]))} != {tuple(expected[k])}"
             for k in expected if k in given and tuple(np.shape(given[k])) != tuple(expected[k])]
    parts = []
    for what, items in (("missing", missing), ("unexpected", unexpected),
                        ("wrong shape", wrong)):
        if items:
            more = f", ... {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{len(items)} {what} ({', '.join(items[:limit])}{more})")
    return "; ".join(parts) or "no difference in names or shapes"


# ---------------------------------------------------------------------------------------------
# The conversion


def _parse_arch(arch: Optional[str], width: Optional[float]):
    """User's arch name (builder name or timm alias) -> (builder arch, width)."""
    from .models import ARCHS

    if arch is None:
        return None, width
    a = arch.strip().lower().replace("-", "_")
    m = _TIMM_ALIAS.match(a)
    if m:
        base = m.group(2) or {"2": "mobilenet_v2", "3_large": "mobilenet_v3_large",
                              "3_small": "mobilenet_v3_small"}[m.group(1)]
        w = int(m.group(3)) / 100.0
        if width is not None and abs(width - w) > 1e-9:
            raise TinymnetError(f"arch {arch} means width {w}, but width {width} was given")
        return base, w
    if a not in ARCHS:
        raise TinymnetError(f"unknown arch {arch!r}; known: {', '.join(sorted(ARCHS))} (timm "
                            "names such as mobilenetv2_100 or ghostnet_100 are accepted too)")
    return a, width


def _eps_for(layout: str, arch: str, keras_eps: Optional[float]) -> float:
    from .models import BN_EPS

    if layout == "torchvision":
        if arch == "mobilenext":
            return BN_EPS["mobilenext"]
        return BN_EPS["torchvision_mobilenet_v2" if arch == "mobilenet_v2"
                      else "torchvision_mobilenet_v3"]
    if layout == "timm":
        return BN_EPS["timm_ghostnet" if arch == "ghostnet" else "timm_mobilenet"]
    if layout == "efficientnet_pytorch":
        return BN_EPS["efficientnet_lite0"]
    return BN_EPS["keras"] if keras_eps is None else keras_eps


def _build_with(arch, params, width, resolution, num_classes, eps, extra):
    """-> (graph, None), or (None, the builder's error) when the weights do not fit."""
    from .models import build

    kwargs = dict(num_classes=num_classes, resolution=resolution, bn_eps=eps, **extra)
    if params is not None:
        kwargs["params"] = params
    if width is not None:
        kwargs["width"] = width
    try:
        return build(arch, **kwargs), None
    except (ValueError, ZeroDivisionError) as e:
        return None, str(e)


def _fmt_w(w) -> str:
    return f"{w:g}"


def _convert_weights(paths: List[str], kinds: List[str], arch, width, num_classes,
                     resolution) -> Tuple[Graph, dict]:
    from .formats import load_weights

    where = paths[0] if len(paths) == 1 else ", ".join(paths)
    weights: Dict[str, np.ndarray] = {}
    for p in paths:
        for k, v in load_weights(p).items():
            if k in weights:
                raise FormatError(f"tensor {k!r} is in more than one source file", p)
            weights[k] = v
    if not weights:
        raise FormatError("the file holds no tensors", where)
    if all(k.startswith("module.") for k in weights):  # saved from nn.DataParallel
        weights = {k[len("module."):]: v for k, v in weights.items()}

    layout = _detect_layout(weights)
    if layout is None:
        sample = ", ".join(list(weights)[:4])
        raise FormatError(
            "cannot tell which network these weights belong to (keys such as "
            f"{sample}); tinymnet converts torchvision, timm and efficientnet_pytorch state "
            "dicts and Keras MobileNet V1 .h5 files", where)
    if layout == "keras" and "h5" not in kinds:
        raise FormatError("Keras-named weights must come from a Keras .h5 file", where)
    weights = _check_arrays(weights, where)

    user_arch, width = _parse_arch(arch, width)
    candidates = _detect_arch(layout, weights)
    if user_arch is not None:
        if user_arch not in _LAYOUT_ARCHS[layout]:
            raise FormatError(f"these are {layout} weights, which tinymnet maps only to "
                              f"{', '.join(_LAYOUT_ARCHS[layout])}, not {user_arch}", where)
        arch = user_arch
    elif len(candidates) == 1:
        arch = candidates[0]
    else:
        raise FormatError(f"{layout} weights, but the network is ambiguous: candidates "
                          f"{', '.join(candidates)}; pass arch= (--arch)", where)

    keras_facts = _keras_facts(paths[kinds.index("h5")]) if layout == "keras" else {}
    if layout == "timm" and arch != "ghostnet":
        params = _map_timm(weights, arch)
    elif layout == "keras":
        params = _map_keras(weights)
    else:
        params = dict(weights)
    eps = _eps_for(layout, arch, keras_facts.get("bn_eps"))
    res = int(resolution or keras_facts.get("resolution") or 224)

    looks = ""
    if user_arch is not None and len(candidates) == 1 and candidates[0] != user_arch:
        looks = f" (the keys look like {candidates[0]}, not {user_arch})"
    cls_key = _CLASSIFIER[arch]
    if cls_key not in params:
        if looks:
            raise FormatError(f"{layout} weights do not match {arch}{looks}", where)
        raise FormatError(f"no classifier weight {cls_key!r} after mapping the {layout} names: "
                          "headless feature extractors are not supported", where)
    found_classes = int(np.shape(params[cls_key])[0])
    if num_classes is not None and int(num_classes) != found_classes:
        raise FormatError(f"the classifier has {found_classes} classes, not {num_classes}", where)
    num_classes = found_classes

    extra: dict = {}
    timm_v3 = layout == "timm" and arch in ("mobilenet_v3_large", "mobilenet_v3_small")
    if timm_v3 and "classifier.0.weight" in params:
        extra["head_channels"] = int(np.shape(params["classifier.0.weight"])[0])

    if arch == "efficientnet_lite0":
        if width not in (None, 1.0):
            raise FormatError("efficientnet_lite0 has no width multiplier", where)
        widths = [None]
    elif width is not None:
        widths = [float(width)]
    else:
        widths = list(STANDARD_WIDTHS[arch])
    built = []
    for w in widths:
        g, _ = _build_with(arch, params, w, res, num_classes, eps, extra)
        if g is not None:
            built.append((w, g))
    if not built and width is None and arch in STANDARD_WIDTHS and not timm_v3:
        # A non-standard width: estimate it from the stem (channels = width * base).
        base = 32 if arch in ("mobilenet_v1", "mobilenet_v2", "mobilenext") else 16
        stem_key = {"mobilenet_v1": "conv1.weight", "ghostnet": "conv_stem.weight"}.get(
            arch, "features.0.0.weight")
        if stem_key in params:
            w = round(np.shape(params[stem_key])[0] / base * 20) / 20  # to 0.05
            if w > 0 and w not in widths:
                g, _ = _build_with(arch, params, w, res, num_classes, eps, extra)
                if g is not None:
                    built.append((w, g))
    if not built:
        w0 = widths[0] if len(widths) == 1 else (width if width is not None else 1.0)
        if arch == "efficientnet_lite0":
            w0 = None
        ref, err = _build_with(arch, None, w0, res, num_classes, eps, extra)
        if ref is None:  # the options themselves are impossible (e.g. a tiny resolution)
            raise FormatError(f"cannot build {arch}: {err}", where)
        expected = {k: tuple(v.shape) for k, v in ref.params.items()}
        detail = _summarise_mismatch(expected, params)
        if timm_v3 and set(expected) == {k for k in params if not k.endswith("_tracked")}:
            raise FormatError(
                f"timm {arch} weights of a width other than 1.0: timm scales the expanded "
                "channels from the already-scaled block input (and keeps a 16-channel stem "
                "below 0.75), which tinymnet's torchvision-layout builder does not reproduce; "
                "only mobilenetv3_large_100 / mobilenetv3_small_100 are supported", where)
        if detail.startswith("no difference"):
            detail = _build_with(arch, params, w0, res, num_classes, eps, extra)[1] or detail
        what = f"{arch} width {_fmt_w(w0)}" if w0 is not None else arch
        hint = ""
        if width is None and arch in STANDARD_WIDTHS:
            hint = (f"; no standard width ({', '.join(map(_fmt_w, STANDARD_WIDTHS[arch]))}) "
                    "fits either: pass width= (--width) if it is another one")
        if user_arch is None and len(candidates) == 1:
            hint += " or arch= (--arch) if it is another network"
        raise FormatError(f"{layout} weights do not match {what}{looks}: {detail}{hint}", where)
    if len(built) > 1:
        raise FormatError(f"{arch} weights fit several widths "
                          f"({', '.join(_fmt_w(w) for w, _ in built)}); pass width= (--width)",
                          where)
    w, graph = built[0]
    graph.meta["weights_layout"] = layout
    facts = {"arch": arch, "width": w, "num_classes": num_classes, "resolution": res,
             "weights_layout": layout, "bn_eps": eps}
    if keras_facts.get("keras_version"):
        facts["keras_version"] = keras_facts["keras_version"]
    return graph, facts


_RECIPES = {"torchvision": "torchvision", "timm": "timm", "keras": "tf",
            "efficientnet_pytorch": "efficientnet_lite"}


def convert(sources, arch: Optional[str] = None, width: Optional[float] = None,
            num_classes: Optional[int] = None, *, resolution: Optional[int] = None,
            labels=None) -> ConvertedModel:
    """Convert one or more weight/model files (see the module doc) into a ConvertedModel.

    ``arch`` (a builder name such as ``"mobilenet_v3_large"`` or a timm name such as
    ``"mobilenetv2_100"``), ``width`` and ``num_classes`` are inferred from the weights when
    omitted, and checked against them when given. ``resolution`` sets the input size (224 by
    default; a Keras file's own input size when it records one). ``labels`` is a labels file
    or a list of names to embed. FormatError (a ValueError) names the file on any problem.
    """
    from .formats import detect_format

    paths = _as_list(sources)
    kinds = [detect_format(p) for p in paths]
    if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 1):
        raise TinymnetError(f"num_classes must be a positive int, got {num_classes!r}")
    if width is not None and not float(width) > 0:
        raise TinymnetError(f"width must be > 0, got {width!r}")
    if resolution is not None and int(resolution) < 8:
        raise TinymnetError(f"resolution must be >= 8, got {resolution!r}")
    records = [_source_record(p, k) for p, k in zip(paths, kinds)]
    provenance = {"converter": _converter_name(), "sources": records}
    if len(records) == 1:
        provenance.update(source=records[0]["file"], sha256=records[0]["sha256"],
                          format=records[0]["format"])

    weight_kinds = {"pth-zip", "pth-legacy", "safetensors", "h5"}
    if set(kinds) <= weight_kinds:
        graph, facts = _convert_weights(paths, kinds, arch, width, num_classes, resolution)
        provenance.update(facts)
        lbl, note = _resolve_labels(labels, facts["num_classes"],
                                    imagenet=facts["num_classes"] in (1000, 1001))
        provenance["labels"] = note
        pre = preprocess_recipe(_RECIPES[facts["weights_layout"]], facts["resolution"])
        return ConvertedModel(graph, lbl, pre, provenance)

    if len(set(kinds)) > 1:
        raise FormatError(f"cannot combine files of formats {', '.join(sorted(set(kinds)))} in "
                          "one conversion", ", ".join(paths))
    kind = kinds[0]
    if kind == "tmn":
        if len(paths) > 1:
            raise FormatError("a .tmn file is a whole model; give one", ", ".join(paths))
        from .formats.tmn import load_tmn

        tm = load_tmn(paths[0])
        lbl = tm.labels
        if labels is not None:
            n = int(tm.graph.shapes[tm.graph.outputs[0]][-1])
            lbl, _ = _resolve_labels(labels, n, imagenet=False)
        prov = dict(tm.provenance)
        prov.setdefault("converted_from_tmn", records[0])
        return ConvertedModel(tm.graph, lbl, dict(tm.preprocess), prov)

    result = _run_importer(kind, paths)
    return _from_imported(result, provenance, num_classes, labels, paths)


def _from_imported(result, provenance: dict, num_classes, labels, paths) -> ConvertedModel:
    """An importer's result (Imported / ConvertedModel / Graph) -> ConvertedModel with the
    labels fitted to its classes (label_offset 1: index 0 is "background")."""
    if isinstance(result, Graph):
        result = ConvertedModel(result)
    graph = result.graph
    prov = dict(provenance)
    prov.update(getattr(result, "provenance", None) or {})
    out_classes = getattr(result, "num_classes", None)
    out_shape = graph.shapes[graph.outputs[0]]
    if out_classes is None and len(out_shape) == 2:
        out_classes = int(out_shape[-1])
    if num_classes is not None and out_classes is not None and int(num_classes) != out_classes:
        raise FormatError(f"the model has {out_classes} classes, not {num_classes}",
                          ", ".join(paths))
    lbl = getattr(result, "labels", None)
    if out_classes is not None:
        prov.setdefault("num_classes", out_classes)
        offset = int(getattr(result, "label_offset", 0) or 0)
        if labels is not None or lbl is None:
            lbl, note = _resolve_labels(labels, out_classes - offset,
                                        imagenet=out_classes - offset == 1000)
            if lbl is not None and offset:
                lbl = ["background"] * offset + lbl
            prov["labels"] = note
    elif labels is not None:
        raise FormatError("the model's output is not a class vector; labels do not apply",
                          ", ".join(paths))
    return ConvertedModel(graph, lbl, dict(result.preprocess or {}), prov,
                          dict(getattr(result, "quantized", None) or {}))


def _converter_name() -> str:
    from . import __version__

    return f"tinymnet {__version__}"


def convert_file(sources, out_path: PathLike, arch: Optional[str] = None,
                 width: Optional[float] = None, num_classes: Optional[int] = None, *,
                 resolution: Optional[int] = None, labels=None,
                 gemm_panels="native") -> ConvertedModel:
    """:func:`convert` and write the result to ``out_path`` as a .tmn file, its graph stored
    optimised (BN folded, activations fused) so ``tinymnet.load`` builds the plan straight
    from the mapped file; the converted graph is kept beside it for ``tinymnet info``.
    ``gemm_panels``: float32 GEMM weights stored packed for this panel width (default: this
    CPU's), used in place at load; None keeps canonical layouts (see
    :func:`tinymnet.formats.tmn.save_tmn`)."""
    from .formats.tmn import save_tmn

    cm = convert(sources, arch, width, num_classes, resolution=resolution, labels=labels)
    save_tmn(out_path, cm.graph, labels=cm.labels, preprocess=cm.preprocess,
             provenance=cm.provenance, quantized=cm.quantized or None, optimize=True,
             gemm_panels=gemm_panels)
    return cm
