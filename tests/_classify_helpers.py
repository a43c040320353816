"""Small models and images made inside the tests for the classify app (no fixture needed)."""
from __future__ import annotations

import numpy as np

LABELS_1000 = [f"class {i}" for i in range(1000)]


def tf_style_tmn(path, resolution: int = 32, seed: int = 0):
    """A random-weight MobileNetV1 0.25 with TF's 1001 outputs (0 = background), the 1000
    labels embedded and the TF recipe: crop 87.5%, bilinear, (x - 127.5) / 127.5."""
    from tinymnet.formats.tmn import save_tmn
    from tinymnet.importers import make_recipe
    from tinymnet.models import build

    g = build("mobilenet_v1", width=0.25, resolution=resolution, seed=seed)
    assert g.shapes[g.outputs[0]][-1] == 1001
    g.meta["label_offset"] = 1
    recipe = make_recipe((resolution, resolution), 127.5, 127.5, crop=0.875,
                         source="test: TF convention")
    save_tmn(path, g, labels=LABELS_1000, preprocess=recipe, provenance={"test": True})
    return path


def torchvision_style_tmn(path, resolution: int = 32, seed: int = 0):
    """A random-weight MobileNetV2 0.35 with 1000 outputs and the torchvision recipe."""
    from tinymnet.convert import preprocess_recipe
    from tinymnet.formats.tmn import save_tmn
    from tinymnet.models import build

    g = build("mobilenet_v2", width=0.35, resolution=resolution, seed=seed)
    save_tmn(path, g, labels=LABELS_1000, preprocess=preprocess_recipe("torchvision", resolution))
    return path


def random_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth-ish random RGB image (gradients + noise), uint8 (h, w, 3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255.0 / max(w - 1, 1), y * 255.0 / max(h - 1, 1),
                     (x + y) * 127.0 / max(h + w - 2, 1)], axis=-1)
    noise = rng.normal(0, 25, size=(h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_image(path, h: int = 40, w: int = 56, seed: int = 0, fmt=None):
    from PIL import Image

    Image.fromarray(random_rgb(h, w, seed)).save(path, format=fmt)
    return path


def truncated_jpeg(path, seed: int = 0):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(random_rgb(64, 64, seed)).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    return path
