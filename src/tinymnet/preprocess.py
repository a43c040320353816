"""Images -> the float input a model takes, following the recipe recorded in the model.

Two ways to fit an image to the model's input (``mode``):

``"crop"`` (the default: what the weights were evaluated with)
    * torchvision / timm models (the recipe lists ``steps``): resize the short side to 256
      (``resolution / 0.875``; bilinear for torchvision, bicubic for timm) and centre-crop
      224, exactly as ``transforms.Resize(256)`` + ``transforms.CenterCrop(224)`` do on a PIL
      image (PIL resampling, which antialiases when it shrinks);
    * TF models (recipe ``crop`` < 1, no ``steps``): a centred square of 87.5% of the short
      side, then a bilinear resize to the input size.
``"resize"``
    The whole image resized (the recipe's interpolation) to the input size, no crop; this is
    how the fixtures' reference predictions were made.

Then the pixels (0..255) are mapped to the model's float input: ``(x - mean) / std`` per
channel (ImageNet mean/std for torchvision; ``(x - 127.5) / 127.5``, i.e. [-1, 1], for float
TF models), or ``(x - zero_point) * scale`` for a quantized model's uint8 input.

Pillow is imported on first use (``import tinymnet`` does not need it).
"""
from __future__ import annotations

import os
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .errors import TinymnetError

