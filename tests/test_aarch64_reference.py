"""Reference logits for the aarch64 test program (tests/cpp/test_kernels_main.cc, run under
qemu by .ci/test-aarch64.sh).

For each bundled model in MODELS this runs tinymnet on this (x86) machine on a deterministic
input and writes the logits where the C++ test finds them: ``$TINYMNET_AARCH64_REFS``
(default ``build/aarch64-refs`` under the repository) / ``<model>.logits``.

Input: NHWC float32 of the model's input shape (1, H, W, C), element i (flat, row-major NHWC)
= float32(sin(i * 0.001)) computed in double precision. The C++ test recomputes it.

Graph: the stored graph as it is (no passes.optimize: BatchNorm, add and activation nodes run
as their own ops), i.e. ``runtime.compile_graph(graph, fuse=False)``, like the C++-only path
that builds a Plan straight from the .tmn header.

File format (little-endian): 8 bytes magic b"TMNREF01", u32 count, u32 zero, then count
float32 logits.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from tinymnet import runtime
from tinymnet.formats.tmn import load_tmn
from tinymnet.graph import run_reference

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = REPO / "weights"
MODELS = ["mobilenet_v2_100_224_tf", "mobilenet_v3_small_100_224_tf"]
MAGIC = b"TMNREF01"


def refs_dir() -> Path:
    return Path(os.environ.get("TINYMNET_AARCH64_REFS") or REPO / "build" / "aarch64-refs")


def deterministic_input(shape) -> np.ndarray:
    n = int(np.prod(shape))
    return np.sin(np.arange(n, dtype=np.float64) * 0.001).astype(np.float32).reshape(shape)


def write_logits(path: Path, logits: np.ndarray) -> None:
    flat = np.ascontiguousarray(logits, dtype="<f4").reshape(-1)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC + struct.pack("<II", flat.size, 0))
        f.write(flat.tobytes())
    os.replace(tmp, path)


def read_logits(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    assert raw[:8] == MAGIC
    (count, _zero) = struct.unpack_from("<II", raw, 8)
    return np.frombuffer(raw, "<f4", count, 16)


@pytest.mark.parametrize("name", MODELS)
def test_write_aarch64_reference(name):
    model = load_tmn(WEIGHTS / f"{name}.tmn")
    graph = model.graph
    _, h, w, c = graph.inputs[graph.input_name]
    x = deterministic_input((1, h, w, c))
    logits = runtime.compile_graph(graph, threads=1, fuse=False)(x)
    assert logits.shape[0] == 1 and np.all(np.isfinite(logits))
    # The stored graph and the optimised one must agree, or the reference is not worth having.
    optimised = runtime.compile_graph(graph, threads=1)(x)
    scale = float(np.abs(logits).max())
    assert np.abs(optimised - logits).max() <= 1e-4 * scale
    out = refs_dir()
    out.mkdir(parents=True, exist_ok=True)
    write_logits(out / f"{name}.logits", logits)
    assert np.array_equal(read_logits(out / f"{name}.logits"), logits.reshape(-1))


def test_write_aarch64_panels_model():
    """A float32 model whose GEMM weights are stored packed for 16-wide panels (NEON's, as
    AVX2's): the aarch64 test runs it from the refs folder with the panels used in place by
    the NEON kernels (PANELS_MODEL in .ci/test-aarch64.sh)."""
    from tinymnet.formats.tmn import save_tmn
    from tinymnet.models import build

    graph = build("mobilenet_v3_small", width=0.5, resolution=64, num_classes=10)
    out = refs_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "panels16.tmn"
    save_tmn(path, graph, optimize=True, gemm_panels=16)
    x = deterministic_input((1, 64, 64, 3))
    logits = runtime.compile_graph(load_tmn(path).graph, threads=1, fuse=False)(x)
    np.testing.assert_allclose(logits, run_reference(graph, x), rtol=0,
                               atol=1e-4 * float(np.abs(logits).max()))
    write_logits(out / "panels16.logits", logits)
