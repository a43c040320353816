"""Model names: the pretrained models shipped with tinymnet and the ones `tinymnet fetch` gets.

Bundled models live in the package ``tinymnet.weights`` (the repository's ``weights/``
folder, built by ``weights/build.py``): one ``.tmn`` file each, described by
``manifest.json`` there (file, sha256, source, fixture top-1 counts). They work offline.

:func:`resolve` turns what a user typed (``--model`` / ``tinymnet.load``) into a file path:
an existing file, a bundled name, or a name fetched earlier into the cache. Architecture
names (``mobilenet_v2``) are not models: the error says so and suggests a model name.

Nothing here imports numpy, Pillow or the kernels.
"""
from __future__ import annotations

import functools
import json
import os
import struct
from pathlib import Path
from typing import Dict, List, Optional

from .errors import FormatError, TinymnetError

MANIFEST_NAME = "manifest.json"

__all__ = ["weights_dir", "manifest", "bundled_names", "default_model", "bundled_path",
           "resolve", "read_tmn_header", "imagenet_labels"]

_manifest_cache: Optional[dict] = None


@functools.lru_cache(maxsize=None)
def weights_dir() -> Path:
    """The folder holding the bundled ``.tmn`` files and their manifest."""
    here = Path(__file__).parent
    # Looked up on disk before any import (the import machinery costs ~0.3 ms of start-up):
    # installed, the package ``tinymnet.weights`` is <package>/weights; in a source checkout
    # it is <repo>/weights.
    for candidate in (here / "weights", here.parents[1] / "weights"):
        if (candidate / MANIFEST_NAME).is_file():
            return candidate
    try:  # elsewhere (an editable install maps the package to its own folder)
        import tinymnet.weights as package

        p = Path(package.__file__).parent
        if (p / MANIFEST_NAME).is_file():
            return p
    except (ImportError, TypeError):
        pass
    return here.parents[1] / "weights"  # missing: manifest() says so, naming this path


def manifest() -> dict:
    """The parsed ``manifest.json`` (``{"default": name, "models": {name: entry}}``)."""
    global _manifest_cache
    if _manifest_cache is None:
        path = weights_dir() / MANIFEST_NAME
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except OSError:
            raise TinymnetError(f"the bundled models are missing ({path} not found): "
                                "reinstall tinymnet") from None
        except ValueError:
            raise TinymnetError(f"{path}: the bundled-model manifest is corrupt") from None
        _manifest_cache = doc
    return _manifest_cache


def bundled_names() -> List[str]:
    return list(manifest().get("models", {}))


def default_model() -> str:
    return manifest()["default"]


def bundled_path(name: str) -> str:
    entry = manifest()["models"][name]
    path = weights_dir() / entry["file"]
    if not path.is_file():
        raise TinymnetError(f"bundled model {name}: {path} is missing: reinstall tinymnet")
    return str(path)


def _arch_suggestions(arch: str) -> List[str]:
    from .fetch import MANIFEST as FETCHABLE

    out = [n for n, e in manifest().get("models", {}).items() if e.get("arch") == arch]
    out += [n for n, e in FETCHABLE.items() if e.get("arch") == arch]
    return out


def _known_archs() -> List[str]:
    try:
        from .models import ARCHS

        return list(ARCHS)
    except ImportError:  # pragma: no cover - the builders are part of the package
        return []


def resolve(spec=None) -> str:
    """A model file path for ``spec``: None (the default bundled model), a path to a file,
    a bundled model name or the name of a model fetched with ``tinymnet fetch``."""
    if spec is None:
        return bundled_path(default_model())
    if not isinstance(spec, (str, os.PathLike)):
        raise TinymnetError(f"a model is a name or a path, got {type(spec).__name__}")
    text = os.fspath(spec)
    if os.path.exists(text):
        return text
    names = bundled_names()
    if text in names:
        return bundled_path(text)
    from .fetch import MANIFEST as FETCHABLE, cached_model_path

    if text in FETCHABLE:
        path = cached_model_path(text)
        if path.is_file():
            return str(path)
        raise TinymnetError(f"model {text} has not been downloaded: run `tinymnet fetch {text}` "
                            "once (needs network access), or use a bundled model: "
                            f"{', '.join(names)}")
    if text in _known_archs():
        sugg = _arch_suggestions(text)
        hint = (f"use {' or '.join(sugg)}" if sugg else
                "convert pretrained weights with `tinymnet convert`")
        raise TinymnetError(f"{text!r} is an architecture, not a bundled model: {hint} "
                            f"(bundled models: {', '.join(names)})")
    if os.sep in text or "/" in text or os.path.splitext(text)[1]:
        raise FormatError("no such file", text)
    raise TinymnetError(f"unknown model {text!r}: give a .tmn file or one of the bundled "
                        f"models: {', '.join(names)} (`tinymnet models` lists them; "
                        f"`tinymnet fetch` downloads {', '.join(FETCHABLE)})")


_FIXED = struct.Struct("<8sIIQQQI20x")


def read_tmn_header(path) -> dict:
    """The JSON header of a .tmn file (graph, tensors, labels, preprocess, provenance) without
    reading the weights."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            fixed = f.read(_FIXED.size)
            if len(fixed) < _FIXED.size:
                raise FormatError("too short for a .tmn header", path)
            magic, _ver, _flags, hsize, *_ = _FIXED.unpack(fixed)
            if magic != b"TINYMNET" or hsize > 64 << 20:
                raise FormatError("not a .tmn file", path)
            return json.loads(f.read(hsize).decode("utf-8"))
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}", path) from None
    except ValueError as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError("the JSON header is malformed", path) from None


def imagenet_labels() -> List[str]:
    """The 1000 ImageNet-1k class names (standard order), as embedded in the bundled models."""
    labels = read_tmn_header(bundled_path(default_model())).get("labels") or []
    if len(labels) == 1001:
        labels = labels[1:]
    if len(labels) != 1000:
        raise TinymnetError("the default bundled model does not embed the 1000 ImageNet labels")
    return list(labels)


def describe_bundled() -> List[Dict]:
    """One dict per bundled model: name, default flag and its manifest entry."""
    m = manifest()
    return [dict(entry, name=name, default=name == m.get("default"))
            for name, entry in m.get("models", {}).items()]