__all__ = ["IMAGE_EXTENSIONS", "ImageError", "load_image", "pipeline", "fit", "normalize",
           "prepare"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif")
MODES = ("crop", "resize")


class ImageError(TinymnetError):
    """An image could not be read or decoded."""


def _pil():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency of the classify app
        raise TinymnetError("reading images needs Pillow: pip install Pillow") from None
    return Image


def _resample(name: str):
    Image = _pil()
    r = getattr(Image, "Resampling", Image)
    table = {"bilinear": r.BILINEAR, "bicubic": r.BICUBIC, "nearest": r.NEAREST,
             "lanczos": r.LANCZOS, "box": r.BOX, "area": r.BOX}
    try:
        return table[str(name).lower()]
    except KeyError:
        raise TinymnetError(f"unknown interpolation {name!r} in the preprocessing recipe "
                            f"(known: {', '.join(table)})") from None


def load_image(image):
    """A path, a PIL image or a uint8 array (H, W, 3) (also (H, W) grey or (H, W, 4) RGBA) ->
    a decoded RGB PIL image. Unreadable files raise :class:`ImageError`."""
    Image = _pil()
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        try:
            with warnings.catch_warnings():
                # Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse those too.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    im.load()  # decode now: a truncated or corrupt file fails here
                    return im.convert("RGB")
        except FileNotFoundError:
            raise ImageError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise ImageError(f"{path}: is a directory") from None
        except PermissionError:
            raise ImageError(f"{path}: permission denied") from None
        except Image.UnidentifiedImageError:
            raise ImageError(f"{path}: cannot decode: not an image file Pillow can read"
                             ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"{path}: refused: {e}") from None
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
            reason = str(e) or type(e).__name__
            raise ImageError(f"{path}: cannot decode: {reason}") from None
        except Exception as e:  # noqa: BLE001 - Pillow's format plugins leak struct.error & co
            raise ImageError(f"{path}: cannot decode: {type(e).__name__}: {e}") from None
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ImageError(f"an image array must be uint8 (0..255), got {image.dtype}")
        if image.ndim == 2:
            return Image.fromarray(np.ascontiguousarray(image), "L").convert("RGB")
        if image.ndim == 3 and image.shape[2] in (3, 4) and min(image.shape[:2]) > 0:
            mode = "RGB" if image.shape[2] == 3 else "RGBA"
            im = Image.fromarray(np.ascontiguousarray(image), mode)
            return im if mode == "RGB" else im.convert("RGB")
        raise ImageError(f"an image array must be (H, W, 3) RGB, got shape {image.shape}")
    raise ImageError(f"an image is a path, a PIL image or a uint8 (H, W, 3) array, "
                     f"got {type(image).__name__}")


def _input_size(recipe, input_size) -> Tuple[int, int]:
    size = input_size if input_size is not None else recipe.get("input_size")
    if size is None:
        raise TinymnetError("the preprocessing recipe has no input_size")
    h, w = (int(s) for s in size)
    return h, w


def pipeline(recipe, input_size: Optional[Sequence[int]] = None, mode: str = "crop") -> List[dict]:
    """The resize/crop steps for ``recipe`` (see the module doc), ending at ``input_size``
    (H, W; the recipe's by default). Ops: ``resize_short_side`` (size, interpolation),
    ``center_crop`` (size [h, w]), ``central_crop_fraction`` (fraction of the short side,
    square) and ``resize`` (size [h, w], interpolation)."""
    if mode not in MODES:
        raise TinymnetError(f"preprocess mode must be one of {MODES}, got {mode!r}")
    h, w = _input_size(recipe, input_size)
    steps = list(recipe.get("steps") or [])
    interp = recipe.get("resize", "bilinear")
    for s in steps:
        if s.get("op") in ("resize", "resize_short_side") and s.get("interpolation"):
            interp = s["interpolation"]
            break
    if interp in (None, True, "stretch"):
        interp = "bilinear"
    if mode == "resize":
        return [{"op": "resize", "size": [h, w], "interpolation": interp}]
    if steps:
        known = {"resize", "resize_short_side", "center_crop", "central_crop_fraction"}
        for s in steps:
            if s.get("op") not in known:
                raise TinymnetError(f"unknown preprocessing step {s.get('op')!r} in the model's "
                                    "recipe")
        out = [dict(s) for s in steps]
        last = out[-1]
        # the recipe was written for one resolution; end exactly at the model's input size
        if last["op"] == "center_crop" and list(last["size"]) != [h, w]:
            last["size"] = [h, w]
        elif last["op"] != "center_crop" and not (last["op"] == "resize"
                                                   and list(last["size"]) == [h, w]):
            out.append({"op": "resize", "size": [h, w], "interpolation": interp})
        return out
    crop = float(recipe.get("crop", 1.0))
    out = []
    if crop < 1.0:
        out.append({"op": "central_crop_fraction", "fraction": crop})
    out.append({"op": "resize", "size": [h, w], "interpolation": interp})
    return out


def _center_box(width: int, height: int, cw: int, ch: int):
    # torchvision's center_crop: offsets int(round((size - crop) / 2))
    left = int(round((width - cw) / 2.0))
    top = int(round((height - ch) / 2.0))
    return left, top, left + cw, top + ch


def fit(img, steps: Sequence[dict]):
    """Apply resize/crop ``steps`` (from :func:`pipeline`) to an RGB PIL image."""
    for s in steps:
        op = s["op"]
        w, h = img.size
        if op == "resize_short_side":
            # torchvision Resize(int): short side -> size, long side int(size * long / short)
            size = int(s["size"])
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(size * long / short)
            new = (size, new_long) if w <= h else (new_long, size)
            if new != (w, h):
                img = img.resize(new, _resample(s.get("interpolation", "bilinear")))
        elif op == "center_crop":
            ch, cw = (int(v) for v in s["size"])
            if cw > w or ch > h:  # torchvision pads with zeros; do the same
                Image = _pil()
                canvas = Image.new("RGB", (max(w, cw), max(h, ch)))
                canvas.paste(img, ((max(w, cw) - w) // 2, (max(h, ch) - h) // 2))
                img, (w, h) = canvas, canvas.size
            img = img.crop(_center_box(w, h, cw, ch))
        elif op == "central_crop_fraction":
            side = max(1, int(round(min(w, h) * float(s["fraction"]))))
            img = img.crop(_center_box(w, h, side, side))
        elif op == "resize":
            th, tw = (int(v) for v in s["size"])
            if (tw, th) != (w, h):
                img = img.resize((tw, th), _resample(s.get("interpolation", "bilinear")))
        else:
            raise TinymnetError(f"unknown preprocessing step {op!r}")
    return img


def normalize(pixels, recipe) -> np.ndarray:
    """uint8/float pixels (..., 3) on 0..255 -> the model's float32 input: ``(x - zp) * scale``
    for a quantized input, else ``(x - mean) / std``."""
    x = np.asarray(pixels, dtype=np.float32)
    q = recipe.get("input_quantization")
    if q and recipe.get("input_dtype") == "uint8":
        return ((x - np.float32(q["zero_point"])) * np.float32(q["scale"])).astype(np.float32)
    mean = np.asarray(recipe.get("mean", (0.0, 0.0, 0.0)), np.float32)
    std = np.asarray(recipe.get("std", (1.0, 1.0, 1.0)), np.float32)
    return ((x - mean) / std).astype(np.float32)


def prepare(image, recipe, input_size: Optional[Sequence[int]] = None,
            mode: str = "crop") -> np.ndarray:
    """One image (path, PIL image or uint8 array) -> float32 (H, W, 3), ready to stack into
    the NHWC batch the model takes."""
    steps = pipeline(recipe, input_size, mode)
    img = fit(load_image(image), steps)
    h, w = _input_size(recipe, input_size)
    if img.size != (w, h):  # pragma: no cover - the pipeline always ends at the input size
        raise TinymnetError(f"preprocessing produced {img.size[1]}x{img.size[0]}, not {h}x{w}")
    return normalize(np.asarray(img, dtype=np.uint8), recipe)
