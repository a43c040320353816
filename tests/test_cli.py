"""The `tinymnet` command line: convert, info (text, --json, --plot) and isa; every bad input
gives a one-line error and a non-zero exit code, never a traceback."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import tinymnet
from tinymnet import cli
from tinymnet.formats import save_safetensors
from tinymnet.models import build

try:
    from _fixtures import fixture
except ImportError:  # tests/ made a package
    from ._fixtures import fixture


def run_cli(*argv):
    """The real entry point in a fresh interpreter -> (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "tinymnet.cli", *map(str, argv)],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def main_json(capsys, *argv):
    assert cli.main([str(a) for a in argv]) == 0
    return json.loads(capsys.readouterr().out)


def assert_one_line_error(code, err, *fragments):
    assert code != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tinymnet: error: "), err
    for f in fragments:
        assert f in lines[0], (f, err)


@pytest.fixture(scope="module")
def v3_small_weights(tmp_path_factory):
    g = build("mobilenet_v3_small", width=0.75, num_classes=10, resolution=96)
    path = tmp_path_factory.mktemp("cli") / "v3s.safetensors"
    save_safetensors(path, g.params)
    return path, g


# ---------------------------------------------------------------------------------------------
# info


def test_info_mobilenet_v2_json(capsys):
    d = main_json(capsys, "info", "mobilenet_v2", "--json")
    assert isinstance(d["params"], int) and isinstance(d["macs"], int)
    assert d["params"] == 3_504_872
    assert d["macs"] == pytest.approx(300.8e6, rel=0.01)
    assert d["arch"] == "mobilenet_v2" and d["resolution"] == 224 and d["num_classes"] == 1000
    assert d["peak_activation_bytes"] <= d["activation_bytes"]
    layers = {r["name"]: r for r in d["layers"]}
    assert layers["features.0.0"]["output_shape"] == [1, 112, 112, 32]
    assert layers["features.0.0"]["kernel"] == "3x3" and layers["features.0.0"]["stride"] == "2"
    assert sum(r["macs"] for r in d["layers"]) == d["macs"]
    assert sum(r["params"] for r in d["layers"]) == d["params"]


def test_info_width_and_resolution(capsys):
    d = main_json(capsys, "info", "mobilenet_v1", "--width", "0.5", "--resolution", "160",
                  "--json")
    assert d["macs"] == pytest.approx(77e6, rel=0.01) and d["resolution"] == 160
    assert d["width"] == 0.5


