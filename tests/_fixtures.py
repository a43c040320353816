"""Where the shared real-model fixtures live (weights, labels, photos; see SOURCES.md there).

``fixtures_dir()`` returns the folder or None: ``$TINYMNET_FIXTURES`` if set, else
``<repo>/../shared/fixtures`` (how CI lays out a clone), else ``/work/shared/fixtures``.
``fixture(*parts)`` returns one file's Path or skips the calling test with the reason.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]


def fixtures_dir() -> Optional[Path]:
    env = os.environ.get("TINYMNET_FIXTURES")
    if env:
        p = Path(env)
        return p if p.is_dir() else None
    for cand in (REPO.parent / "shared" / "fixtures", Path("/work/shared/fixtures")):
        if cand.is_dir():
            return cand
    return None


def fixture(*parts) -> Path:
    import pytest

    root = fixtures_dir()
    if root is None:
        pytest.skip("shared fixtures not found: set TINYMNET_FIXTURES or put them at "
                    f"{REPO.parent / 'shared' / 'fixtures'}")
    p = root.joinpath(*parts)
    if not p.is_file():
        pytest.skip(f"fixture {p} is absent")
    return p


# Every .tflite file under fixtures/models/tflite (see SOURCES.md).
TFLITE_FILES = [
    "deeplabv3_mnv2_dm05_257_float.tflite",
    "mobilenet_edgetpu_1.0_224_uint8.tflite",
    "mobilenet_quant_v1_224_head_layers.tflite",
    "mobilenet_v1_0.25_128_quant.tflite",
    "mobilenet_v1_0.25_224_float.tflite",
    "mobilenet_v1_0.25_224_quant.tflite",
    "mobilenet_v1_0.5_160_quant.tflite",
    "mobilenet_v1_0.75_192_quant.tflite",
    "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
    "mobilenet_v2_1.0_224_quant.tflite",
    "mobilenet_v3_small_1.0_224_uint8.tflite",
    "tf2_mobilenet_v2_1.0_224_ptq.tflite",
]
