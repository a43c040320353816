"""Real pretrained TFLite models imported as graphs, run in fp32 on the C++ kernels, against
the reference predictions recorded with the TFLite interpreter (reference_predictions.json).

Float models must reproduce every top-1 and every listed probability within 1e-3; the
uint8/int8 models run here in float (their weights dequantized), so they only have to agree
on >= 11 of the 13 photos (the reference runs integer kernels; several photos are near-ties
in 1/256 probability steps).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

try:
    from _fixtures import fixture, fixtures_dir
except ImportError:  # tests/ made a package
    from ._fixtures import fixture, fixtures_dir

pytest.importorskip("tflite", reason="tflite (optional extra) is not installed")
Image = pytest.importorskip("PIL.Image", reason="Pillow is needed to read the photos")

from tinymnet.importers import apply_recipe, import_tflite  # noqa: E402
from tinymnet.runtime import compile_graph  # noqa: E402


def _reference():
    root = fixtures_dir()
    if root is None or not (root / "reference_predictions.json").is_file():
        return None
    with open(root / "reference_predictions.json") as f:
        return json.load(f)


REF = _reference()
TFLITE_KEYS = sorted(k for k in (REF or {}).get("models", {}) if k.startswith("tflite/"))
MIN_QUANT_TOP1 = 11


def _paths(key):
    return [fixture("models", "tflite", p) for p in key[len("tflite/"):].split("+")]


@pytest.fixture(scope="module")
def models():
    """key -> (Imported, CompiledModel), imported once per module."""
    cache = {}

    def get(key):
        if key not in cache:
            imp = import_tflite(_paths(key))
            cache[key] = (imp, compile_graph(imp.graph))
        return cache[key]

    return get


@pytest.fixture(scope="module")
def photos():
    """(file, (W, H)) -> uint8 RGB array, resized as the JSON says (whole image, bilinear)."""
    cache = {}

    def get(name, size):
        if (name, size) not in cache:
            with Image.open(fixture("images", name)) as im:
                cache[name, size] = np.asarray(im.convert("RGB").resize(size, Image.BILINEAR))
        return cache[name, size]

    return get


def _softmax(y):
    y = np.asarray(y, np.float64)
    e = np.exp(y - y.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _predict(models, photos, key):
    imp, cm = models(key)
    h, w = imp.preprocess["input_size"]
    names = sorted(REF["models"][key]["images"])
    batch = np.concatenate([apply_recipe(imp.preprocess, photos(n, (w, h))) for n in names])
    return names, _softmax(cm(batch))


@pytest.mark.skipif(REF is None, reason="shared fixtures (reference_predictions.json) not found")
@pytest.mark.parametrize("key", TFLITE_KEYS)
def test_top1_matches_reference(models, photos, key):
    entry = REF["models"][key]
    imp, _ = models(key)
    assert imp.num_classes == entry["classes"] == 1001 and imp.label_offset == 1
    assert list(imp.preprocess["input_size"]) + [3] == list(entry["input"])
    names, probs = _predict(models, photos, key)
    hits, worst, misses = 0, 0.0, []
    for name, p in zip(names, probs):
        top5 = entry["images"][name]
        ours = int(np.argmax(p))
        hits += ours == top5[0][0]
        if ours != top5[0][0]:
            misses.append(f"{name}: ours {ours} ({p[ours]:.3f}) vs {top5[0][0]} ({top5[0][1]})")
        worst = max(worst, max(abs(p[i] - ref_p) for i, ref_p, _ in top5))
    print(f"\n{key}: top-1 {hits}/{len(names)} vs reference, max |prob diff| {worst:.2e}"
          + (f"; misses: {misses}" if misses else ""))
    if entry["input_dtype"] == "float32":
        assert hits == len(names), misses
        assert worst < 1e-3
    else:
        assert hits >= MIN_QUANT_TOP1, misses


@pytest.mark.skipif(REF is None, reason="shared fixtures (reference_predictions.json) not found")
def test_recipes_of_the_fixture_inputs(models):
    """The recipe reproduces the input conventions SOURCES.md lists."""
    float_key = "tflite/mobilenet_v1_0.25_224_float.tflite"
    imp, _ = models(float_key)
    assert imp.preprocess["mean"] == [127.5] * 3 and imp.preprocess["std"] == [127.5] * 3
    assert imp.preprocess["input_dtype"] == "float32" and imp.quantized == {}
    imp, _ = models("tflite/mobilenet_v1_0.25_128_quant.tflite")
    assert imp.preprocess["mean"] == [128.0] * 3 and imp.preprocess["std"] == [128.0] * 3
    assert imp.preprocess["input_quantization"] == {"scale": 0.0078125, "zero_point": 128}
    # int8 PTQ: uint8 input (scale 1/127.5, zp 127) then a QUANTIZE op; the real value is kept
    imp, _ = models("tflite/tf2_mobilenet_v2_1.0_224_ptq.tflite")
    assert imp.preprocess["mean"] == [127.0] * 3
    assert np.allclose(imp.preprocess["std"], 127.5, rtol=1e-6)
    assert "int8 per-channel" in imp.provenance["weight_dtypes"]
    for k in ("input_size", "layout", "range", "crop", "resize", "color"):
        assert k in imp.preprocess


@pytest.mark.skipif(REF is None, reason="shared fixtures (reference_predictions.json) not found")
@pytest.mark.parametrize("key", ["tflite/mobilenet_v3_small_1.0_224_uint8.tflite",
                                 "tflite/tf2_mobilenet_v2_1.0_224_ptq.tflite"])
def test_tmn_round_trip_keeps_8bit_weights(models, photos, key, tmp_path):
    import tinymnet
    from tinymnet.formats.tmn import load_tmn, save_tmn

    imp, cm = models(key)
    assert imp.quantized, "the quantized model should carry its 8-bit weights"
    q_path, f_path = tmp_path / "q.tmn", tmp_path / "f.tmn"
    save_tmn(q_path, imp.graph, preprocess=imp.preprocess, provenance=imp.provenance,
             quantized=imp.quantized)
    save_tmn(f_path, imp.graph, preprocess=imp.preprocess, provenance=imp.provenance)
    q_size, f_size = os.path.getsize(q_path), os.path.getsize(f_path)
    print(f"\n{key}: .tmn {q_size / 1e6:.2f} MB with 8-bit weights, {f_size / 1e6:.2f} MB float")
    assert q_size < 0.35 * f_size

    tm = load_tmn(q_path)
    for name in imp.quantized:  # lossless: the 8 bits come back exactly
        assert np.array_equal(tm.graph.params[name], imp.graph.params[name]), name
    model = tinymnet.load(q_path)
    assert model.preprocess == imp.preprocess
    h, w = imp.preprocess["input_size"]
    x = np.concatenate([apply_recipe(model.preprocess, photos(n, (w, h)))
                        for n in ("cat.bmp", "coffee.png")])
    np.testing.assert_array_equal(model(x), cm(x))