def test_info_text_table(capsys):
    assert cli.main(["info", "mobilenet_v3_small"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["name", "op", "kernel", "stride"]
    assert "features.1.block.1" in out and "squeeze_excite" in out
    assert "mobilenet_v3_small: 2,542,856 params" in out.splitlines()[-3]
    assert out.splitlines()[-2].startswith("compiled plan (")  # arena and packed weights
    assert out.splitlines()[-1] == ("a batch runs its last steps on all its images at once: "
                                    "flatten, classifier.0, classifier.3")


def test_info_shows_the_plan_of_8bit_weights_as_stored(capsys):
    """The bundled V3-Small keeps its one-pixel layers' weights (2.1M of its 2.5M: classifier,
    last 1x1 conv, squeeze-excite FCs) 8-bit, read in place from the file; `info` takes the
    bundled name like the other commands."""
    from tinymnet.bundled import resolve

    d = main_json(capsys, "info", "mobilenet_v3_small_100_224_tf", "--json")
    assert d == main_json(capsys, "info", resolve("mobilenet_v3_small_100_224_tf"), "--json") | {
        "source": d["source"]}
    assert d["plan"]["weight_bytes"] < 0.25 * 4 * d["params"]
    assert d["plan"]["mapped_weight_bytes"] > 2.0e6  # bytes: one per 8-bit weight
    assert 0 < d["plan"]["arena_bytes"] < 2 << 20
    assert d["plan"]["batched_steps"] == ["MobilenetV3/Conv_2/BiasAdd",
                                          "MobilenetV3/Logits/Conv2d_1c_1x1/BiasAdd",
                                          "MobilenetV3/Logits/SpatialSqueeze"]


def test_info_on_files(tmp_path, capsys, v3_small_weights):
    src, g = v3_small_weights
    d = main_json(capsys, "info", src, "--json", "--resolution", "96")  # convertible file
    assert d["arch"] == "mobilenet_v3_small" and d["width"] == 0.75 and d["num_classes"] == 10
    out = tmp_path / "m.tmn"
    assert cli.main(["convert", str(src), "-o", str(out), "--resolution", "96"]) == 0
    capsys.readouterr()
    d2 = main_json(capsys, "info", out, "--json")  # .tmn
    assert (d2["params"], d2["macs"]) == (d["params"], d["macs"])
    d3 = main_json(capsys, "info", out, "--json", "--resolution", "192")
    assert d3["resolution"] == 192 and d3["macs"] > 3.5 * d2["macs"]


def test_info_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib (extra 'plot') is not installed")
    png = tmp_path / "v2.png"
    assert cli.main(["info", "mobilenet_v2", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert f"plot written to {png}" in capsys.readouterr().out


def test_info_plot_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    assert cli.main(["info", "mobilenet_v2", "--plot", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "--plot needs matplotlib" in err and "pip install 'tinymnet[plot]'" in err
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------------------------------------
# convert


def test_convert_subprocess_then_load(tmp_path, v3_small_weights):
    src, g = v3_small_weights
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class {i}\n" for i in range(10)))
    out = tmp_path / "out.tmn"
    code, stdout, stderr = run_cli("convert", src, "-o", out, "--resolution", "96",
                                   "--labels", labels)
    assert code == 0, stderr
    assert stdout.startswith(f"wrote {out}: mobilenet_v3_small width 0.75, 10 outputs, 96x96")
    assert "safetensors" in stdout and "labels: from labels.txt" in stdout
    model = tinymnet.load(out)
    assert model._compiled.graph is None  # stored optimised: the fast load path
    assert model.labels[3] == "class 3" and model.provenance["arch"] == "mobilenet_v3_small"
    x = np.random.default_rng(0).standard_normal((1, 96, 96, 3)).astype(np.float32)
    from tinymnet.graph import run_reference

    want = run_reference(g, x)
    assert np.abs(model(x) - want).max() <= 1e-4 * np.abs(want).max()


def test_convert_options_are_passed(tmp_path, v3_small_weights, capsys):
    src, _ = v3_small_weights
    out = tmp_path / "o.tmn"
    assert cli.main(["convert", str(src), "-o", str(out), "--arch", "mobilenet_v3_small",
                     "--width", "0.75", "--num-classes", "10"]) == 0
    assert tinymnet.load(out).input_shape == (224, 224, 3)
    capsys.readouterr()
    assert cli.main(["convert", str(src), "-o", str(out), "--num-classes", "1000"]) == 2
    assert "10 classes, not 1000" in capsys.readouterr().err


def test_convert_keras_fixture(tmp_path):
    src = fixture("models", "keras", "mobilenet_v1_0.25_224_imagenet.h5")
    out = tmp_path / "k.tmn"
    code, stdout, stderr = run_cli("convert", src, "-o", out)
    assert code == 0, stderr
    assert "mobilenet_v1 width 0.25, 1000 outputs" in stdout and "(x - 127.5) / 127.5" in stdout
    assert tinymnet.load(out).provenance["format"] == "h5"


# ---------------------------------------------------------------------------------------------
# errors: one line, non-zero, no traceback


def test_bad_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"definitely not a checkpoint" * 10)
    code, out, err = run_cli("convert", bad, "-o", tmp_path / "x.tmn")
    assert_one_line_error(code, err, str(bad), "unrecognised model file format")
    assert not (tmp_path / "x.tmn").exists()
    code, out, err = run_cli("info", bad)
    assert_one_line_error(code, err, str(bad))


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["info", "resnet50"], ["resnet50: no such file, and not an arch name"]),
        (["info", "efficientnet_lite0", "--width", "0.5"], ["no width multiplier"]),
        (["convert", "{missing}", "-o", "{tmp}/x.tmn"], ["no such file"]),
        (["convert", "{src}", "-o", "{tmp}/no/such/dir/x.tmn"], ["does not exist"]),
        (["convert", "{src}", "-o", "{tmp}"], ["is a directory"]),
        (["convert", "{src}", "-o", "{tmp}/x.tmn", "--arch", "mobilenet_v1"],
         ["not mobilenet_v1"]),
        (["convert", "{src}", "-o", "{tmp}/x.tmn", "--width", "0.5"],
         ["do not match mobilenet_v3_small width 0.5"]),
        (["convert", "{src}", "-o", "{tmp}/x.tmn", "--arch", "vgg16"], ["unknown arch 'vgg16'"]),
    ],
)
def test_error_messages(tmp_path, capsys, v3_small_weights, argv, fragments):
    src, _ = v3_small_weights
    argv = [a.format(src=src, tmp=tmp_path, missing=tmp_path / "missing.pth") for a in argv]
    assert cli.main(argv) != 0
    captured = capsys.readouterr()
    assert_one_line_error(1, captured.err, *fragments)
    assert captured.out == ""


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["convert", "x.pth"])  # -o is required
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        cli.main(["info", "mobilenet_v2", "--width", "-1"])
    assert e.value.code == 2
    assert "must be > 0" in capsys.readouterr().err


def test_isa_still_works(capsys):
    assert cli.main(["isa"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("in use:") and "available:" in out
