"""tinymnet.preprocess against the reference pipelines.

How closely (checked below):

* torchvision recipe (``crop``) vs ``transforms.Resize(256) + CenterCrop(224)`` on the PIL
  image (what torchvision's ImageNet evaluation does, PIL resampling with antialias): the
  resized/cropped uint8 pixels are identical, bilinear (torchvision) and bicubic (timm); after
  ``ToTensor + Normalize`` the float input differs by < 2e-6 (float32 rounding of
  (x - 255 m) / (255 s) vs (x / 255 - m) / s).
* TF recipe (``crop``): a centred square of 87.5% of the short side then a bilinear resize:
  identical uint8 pixels to torchvision's ``CenterCrop(side) + Resize((H, W))``.
* ``resize``: identical to ``PIL .convert("RGB").resize((W, H), BILINEAR)``, the recipe of
  the fixtures' reference_predictions.json.
* Float TF input: exactly (x - 127.5) / 127.5 in [-1, 1]; uint8 TF input: exactly
  (x - zero_point) * scale.

The torchvision comparisons skip when torchvision cannot be imported.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

from tinymnet.convert import preprocess_recipe  # noqa: E402
from tinymnet.importers import make_recipe  # noqa: E402
from tinymnet.preprocess import (ImageError, fit, load_image, normalize, pipeline,  # noqa: E402
                                 prepare)

try:
    from _classify_helpers import random_rgb, truncated_jpeg, write_image
    from _torch_oracles import stub_torchvision_registrations
except ImportError:  # tests/ made a package
    from ._classify_helpers import random_rgb, truncated_jpeg, write_image
    from ._torch_oracles import stub_torchvision_registrations

# (h, w): landscape, portrait, square, smaller than the crop (upscaled), odd sizes
SIZES = [(240, 320), (333, 250), (256, 256), (120, 90), (481, 641), (224, 500)]
TF_UINT8 = make_recipe((224, 224), 128, 128, input_dtype="uint8", crop=0.875,
                       quantization=(0.0078125, 128))
TF_FLOAT = make_recipe((224, 224), 127.5, 127.5, crop=0.875)


def _transforms():
    try:
        import torch  # noqa: F401

        stub_torchvision_registrations()
        import torchvision.transforms as T
    except Exception as e:  # noqa: BLE001 - optional oracle
        pytest.skip(f"torchvision is not importable: {e}")
    return T


@pytest.mark.parametrize("recipe_name,interp", [("torchvision", "BILINEAR"),
                                                ("timm", "BICUBIC")])
@pytest.mark.parametrize("hw", SIZES)
def test_torchvision_crop_matches_transforms(recipe_name, interp, hw):
    T = _transforms()
    img = Image.fromarray(random_rgb(*hw, seed=hw[0]))
    recipe = preprocess_recipe(recipe_name, 224)
    ours = fit(img, pipeline(recipe, mode="crop"))
    mode = getattr(T.InterpolationMode, interp)
    theirs = T.CenterCrop(224)(T.Resize(256, interpolation=mode)(img))
    assert ours.size == theirs.size == (224, 224)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))

    x = prepare(img, recipe, mode="crop")
    ref = T.Normalize(recipe_mean(recipe), recipe_std(recipe))(T.ToTensor()(theirs))
    ref = ref.numpy().transpose(1, 2, 0)
    assert x.dtype == np.float32 and x.shape == (224, 224, 3)
    assert np.abs(x - ref).max() < 2e-6


def recipe_mean(recipe):
    return [m / 255.0 for m in recipe["mean"]]


def recipe_std(recipe):
    return [s / 255.0 for s in recipe["std"]]


@pytest.mark.parametrize("hw", SIZES)
def test_tf_crop_is_a_centred_square_of_87_5_percent(hw):
    img = Image.fromarray(random_rgb(*hw, seed=1))
    ours = np.asarray(fit(img, pipeline(TF_UINT8, mode="crop")))
    h, w = hw
    side = int(round(min(h, w) * 0.875))
    left, top = int(round((w - side) / 2)), int(round((h - side) / 2))
    ref = img.crop((left, top, left + side, top + side)).resize((224, 224), Image.BILINEAR)
    np.testing.assert_array_equal(ours, np.asarray(ref))


@pytest.mark.parametrize("hw", SIZES[:3])
def test_tf_crop_matches_torchvision_centercrop_resize(hw):
    T = _transforms()
    img = Image.fromarray(random_rgb(*hw, seed=2))
    side = int(round(min(hw) * 0.875))
    theirs = T.Resize((224, 224), interpolation=T.InterpolationMode.BILINEAR)(
        T.CenterCrop(side)(img))
    ours = fit(img, pipeline(TF_FLOAT, mode="crop"))
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


@pytest.mark.parametrize("recipe", [TF_UINT8, TF_FLOAT, preprocess_recipe("torchvision")],
                         ids=["tf-uint8", "tf-float", "torchvision"])
def test_resize_mode_is_the_reference_json_recipe(recipe):
    arr = random_rgb(300, 200, seed=3)
    pal = Image.fromarray(arr).convert("P")  # any mode -> RGB first, as the JSON says
    ours = fit(load_image(pal), pipeline(recipe, mode="resize"))
    ref = pal.convert("RGB").resize((224, 224), Image.BILINEAR)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))


def test_input_size_of_the_model_wins():
    recipe = preprocess_recipe("torchvision", 224)
    steps = pipeline(recipe, input_size=(160, 160))
    assert steps[-1] == {"op": "center_crop", "size": [160, 160]}
    assert prepare(random_rgb(100, 130), recipe, (160, 160)).shape == (160, 160, 3)
    assert prepare(random_rgb(100, 130), TF_FLOAT, (96, 128), mode="resize").shape == (96, 128, 3)


def test_normalisation():
    px = np.array([[[0, 127.5, 255]]], np.float32)
    np.testing.assert_array_equal(normalize(px, TF_FLOAT), [[[-1.0, 0.0, 1.0]]])
    px = np.arange(256, dtype=np.uint8).reshape(1, -1, 1).repeat(3, axis=2)
    np.testing.assert_array_equal(normalize(px, TF_UINT8)[0, :, 0],
                                  (np.arange(256, dtype=np.float32) - 128) * np.float32(0.0078125))
    v3 = make_recipe((224, 224), 128, 1 / 0.007874015718698502, input_dtype="uint8",
                     quantization=(0.007874015718698502, 128))
    np.testing.assert_array_equal(
        normalize(px, v3)[0, :, 0],
        (np.arange(256, dtype=np.float32) - 128) * np.float32(0.007874015718698502))


def test_load_image_inputs(tmp_path):
    arr = random_rgb(20, 30)
    assert np.array_equal(np.asarray(load_image(arr)), arr)
    assert np.array_equal(np.asarray(load_image(Image.fromarray(arr))), arr)
    assert load_image(arr[..., 0]).mode == "RGB"
    rgba = np.concatenate([arr, np.full((20, 30, 1), 255, np.uint8)], axis=2)
    assert np.array_equal(np.asarray(load_image(rgba)), arr)
    p = write_image(tmp_path / "x.png")
    assert load_image(str(p)).size == (56, 40) and load_image(p).mode == "RGB"
    with pytest.raises(ImageError, match="uint8"):
        load_image(arr.astype(np.float32))
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageError, match="a path, a PIL image"):
        load_image(42)


def test_unreadable_files(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    with pytest.raises(ImageError, match="bad.png: cannot decode"):
        load_image(bad)
    with pytest.raises(ImageError, match="truncated"):
        load_image(truncated_jpeg(tmp_path / "t.jpg"))
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.jpg")


def test_unknown_mode_and_step():
    with pytest.raises(ValueError, match="preprocess mode"):
        pipeline(TF_FLOAT, mode="squash")
    with pytest.raises(ValueError, match="unknown preprocessing step"):
        pipeline(dict(TF_FLOAT, steps=[{"op": "rotate"}]))


def test_import_tinymnet_does_not_import_pillow_or_tqdm():
    code = ("import sys, tinymnet, tinymnet.kernels, tinymnet.model, tinymnet.bundled; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PIL', 'tqdm')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
