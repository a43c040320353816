"""The pretrained models shipped in the package (weights/ -> tinymnet.weights).

They must be present (they ship with tinymnet): nothing here skips for them. The acceptance
check on the 13 fixture photos (preprocessed as reference_predictions.json says: whole image,
``PIL .convert("RGB").resize((W, H), BILINEAR)``) skips only when the fixtures are absent:
top-1 equal to the reference runtime's (TFLite) on >= 11 of 13 for the uint8 models, 13 of 13
and every listed probability within 1e-3 for the float model.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinymnet
from tinymnet import cli
from tinymnet.bundled import (bundled_names, bundled_path, default_model, imagenet_labels,
                              manifest, read_tmn_header, resolve, weights_dir)
from tinymnet.errors import FormatError, TinymnetError

try:
    from _fixtures import fixture, fixtures_dir
except ImportError:  # tests/ made a package
    from ._fixtures import fixture, fixtures_dir

EXPECTED = {
    "mobilenet_v2_100_224_tf": ("mobilenet_v2_1.0_224_quant.tflite", "mobilenet_v2", True),
    "mobilenet_v3_small_100_224_tf": ("mobilenet_v3_small_1.0_224_uint8.tflite",
                                      "mobilenet_v3_small", True),
    "mobilenet_v1_025_224_tf": ("mobilenet_v1_0.25_224_float.tflite", "mobilenet_v1", False),
}
MIN_QUANT_TOP1 = 11


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def test_bundled_models_are_installed_and_match_the_manifest():
    assert bundled_names() == list(EXPECTED)
    assert default_model() == "mobilenet_v2_100_224_tf"
    total = 0
    for name, entry in manifest()["models"].items():
        path = bundled_path(name)
        assert os.path.isfile(path), path
        size = os.path.getsize(path)
        total += size
        assert entry["bytes"] == size
        assert entry["sha256"] == _sha256(path), f"{name}: rebuild with weights/build.py"
        assert entry["source"]["file"].endswith(EXPECTED[name][0])
        assert entry["source"]["licence"].startswith("Apache-2.0")
        assert entry["fixture_top1"]["of"] == 13
    assert total < 12e6, f"bundled models take {total / 1e6:.1f} MB"
    notice = (weights_dir() / "NOTICE").read_text()
    for src, _, _ in EXPECTED.values():
        assert src in notice
    assert "Apache" in notice and "google-coral/test_data" in notice


@pytest.mark.parametrize("name", list(EXPECTED))
def test_bundled_model_contents(name):
    from tinymnet.formats.tmn import load_tmn
    from tinymnet.info import info_totals

    src, arch, quantized = EXPECTED[name]
    header = read_tmn_header(bundled_path(name))
    labels = header["labels"]
    assert len(labels) == 1000 and labels[0].startswith("tench") and "background" not in labels
    meta = header["graph"]["meta"]
    assert meta["label_offset"] == 1 and meta["num_classes"] == 1001 and meta["arch"] == arch
    prov = header["provenance"]
    assert prov["source"] == src and prov["licence"].startswith("Apache-2.0")
    assert prov["importer"] == "tinymnet.importers.tflite"
    assert header["preprocess"]["input_size"] == [224, 224]
    assert header["preprocess"]["crop"] == 0.875
    eight_bit = [t for t in header["tensors"].values() if t["dtype"] in ("uint8", "int8")]
    assert bool(eight_bit) == quantized  # the uint8 models keep their weights as 8 bits
    tm = load_tmn(bundled_path(name))
    assert tm.graph.shapes[tm.graph.outputs[0]][-1] == 1001
    entry = manifest()["models"][name]
    t = info_totals(tm.graph)
    assert entry["macs"] == t["macs"] and entry["params"] == t["params"]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_bundled_models_load_by_the_fast_path(name):
    """Stored optimised: load builds the plan from the mapped file (no passes, no Python copy
    of the weights) and computes what compiling the Python graph computes: exactly, but for
    the one-pixel layers of the 8-bit models, which run on their 8-bit weights there (the
    Python graph holds them dequantized) and differ by rounding only."""
    from tinymnet.formats.tmn import load_tmn
    from tinymnet.runtime import compile_graph

    assert "optimized" in read_tmn_header(bundled_path(name))
    model = tinymnet.load(name, threads=1)
    assert model._compiled.graph is None and model._graph is None
    x = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype(np.float32)
    y = model(x)
    ref = compile_graph(load_tmn(bundled_path(name)).graph, threads=1)(x)
    if model.weight_bytes < compile_graph(load_tmn(bundled_path(name)).graph).weight_bytes:
        assert np.max(np.abs(y - ref)) <= 1e-5 * np.max(np.abs(ref))
        assert (y.argmax(-1) == ref.argmax(-1)).all()
    else:
        np.testing.assert_array_equal(y, ref)
    assert model.graph.meta["label_offset"] == 1  # read on first use


def test_imagenet_labels():
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[285] == "Egyptian cat" and labels[933] == "cheeseburger"


def test_load_by_name():
    m = tinymnet.load("mobilenet_v1_025_224_tf")
    assert m.name == "mobilenet_v1_025_224_tf" and m.input_shape == (224, 224, 3)
    assert tinymnet.load().name == "mobilenet_v2_100_224_tf"
    assert tinymnet.load(bundled_path("mobilenet_v1_025_224_tf")).name is None


def test_architecture_names_are_not_models():
    with pytest.raises(TinymnetError, match="architecture, not a bundled model: use "
                                            "mobilenet_v2_100_224_tf"):
        tinymnet.load("mobilenet_v2")
    with pytest.raises(TinymnetError, match="mobilenet_v3_large_100_224_tv"):
        tinymnet.load("mobilenet_v3_large")


def test_unknown_names_and_paths():
    with pytest.raises(TinymnetError, match="mobilenet_v2_100_224_tf, "
                                            "mobilenet_v3_small_100_224_tf, "
                                            "mobilenet_v1_025_224_tf") as e:
        tinymnet.load("resnet50")
    assert "unknown model 'resnet50'" in str(e.value)
    with pytest.raises(FormatError, match="no such file"):
        tinymnet.load("nowhere/model.tmn")
    with pytest.raises(TinymnetError, match="name or a path"):
        resolve(3)


def test_models_command(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name, entry in manifest()["models"].items():
        line = next(ln for ln in out.splitlines() if name in ln)
        t1 = entry["fixture_top1"]
        assert f"{t1['agree']}/13" in line and "224x224" in line
        assert f"{entry['bytes'] / 1e6:.1f} MB" in line
        assert f"{entry['macs'] / 1e6:.1f}M" in line
    assert "mobilenet_v2_100_224_tf (default)" in out
    assert "mobilenet_v3_large_100_224_tv" in out  # downloadable ones are listed too
    assert cli.main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows if r["bundled"]] == list(EXPECTED)


# ---------------------------------------------------------------------------------------------
# acceptance: the fixture photos


def _reference():
    root = fixtures_dir()
    if root is None or not (root / "reference_predictions.json").is_file():
        return None
    with open(root / "reference_predictions.json") as f:
        return json.load(f)


REF = _reference()


@pytest.mark.skipif(REF is None, reason="shared fixtures (reference_predictions.json) not found")
@pytest.mark.parametrize("name", list(EXPECTED))
def test_fixture_photos_top1(name):
    Image = pytest.importorskip("PIL.Image")
    src, _, quantized = EXPECTED[name]
    entry = REF["models"][f"tflite/{src}"]
    photos = sorted(entry["images"])
    paths = [fixture("images", p) for p in photos]
    clf = tinymnet.Classifier(name, preprocess="resize")
    results = clf.classify(paths, top_k=5)

    # the recipe of the JSON, applied by hand, gives the same model input
    with Image.open(paths[0]) as im:
        by_hand = np.asarray(im.convert("RGB").resize((224, 224), Image.BILINEAR))
    np.testing.assert_array_equal(
        clf.prepare(paths[0]),
        tinymnet.preprocess.normalize(by_hand, clf.recipe))

    hits, worst, misses = 0, 0.0, []
    for photo, r in zip(photos, results):
        ref_top5 = entry["images"][photo]
        ours = r["predictions"][0]["class"]
        ref_class = ref_top5[0][0] - 1  # TF index -> ImageNet-1k class
        hits += ours == ref_class
        if ours != ref_class:
            misses.append(f"{photo}: ours {ours} vs {ref_class}")
        assert r["predictions"][0]["label"] == clf.labels[ours]
        scores = {p["class"]: p["score"] for p in r["predictions"]}
        worst = max([worst] + [abs(scores[i - 1] - p) for i, p, _ in ref_top5 if i - 1 in scores])
    print(f"\n{name}: top-1 {hits}/{len(photos)} as the reference; max |score diff| on shared "
          f"top-5 {worst:.2e}; misses {misses}")
    if quantized:
        assert hits >= MIN_QUANT_TOP1, misses
    else:
        assert hits == len(photos), misses
        assert worst < 1e-3


@pytest.mark.skipif(REF is None, reason="shared fixtures (reference_predictions.json) not found")
def test_default_model_crop_on_expected_classes():
    """With its own (crop) preprocessing the default model names the obvious photos right."""
    clf = tinymnet.Classifier()
    expected = {"cat.bmp": 285, "burger.jpg": 933, "coffee.png": 967, "bird.bmp": 19,
                "hot_dog.jpg": 934, "grace_hopper.bmp": 652}
    results = clf.classify([fixture("images", p) for p in expected], top_k=3)
    for (photo, cls), r in zip(expected.items(), results):
        assert cls in [p["class"] for p in r["predictions"]], (photo, r)


@pytest.mark.skipif(REF is None, reason="shared fixtures (reference_predictions.json) not found")
def test_build_script_reproduces_the_bundled_files(tmp_path):
    """weights/build.py, run into a scratch folder, rebuilds byte-identical files (the sha256
    of manifest.json). A failure here means the converter's output changed: rebuild with
    `python weights/build.py --update` if that is intended."""
    pytest.importorskip("tflite", reason="weights/build.py needs the tflite package")
    script = Path(__file__).resolve().parents[1] / "weights" / "build.py"
    env = dict(os.environ, TINYMNET_FIXTURES=str(fixtures_dir()))
    proc = subprocess.run([sys.executable, str(script), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name, entry in manifest()["models"].items():
        assert _sha256(tmp_path / entry["file"]) == entry["sha256"], name
        assert "(matches the manifest)" in next(ln for ln in proc.stdout.splitlines()
                                                if ln.startswith(name))
