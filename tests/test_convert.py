"""tinymnet.convert: weights -> Graph + labels + preprocess + provenance -> .tmn.

Real files: the EfficientNet-Lite0 .pth fixture (legacy torch.save) and the Keras MobileNet V1
0.25 .h5 fixture, whose top-1 on the fixture photos must match reference_predictions.json.
Synthetic files (no torch needed): builder graphs with random weights written as torchvision /
efficientnet_pytorch / Keras-named files, to check arch/width/classes inference, its errors,
sharded sources, labels and hostile or garbage inputs. Parity with torch, torchvision and timm
themselves is in test_parity_torch.py.
"""
from __future__ import annotations

import hashlib
import json
import pickle

import numpy as np
import pytest

import tinymnet
from tinymnet.convert import (
    ConvertedModel,
    convert,
    convert_file,
    normalize,
    preprocess_recipe,
    read_labels,
)
from tinymnet.errors import FormatError, TinymnetError
from tinymnet.formats import load_state_dict, save_safetensors
from tinymnet.formats.tmn import load_tmn
from tinymnet.graph import run_reference
from tinymnet.models import build

try:
    from _fixtures import fixture
    from test_formats_pth import make_zip, make_zip_pth
except ImportError:  # tests/ made a package
    from ._fixtures import fixture
    from .test_formats_pth import make_zip, make_zip_pth

LITE0 = ("models", "pytorch", "efficientnet-lite0-57934424.pth")
KERAS_V1 = ("models", "keras", "mobilenet_v1_0.25_224_imagenet.h5")
LABELS = ("labels", "imagenet_labels_1001.txt")


def rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def _photo(name, size, preprocess):
    """As reference_predictions.json records: PIL RGB, resize (W, H) bilinear, whole image,
    then the model's normalisation."""
    Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    img = Image.open(fixture("images", name)).convert("RGB").resize(size, Image.BILINEAR)
    return normalize(np.asarray(img), preprocess)


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# The real fixtures


