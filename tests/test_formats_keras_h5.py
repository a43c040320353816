"""tinymnet.formats.keras_h5: Keras 2 HDF5 weights read with h5py, keyed "layer/var"."""
from __future__ import annotations

import numpy as np
import pytest

from tinymnet.errors import FormatError
from tinymnet.formats import detect_format, load_keras_h5, load_weights, read_keras_model_config

try:
    from _fixtures import fixture
except ImportError:  # tests/ made a package
    from ._fixtures import fixture

h5py = pytest.importorskip("h5py", reason="h5py (optional extra) is not installed")


def test_mobilenet_v1_fixture():
    path = fixture("models", "keras", "mobilenet_v1_0.25_224_imagenet.h5")
    assert detect_format(path) == "h5"
    w = load_keras_h5(path)
    # conv1 + bn, 13 x (dw + bn + pw + bn), conv_preds kernel + bias
    assert len(w) == 5 + 13 * 10 + 2
    assert sum(v.size for v in w.values()) == 475_544  # Keras' parameter count for 0.25/224
    assert list(w)[:6] == ["conv1/kernel", "conv1_bn/gamma", "conv1_bn/beta",
                           "conv1_bn/moving_mean", "conv1_bn/moving_variance",
                           "conv_dw_1/depthwise_kernel"]
    assert w["conv1/kernel"].shape == (3, 3, 3, 8)  # HWIO
    assert w["conv_dw_1/depthwise_kernel"].shape == (3, 3, 8, 1)  # H W C mult
    assert w["conv_pw_1/kernel"].shape == (1, 1, 8, 16)
    assert w["conv_pw_13_bn/moving_variance"].shape == (256,)
    assert w["conv_preds/kernel"].shape == (1, 1, 256, 1000)
    assert w["conv_preds/bias"].shape == (1000,)
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in w.values())
    assert (w["conv1_bn/moving_variance"] > 0).all()
    assert load_weights(path).keys() == w.keys()

    cfg = read_keras_model_config(path)
    assert cfg["class_name"] == "Functional"
    assert cfg["keras_version"] == "2.8.0"
    names = [layer["config"]["name"] for layer in cfg["config"]["layers"]]
    assert "conv_dw_13" in names and "conv_preds" in names


def _write_weights_file(path, layers, root_attrs=True):
    """layers: {layer: {weight_name: array}} in the save_weights() layout."""
    with h5py.File(path, "w") as f:
        root = f if root_attrs else f.create_group("model_weights")
        root.attrs["layer_names"] = np.array([n.encode() for n in layers])
        for layer, weights in layers.items():
            g = root.create_group(layer)
            g.attrs["weight_names"] = np.array([n.encode() for n in weights])
            for wname, arr in weights.items():
                g.create_dataset(wname, data=arr)
    return path


def test_weights_only_and_model_layouts(tmp_path):
    k = np.arange(24, dtype=np.float32).reshape(2, 2, 3, 2)
    layers = {"input_1": {}, "conv": {"conv/kernel:0": k, "conv/bias:0": np.ones(2, np.float32)},
              "bn": {"bn/gamma:0": np.ones(2, np.float32)}}
    for root_attrs in (True, False):
        p = _write_weights_file(tmp_path / f"w{root_attrs}.h5", layers, root_attrs)
        w = load_keras_h5(p)
        assert list(w) == ["conv/kernel", "conv/bias", "bn/gamma"]
        np.testing.assert_array_equal(w["conv/kernel"], k)
        assert read_keras_model_config(p) is None


def test_nested_model_uses_sublayer_names(tmp_path):
    layers = {"input_1": {},
              "mobilenet_0.25": {"conv1/kernel:0": np.zeros((3, 3, 3, 8), np.float32),
                                 "conv1_bn/gamma:0": np.ones(8, np.float32),
                                 "conv_pw_1/kernel:0": np.zeros((1, 1, 8, 16), np.float32)},
              "dense": {"dense/kernel:0": np.zeros((16, 4), np.float32),
                        "dense/bias:0": np.zeros(4, np.float32)}}
    w = load_keras_h5(_write_weights_file(tmp_path / "nested.h5", layers))
    assert list(w) == ["conv1/kernel", "conv1_bn/gamma", "conv_pw_1/kernel", "dense/kernel", "dense/bias"]


def test_non_keras_and_keras3_files(tmp_path):
    p = tmp_path / "plain.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(FormatError, match="without Keras weights"):
        load_keras_h5(p)
    q = tmp_path / "k3.weights.h5"
    with h5py.File(q, "w") as f:
        f.create_group("layers").create_group("conv").create_group("vars").create_dataset("0", data=np.zeros(3))
        f.create_group("vars")
    with pytest.raises(FormatError, match="Keras 3"):
        load_keras_h5(q)


def test_listed_weight_missing(tmp_path):
    p = tmp_path / "missing.h5"
    with h5py.File(p, "w") as f:
        f.attrs["layer_names"] = np.array([b"conv"])
        f.create_group("conv").attrs["weight_names"] = np.array([b"conv/kernel:0"])
    with pytest.raises(FormatError, match="listed but missing"):
        load_keras_h5(p)


def test_huge_unwritten_dataset_is_refused(tmp_path):
    p = tmp_path / "huge.h5"
    with h5py.File(p, "w") as f:
        f.attrs["layer_names"] = np.array([b"conv"])
        g = f.create_group("conv")
        g.attrs["weight_names"] = np.array([b"conv/kernel:0"])
        g.create_dataset("conv/kernel:0", shape=(1 << 20, 1 << 20), dtype="f4", chunks=(64, 64))
    assert p.stat().st_size < 1 << 20
    with pytest.raises(FormatError, match="larger than the file"):
        load_keras_h5(p)


def test_non_numeric_weight(tmp_path):
    p = _write_weights_file(tmp_path / "s.h5", {"l": {"l/x:0": np.array([b"a", b"b"])}})
    with pytest.raises(FormatError, match="non-numeric"):
        load_keras_h5(p)
