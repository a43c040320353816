"""Fuzz targets: one per file parser, shared by the atheris runner (fuzz/fuzz_one.py) and the
regression test that replays the inputs it found (tests/test_fuzz_regressions.py, no atheris).

A target is ``check(path)``: it feeds one file to a parser (and, where the parser accepts it,
to the next stage: the graph importer, the restricted unpickler's materializer, ...). The only
exceptions a parser may raise on a hostile file are tinymnet's own (TinymnetError: FormatError
/ ImageError), and their message must name the file; anything else escaping ``check`` is a
finding. So is a FormatError caused by a MemoryError: it means a size field in the file made
a loader try an allocation the file could not justify (the runner caps the address space).

``seeds(directory)`` writes small valid files made with the repo's own writers and the tests'
helpers (small seeds keep the fuzzer fast; the real fixtures are megabytes).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"

# Modules a run imports (and atheris instruments) before the seeds are made.
MODULES = ("tinymnet.errors", "tinymnet.graph", "tinymnet.formats", "tinymnet.formats.detect",
           "tinymnet.formats.tmn", "tinymnet.formats.pth", "tinymnet.formats.safetensors",
           "tinymnet.formats.tflite", "tinymnet.formats.keras_h5", "tinymnet.formats.onnx_reader",
           "tinymnet.formats._common", "tinymnet.importers", "tinymnet.importers._common",
           "tinymnet.importers.tflite", "tinymnet.importers.onnx", "tinymnet.preprocess")


class Finding(AssertionError):
    """A parser misbehaved in a way that is not an exception of the wrong type."""


def _expect_tinymnet_error(path, fn, *args, **kw):
    """Call fn; return its result, or None if it raised a proper TinymnetError."""
    from tinymnet.errors import TinymnetError

    try:
        return fn(*args, **kw)
    except TinymnetError as exc:
        if isinstance(exc.__cause__, MemoryError):
            raise Finding(f"{fn.__name__} ran out of memory: a size field was trusted "
                          f"before it was checked: {exc}") from exc
        if os.fspath(path) not in str(exc):
            raise Finding(f"{fn.__name__}: error message does not name the file: {exc}") from exc
        return None


# ---------------------------------------------------------------------------------------
# checks


def check_tmn(path):
    from tinymnet.formats import detect_format
    from tinymnet.formats.tmn import load_tmn

    _expect_tinymnet_error(path, detect_format, path)
    _expect_tinymnet_error(path, load_tmn, path)
    # Without the checksum the fuzzer reaches the JSON header and the tensor table.
    _expect_tinymnet_error(path, load_tmn, path, verify=False)
    _check_tmn_plan(path)


def _check_tmn_plan(path):
    """The C++ loader `tinymnet.load` tries first: map the file, build the plan from its
    header and weights, run it. A hostile file can carry a valid checksum, so the unverified
    read stands for one: every failure must be a ValueError naming the file, never a crash
    or a MemoryError from a size the file did not justify."""
    from tinymnet import _C

    for verify in (True, False):
        try:
            plan = _C.TmnFile(os.fspath(path), verify).plan(1, True)
        except MemoryError as exc:
            raise Finding(f"the C++ loader tried a huge allocation: {exc}") from exc
        except ValueError as exc:
            if os.fspath(path) not in str(exc):
                raise Finding(f"C++ loader error does not name the file: {exc}") from exc
            continue
        dims_in, dims_out = tuple(plan.input_dims), tuple(plan.output_dims)
        if np.prod(dims_in) <= 1 << 20 and np.prod(dims_out) <= 1 << 20:
            plan.run(np.zeros((1,) + dims_in, np.float32), np.empty((1,) + dims_out, np.float32))


def check_pth(path):
    from tinymnet.formats import load_checkpoint, load_state_dict

    _expect_tinymnet_error(path, load_state_dict, path)
    _expect_tinymnet_error(path, load_checkpoint, path)


def check_safetensors(path):
    from tinymnet.formats import load_safetensors, load_weights

    _expect_tinymnet_error(path, load_safetensors, path, with_metadata=True)
    _expect_tinymnet_error(path, load_weights, path)


def check_tflite(path):
    from tinymnet.formats import load_tflite
    from tinymnet.importers import import_tflite

    if _expect_tinymnet_error(path, load_tflite, path) is not None:
        _expect_tinymnet_error(path, import_tflite, [path])


def check_h5(path):
    from tinymnet.formats import load_keras_h5, read_keras_model_config

    _expect_tinymnet_error(path, load_keras_h5, path)
    _expect_tinymnet_error(path, read_keras_model_config, path)


def check_onnx(path):
    from tinymnet.formats import load_onnx
    from tinymnet.importers import import_onnx

    if _expect_tinymnet_error(path, load_onnx, path) is not None:
        _expect_tinymnet_error(path, import_onnx, path)


def check_image(path):
    from tinymnet.preprocess import load_image

    img = _expect_tinymnet_error(path, load_image, path)
    if img is not None and (img.mode != "RGB" or min(img.size) < 1):
        raise Finding(f"load_image returned a {img.mode} image of size {img.size}")


# ---------------------------------------------------------------------------------------
# seeds


def _test_helpers(module):
    """A helper module from tests/ (the seeds reuse the tests' tiny-file writers)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import importlib

    return importlib.import_module(module)


def seeds_tmn(d: Path):
    from tinymnet.formats.tmn import quantize_per_channel, save_tmn
    from tinymnet.graph import GraphBuilder

    b = GraphBuilder("seed", (5, 6, 3))
    x = b.conv2d("input", "c1", 4, 3, stride=2, padding="same", bias=True, activation="relu6")
    x = b.conv2d(x, "dw", 4, 3, padding=1, groups=4, bias=False, activation="hardswish")
    x = b.squeeze_excite(x, "se", 2)
    x = b.add("flatten", [b.add("global_avg_pool", [x], "gap")], "flat")
    y = b.linear(x, "fc", 3)
    g = b.build([y])
    save_tmn(d / "float.tmn", g, labels=["a", "b", "c"], preprocess={"input_size": [5, 6]})
    save_tmn(d / "q8.tmn", g, quantized={"c1.weight": quantize_per_channel(g.params["c1.weight"])})
    # optimised, with the SE and classifier weights stored as GEMM panels (the C++ fast path)
    save_tmn(d / "panels.tmn", g, optimize=True, gemm_panels=8)


def seeds_pth(d: Path):
    pth = _test_helpers("test_formats_pth")
    rng = np.random.default_rng(0)
    pth.make_zip_pth(d / "zip.pth", {"w": rng.standard_normal((2, 3)).astype(np.float32),
                                     "n": np.array(3, np.int64)})
    for layout in ("zip", "legacy"):
        sub = d / layout
        sub.mkdir()
        path, _ = pth._synthetic(sub, layout)
        os.replace(path, d / f"synthetic_{layout}.pth")
        sub.rmdir()


def seeds_safetensors(d: Path):
    from tinymnet.formats import save_safetensors

    rng = np.random.default_rng(0)
    save_safetensors(d / "a.safetensors", {"w": rng.standard_normal((2, 3)).astype(np.float32),
                                           "b": np.arange(3, dtype=np.int64),
                                           "h": np.ones(2, np.float16)}, metadata={"k": "v"})
    save_safetensors(d / "empty.safetensors", {"e": np.zeros((0, 4), np.float32)})


def seeds_tflite(d: Path):
    t = _test_helpers("test_import_tflite")
    t._convs_model(d / "convs.tflite")
    t._eltwise_model(d / "eltwise.tflite")


def seeds_h5(d: Path):
    h5 = _test_helpers("test_formats_keras_h5")
    k = np.arange(24, dtype=np.float32).reshape(2, 2, 3, 2)
    h5._write_weights_file(d / "weights.h5", {"input_1": {}, "conv": {
        "conv/kernel:0": k, "conv/bias:0": np.ones(2, np.float32)}})
    import h5py

    with h5py.File(d / "model.h5", "w") as f:
        f.attrs["model_config"] = '{"class_name": "Functional", "config": {"layers": []}}'
        f.attrs["keras_version"] = "2.8.0"
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([b"dense"])
        layer = g.create_group("dense")
        layer.attrs["weight_names"] = np.array([b"dense/kernel:0"])
        layer.create_dataset("dense/kernel:0", data=np.eye(3, dtype=np.float32))


def seeds_onnx(d: Path):
    t = _test_helpers("test_import_onnx")
    t._tiny_cnn(d / "cnn.onnx")
    t._tiny_shape_reshape(d / "reshape.onnx")


def seeds_image(d: Path):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    im = Image.fromarray(pixels, "RGB")
    im.save(d / "rgb.png")
    im.convert("L").save(d / "grey.png")
    im.convert("P").save(d / "palette.gif")
    im.save(d / "q.jpg", quality=80)
    im.save(d / "p.jpg", quality=80, progressive=True)
    im.save(d / "b.bmp")
    im.save(d / "lossless.webp", lossless=True)
    Image.fromarray(np.dstack([pixels, pixels[..., :1]]), "RGBA").save(d / "rgba.png")


TARGETS = {
    "tmn": (check_tmn, seeds_tmn),
    "pth": (check_pth, seeds_pth),
    "safetensors": (check_safetensors, seeds_safetensors),
    "tflite": (check_tflite, seeds_tflite),
    "h5": (check_h5, seeds_h5),
    "onnx": (check_onnx, seeds_onnx),
    "image": (check_image, seeds_image),
}