def test_efficientnet_lite0_fixture_converts_and_runs(tmp_path):
    src = fixture(*LITE0)
    out = tmp_path / "lite0.tmn"
    cm = convert_file(src, out)
    assert isinstance(cm, ConvertedModel)
    p = cm.provenance
    assert p["arch"] == "efficientnet_lite0" and p["width"] is None
    assert p["format"] == "pth-legacy" and p["weights_layout"] == "efficientnet_pytorch"
    assert p["source"] == src.name and p["num_classes"] == 1000 and p["bn_eps"] == 1e-3
    assert p["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert p["sources"][0]["bytes"] == src.stat().st_size
    assert cm.preprocess["mean"] == [127.0] * 3 and cm.preprocess["std"] == [128.0] * 3
    assert cm.preprocess["input_size"] == [224, 224] and cm.preprocess["crop"] == 0.875

    model = tinymnet.load(out)
    assert model.provenance["sha256"] == p["sha256"] and model.preprocess == cm.preprocess
    reference_graph = build("efficientnet_lite0", params=load_state_dict(src))
    x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype(np.float32)
    want = run_reference(reference_graph, x)
    got = model(x)
    assert rel_err(got, want) <= 1e-4


def test_keras_mobilenet_v1_fixture_matches_reference_predictions(tmp_path):
    src = fixture(*KERAS_V1)
    labels_file = fixture(*LABELS)
    out = tmp_path / "v1.tmn"
    cm = convert_file(src, out, labels=labels_file)
    p = cm.provenance
    assert (p["arch"], p["width"], p["num_classes"]) == ("mobilenet_v1", 0.25, 1000)
    assert p["format"] == "h5" and p["weights_layout"] == "keras" and p["bn_eps"] == 1e-3
    assert p["labels"] == f"from {labels_file.name}"
    assert cm.preprocess["mean"] == [127.5] * 3 and cm.preprocess["std"] == [127.5] * 3
    # Keras' ZeroPadding2D((0, 1), (0, 1)) + valid before every stride-2 depthwise conv
    assert cm.graph.node("conv_dw_2").attrs["padding"] == (0, 1, 0, 1)
    assert cm.graph.resolved_padding(cm.graph.node("conv1")) == (0, 1, 0, 1)  # TF SAME

    model = tinymnet.load(out)
    assert len(model.labels) == 1000 and model.labels[0].startswith("tench")
    ref = json.loads(fixture("reference_predictions.json").read_text())
    ref = ref["models"]["keras/mobilenet_v1_0.25_224_imagenet.h5"]["images"]
    names = ["cat.bmp", "coffee.png", "burger.jpg", "parrot.jpg", "sunflower.bmp"]
    x = np.stack([_photo(n, (224, 224), model.preprocess) for n in names])
    probs = _softmax(model(x))
    for name, pr in zip(names, probs):
        index, prob, label = ref[name][0]
        assert int(pr.argmax()) == index, name
        assert pr[index] == pytest.approx(prob, abs=0.01), name
        assert model.labels[index] == label or model.labels[index].startswith(label + ","), name


def test_keras_fixture_through_weights_layout_matches_builder(tmp_path):
    # The converter's HWIO -> OIHW / HWC1 -> C1HW / BN renames against a hand mapping.
    from tinymnet.formats import load_keras_h5

    src = fixture(*KERAS_V1)
    w = load_keras_h5(src)
    g = convert(src).graph
    np.testing.assert_array_equal(g.params["conv1.weight"], w["conv1/kernel"].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(g.params["conv_dw_3.weight"][:, 0],
                                  w["conv_dw_3/depthwise_kernel"][..., 0].transpose(2, 0, 1))
    np.testing.assert_array_equal(g.params["conv_pw_5_bn.running_var"],
                                  w["conv_pw_5_bn/moving_variance"])
    assert g.params["conv_preds.weight"].shape == (1000, 256, 1, 1)


# ---------------------------------------------------------------------------------------------
# Synthetic weights: inference of arch, width and classes


def _save(tmp_path, name, params, fmt="safetensors"):
    path = tmp_path / name
    arrays = {k: np.ascontiguousarray(v) for k, v in params.items()}
    if fmt == "safetensors":
        save_safetensors(path, arrays)
    else:
        make_zip_pth(path, arrays)
    return path


@pytest.mark.parametrize(
    "arch, kwargs, fmt",
    [
        ("mobilenet_v2", {"width": 0.35, "num_classes": 10}, "safetensors"),
        ("mobilenet_v2", {"width": 1.4}, "pth"),
        ("mobilenet_v3_large", {"width": 0.75, "num_classes": 7}, "pth"),
        ("mobilenet_v3_small", {"width": 1.0}, "safetensors"),
        ("efficientnet_lite0", {"num_classes": 5}, "safetensors"),
    ],
)
def test_infers_arch_width_and_classes(tmp_path, arch, kwargs, fmt):
    g = build(arch, resolution=64, seed=3, **kwargs)
    path = _save(tmp_path, "weights.bin", g.params, fmt)  # the extension says nothing
    cm = convert(path, resolution=64)
    p = cm.provenance
    assert p["arch"] == arch
    assert p["width"] == kwargs.get("width", None if arch == "efficientnet_lite0" else 1.0)
    assert p["num_classes"] == kwargs.get("num_classes", 1000)
    assert p["format"] == ("pth-zip" if fmt == "pth" else "safetensors")
    assert set(cm.graph.params) == set(g.params)
    for k, v in g.params.items():
        np.testing.assert_array_equal(cm.graph.params[k], v)
    x = np.random.default_rng(1).standard_normal((1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(run_reference(cm.graph, x), run_reference(g, x), rtol=1e-6,
                               atol=1e-6)
    assert cm.preprocess["recipe"] == ("efficientnet_lite" if arch.startswith("eff")
                                       else "torchvision")


def test_v3_head_channels_option():
    # timm keeps the V3 head hidden width unscaled; the builder takes it as head_channels
    g = build("mobilenet_v3_small", width=0.5, head_channels=1024, resolution=64)
    assert g.params["classifier.0.weight"].shape == (1024, 288)
    assert g.params["classifier.3.weight"].shape == (1000, 1024)
    assert build("mobilenet_v3_small", width=0.5).params["classifier.0.weight"].shape[0] == 512


def test_module_prefix_and_num_batches_tracked_are_ignored(tmp_path):
    g = build("mobilenet_v3_small", resolution=64)
    state = {f"module.{k}": v for k, v in g.params.items()}
    state["module.features.0.1.num_batches_tracked"] = np.array(7, np.int64)
    cm = convert(_save(tmp_path, "m.pth", state, "pth"))
    assert cm.provenance["arch"] == "mobilenet_v3_small"


def test_keras_layout_synthetic(tmp_path):
    h5py = pytest.importorskip("h5py", reason="h5py is not installed")
    g = build("mobilenet_v1", width=0.5, num_classes=10, resolution=96, seed=4)
    layers = {}
    for k, v in g.params.items():
        layer, var = k.rsplit(".", 1)
        if layer.endswith("_bn"):
            var = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
                   "running_var": "moving_variance"}[var]
        elif var == "weight" and layer.startswith("conv_dw"):
            var, v = "depthwise_kernel", v.transpose(2, 3, 0, 1)  # (C,1,H,W) -> (H,W,C,1)
        elif var == "weight":
            var, v = "kernel", v.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        layers.setdefault(layer, {})[f"{layer}/{var}:0"] = v
    path = tmp_path / "weights_only"
    with h5py.File(path, "w") as f:  # model.save_weights() layout, no model_config
        f.attrs["layer_names"] = np.array([n.encode() for n in layers])
        for layer, weights in layers.items():
            grp = f.create_group(layer)
            grp.attrs["weight_names"] = np.array([n.encode() for n in weights])
            for wname, arr in weights.items():
                grp.create_dataset(wname, data=arr)
    cm = convert(path, resolution=96)
    p = cm.provenance
    assert (p["arch"], p["width"], p["num_classes"]) == ("mobilenet_v1", 0.5, 10)
    assert cm.preprocess["recipe"] == "tf"
    x = np.random.default_rng(1).standard_normal((1, 96, 96, 3)).astype(np.float32)
    np.testing.assert_allclose(run_reference(cm.graph, x), run_reference(g, x), rtol=1e-6,
                               atol=1e-6)


def test_explicit_options_are_checked(tmp_path):
    g = build("mobilenet_v2", width=0.5, num_classes=10, resolution=64)
    path = _save(tmp_path, "v2.safetensors", g.params)
    assert convert(path, arch="mobilenet_v2", width=0.5, num_classes=10).provenance["width"] == 0.5
    assert convert(path, arch="mobilenetv2_050").provenance["arch"] == "mobilenet_v2"  # timm name
    with pytest.raises(FormatError, match="10 classes, not 1000"):
        convert(path, num_classes=1000)
    with pytest.raises(FormatError, match="do not match mobilenet_v2 width 0.75"):
        convert(path, width=0.75)
    with pytest.raises(FormatError, match="not mobilenet_v1"):
        convert(path, arch="mobilenet_v1")
    with pytest.raises(FormatError, match="do not match mobilenet_v3_small"):
        convert(path, arch="mobilenet_v3_small")
    with pytest.raises(TinymnetError, match="unknown arch 'resnet50'"):
        convert(path, arch="resnet50")
    with pytest.raises(TinymnetError, match="means width 1"):
        convert(path, arch="mobilenetv2_100", width=0.5)


def test_non_standard_width_needs_the_option(tmp_path):
    g = build("mobilenet_v2", width=0.6, resolution=64)
    path = _save(tmp_path, "v2.safetensors", g.params)
    with pytest.raises(FormatError) as e:
        convert(path)
    msg = str(e.value)
    assert "no standard width (1, 0.75, 0.5, 0.35, 1.3, 1.4) fits" in msg and "--width" in msg
    assert str(path) in msg and "\n" not in msg
    assert convert(path, width=0.6).provenance["width"] == 0.6


def test_ambiguous_network_lists_the_candidates(tmp_path):
    g = build("mobilenet_v3_large", resolution=64)
    # a torchvision V3 layout with a block count of neither Large (17) nor Small (13)
    params = {k: v for k, v in g.params.items() if not k.startswith("features.16.")}
    path = _save(tmp_path, "v3.safetensors", params)
    with pytest.raises(FormatError, match=r"ambiguous: candidates mobilenet_v3_large, "
                                          r"mobilenet_v3_small; pass arch= \(--arch\)"):
        convert(path)
    with pytest.raises(FormatError, match="1 missing|missing"):
        convert(path, arch="mobilenet_v3_large")


def test_unknown_or_headless_weights(tmp_path):
    path = _save(tmp_path, "r.safetensors", {"layer1.0.conv1.weight": np.ones((4, 3, 3, 3),
                                                                              np.float32)})
    with pytest.raises(FormatError, match="cannot tell which network"):
        convert(path)
    g = build("mobilenet_v2", resolution=64)
    headless = {k: v for k, v in g.params.items() if not k.startswith("classifier")}
    with pytest.raises(FormatError, match="headless"):
        convert(_save(tmp_path, "h.safetensors", headless))


def test_bad_tensor_values(tmp_path):
    g = build("mobilenet_v3_small", resolution=64)
    nan = dict(g.params)
    nan["features.3.block.0.1.running_var"] = np.full_like(nan["features.3.block.0.1.running_var"],
                                                          np.nan)
    with pytest.raises(FormatError, match="NaN or infinite"):
        convert(_save(tmp_path, "nan.safetensors", nan))
    ints = dict(g.params)
    ints["features.0.0.weight"] = np.ones(ints["features.0.0.weight"].shape, np.bool_)
    with pytest.raises(FormatError, match="not a number type"):
        convert(_save(tmp_path, "bool.safetensors", ints))


def test_sharded_sources_are_merged(tmp_path):
    g = build("mobilenet_v3_small", resolution=64)
    keys = sorted(g.params)
    a = _save(tmp_path, "model-00001-of-00002.safetensors", {k: g.params[k] for k in keys[::2]})
    b = _save(tmp_path, "model-00002-of-00002.pth", {k: g.params[k] for k in keys[1::2]}, "pth")
    cm = convert([a, b])
    assert cm.provenance["arch"] == "mobilenet_v3_small"
    assert [s["file"] for s in cm.provenance["sources"]] == [a.name, b.name]
    assert "sha256" not in cm.provenance  # per source only, when there are several
    with pytest.raises(FormatError, match="more than one source file"):
        convert([a, a])


def test_tmn_round_trip_keeps_everything(tmp_path):
    g = build("mobilenet_v2", width=0.35, num_classes=3, resolution=64)
    src = _save(tmp_path, "v2.safetensors", g.params)
    labels = tmp_path / "labels.txt"
    labels.write_text("ant\nbee\ncow\n")
    out = tmp_path / "v2.tmn"
    cm = convert_file(src, out, labels=labels, resolution=64)
    tm = load_tmn(out)
    assert tm.labels == ["ant", "bee", "cow"] and cm.labels == tm.labels
    assert tm.preprocess == cm.preprocess and tm.provenance == cm.provenance
    assert tm.graph.meta["arch"] == "mobilenet_v2"
    assert tm.graph.meta["weights_layout"] == "torchvision"
    # a .tmn is a convertible source too (passed through)
    again = convert(out)
    assert again.labels == tm.labels and again.provenance["arch"] == "mobilenet_v2"
    model = tinymnet.load(out)
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
    assert rel_err(model(x), run_reference(g, x)) <= 1e-4


# ---------------------------------------------------------------------------------------------
# Labels and preprocessing


def test_labels(tmp_path, monkeypatch):
    f = tmp_path / "l.txt"
    f.write_text("background\n" + "\n".join(f"c{i}" for i in range(4)) + "\n\n")
    assert read_labels(f, 4) == ["c0", "c1", "c2", "c3"]  # background dropped for 4 classes
    assert read_labels(f, 5)[0] == "background"
    with pytest.raises(TinymnetError, match="5 labels for a model with 7 classes"):
        read_labels(f, 7)
    g = build("mobilenet_v3_small", num_classes=4, resolution=64)
    src = _save(tmp_path, "s.safetensors", g.params)
    cm = convert(src)
    assert cm.labels is None and cm.provenance["labels"].startswith("none embedded")
    assert convert(src, labels=["a", "b", "c", "d"]).labels == ["a", "b", "c", "d"]
    with pytest.raises(TinymnetError, match="3 labels given"):
        convert(src, labels=["a", "b", "c"])
    # $TINYMNET_LABELS is used for ImageNet-sized heads only
    monkeypatch.setenv("TINYMNET_LABELS", str(f))
    assert convert(src).labels is None


def test_preprocess_recipes():
    tv = preprocess_recipe("torchvision")
    assert tv["steps"][0] == {"op": "resize_short_side", "size": 256, "interpolation": "bilinear"}
    assert tv["steps"][1] == {"op": "center_crop", "size": [224, 224]}
    assert tv["mean"] == pytest.approx([123.675, 116.28, 103.53])
    assert tv["std"] == pytest.approx([58.395, 57.12, 57.375])
    assert tv["layout"] == "NHWC" and tv["color"] == "RGB" and tv["range"] == 255
    assert preprocess_recipe("timm")["resize"] == "bicubic"
    tf = preprocess_recipe("tf", 192)
    assert tf["input_size"] == [192, 192] and tf["crop"] == 0.875
    px = np.array([[[0, 127.5, 255]]], np.float32)
    np.testing.assert_allclose(normalize(px, tf), [[[-1, 0, 1]]])
    np.testing.assert_allclose(normalize(np.full((1, 1, 3), 255.0), tv)[0, 0],
                               (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225],
                               rtol=1e-5)
    with pytest.raises(ValueError):
        preprocess_recipe("caffe")


# ---------------------------------------------------------------------------------------------
# Hostile and garbage inputs: always a FormatError naming the file


def _garbage_files(tmp_path):
    rng = np.random.default_rng(0)
    files = {}
    files["empty"] = tmp_path / "empty.pth"
    files["empty"].write_bytes(b"")
    files["random"] = tmp_path / "random.safetensors"
    files["random"].write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    files["text"] = tmp_path / "notes.h5"
    files["text"].write_text("this is not a model\n")
    files["plain pickle"] = tmp_path / "plain.pth"
    files["plain pickle"].write_bytes(pickle.dumps({"a": [1, 2, 3]}, protocol=2))
    g = build("mobilenet_v3_small", resolution=64)
    whole = _save(tmp_path, "whole.safetensors", g.params)
    files["truncated safetensors"] = tmp_path / "trunc.safetensors"
    files["truncated safetensors"].write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    zipped = _save(tmp_path, "whole.pth", g.params, "pth")
    files["truncated pth"] = tmp_path / "trunc.pth"
    files["truncated pth"].write_bytes(zipped.read_bytes()[: zipped.stat().st_size // 3])
    marker = tmp_path / "PWNED"
    evil = b"\x80\x02cposix\nsystem\nX" + len(f"touch {marker}").to_bytes(4, "little") + \
        f"touch {marker}".encode() + b"\x85R."
    files["hostile pickle"] = make_zip(tmp_path / "evil.pth", evil, [])
    files["directory"] = tmp_path
    files["missing"] = tmp_path / "does-not-exist.pth"
    return files, marker


def test_garbage_and_hostile_inputs_give_format_errors(tmp_path):
    files, marker = _garbage_files(tmp_path)
    for what, path in files.items():
        with pytest.raises(FormatError) as e:
            convert(path)
        assert str(path) in str(e.value), what
    assert not marker.exists(), "a pickled global was executed"


def test_unsupported_graph_formats_say_so(tmp_path):
    onnx_like = tmp_path / "m.onnx"
    onnx_like.write_bytes(b"\x08\x07\x12\x04test")  # an ONNX ModelProto prefix, nothing else
    with pytest.raises(FormatError):
        convert(onnx_like)


def test_tflite_goes_through_the_graph_importer(tmp_path):
    pytest.importorskip("tinymnet.importers.tflite", reason="no TFLite importer yet")
    src = fixture("models", "tflite", "mobilenet_v1_0.25_224_float.tflite")
    out = tmp_path / "f.tmn"
    cm = convert_file(src, out, labels=fixture(*LABELS))
    assert cm.provenance["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert cm.provenance["format"] == "tflite"
    assert len(cm.labels) == 1001 and cm.labels[0] == "background"
    model = tinymnet.load(out)
    x = _photo("cat.bmp", (224, 224), model.preprocess)[None]
    assert model(x).shape == (1, 1001)


@pytest.mark.parametrize("parts", [KERAS_V1, LITE0], ids=["keras_v1_025", "efficientnet_lite0"])
def test_float_fixtures_match_all_reference_predictions(tmp_path, parts):
    """Float models: top-1 on all 13 photos and every reference top-5 probability within 1e-3."""
    convert_file(fixture(*parts), tmp_path / "m.tmn")
    model = tinymnet.load(tmp_path / "m.tmn")
    ref = json.loads(fixture("reference_predictions.json").read_text())["models"]
    ref = ref["/".join(parts[1:])]["images"]
    assert len(ref) == 13
    names = sorted(ref)
    x = np.stack([_photo(n, (224, 224), model.preprocess) for n in names])
    probs = _softmax(model(x))
    for name, pr in zip(names, probs):
        top = ref[name]
        assert int(pr.argmax()) == top[0][0], name
        for index, prob, _label in top:
            assert abs(pr[index] - prob) <= 1e-3, (name, index, pr[index], prob)
