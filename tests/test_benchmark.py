"""`tinymnet bench`: a quick run has every field of the report; bad arguments give a one-line
error and a non-zero exit status. No timing is asserted (the machine may be busy)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tinymnet.benchmark import format_report, parse_int_list
from tinymnet.errors import TinymnetError

MODEL = "mobilenet_v3_small_100_224_tf"


def run_cli(*argv, timeout=600):
    proc = subprocess.run([sys.executable, "-m", "tinymnet.cli", *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def assert_one_line_error(code, err, fragment):
    assert code != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tinymnet: error: "), err
    assert fragment in lines[0], err


def _is_ms(v):
    return isinstance(v, (int, float)) and v > 0


def test_quick_run_with_onnxruntime_json():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    code, out, err = run_cli("bench", MODEL, "--threads", "1,2", "--batch", "1,2",
                             "--compare", "onnxruntime", "--rounds", "1", "--min-time", "0",
                             "--json")
    assert code == 0, err
    rep = json.loads(out)  # one JSON object, nothing else on stdout
    assert rep["model"] == MODEL and rep["input_shape"] == [224, 224, 3]
    assert rep["settings"]["threads"] == [1, 2] and rep["settings"]["batch"] == [1, 2]
    assert rep["settings"]["compare"] == "onnxruntime" and rep["settings"]["rounds"] == 1
    assert 0 <= rep["max_rel_diff"] <= 1e-4
    combos = [(r["threads"], r["batch"]) for r in rep["results"]]
    assert combos == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for r in rep["results"]:
        for engine in ("tinymnet", "onnxruntime"):
            d = r[engine]
            assert _is_ms(d["median_ms"]) and _is_ms(d["p90_ms"]) and _is_ms(d["images_per_s"])
            assert d["calls"] >= 1
        assert _is_ms(r["ratio"])
        lo, hi = r["ratio_range"]  # one round: the range is that round's ratio
        assert lo <= r["ratio"] <= hi and lo == hi
    assert {(s["from_threads"], s["to_threads"], s["batch"]) for s in rep["scaling"]} == {
        (1, 2, 1), (1, 2, 2)}
    for s in rep["scaling"]:
        assert _is_ms(s["tinymnet"]) and _is_ms(s["onnxruntime"])
    mem = rep["memory"]
    for engine in ("tinymnet", "onnxruntime"):
        assert mem[engine]["peak_rss_mib"] >= mem[engine]["rss_after_import_mib"] > 0
        assert mem[engine]["threads"] == 2
    assert _is_ms(mem["ratio"])
    st = rep["startup"]["tinymnet"]
    for key in ("import_ms", "import_load_api_ms", "load_ms", "first_inference_ms",
                "load_first_ms", "steady_ms", "load_first_over_steady"):
        assert _is_ms(st[key]), key
    for key in ("import_ms", "load_ms", "first_inference_ms", "steady_ms"):
        assert _is_ms(rep["startup"]["onnxruntime"][key]), key
    assert rep["machine"]["logical_cpus"] >= 1 and rep["machine"]["isa"]
    assert "other_cpu_load" in rep and "loadavg_start" in rep and "loadavg_end" in rep
    for r in rep["results"]:
        assert r["tinymnet"]["cpu_ms"] >= 0 and r["onnxruntime"]["cpu_ms"] >= 0
    assert rep["machine"]["versions"]["onnxruntime"]
    # the text report renders the same data
    text = format_report(rep)
    assert "tinymnet/ort" in text and "peak RSS" in text and "import tinymnet" in text


def test_quick_run_text_without_compare():
    code, out, err = run_cli("bench", MODEL, "--rounds", "1", "--min-time", "0")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(MODEL)
    assert any(ln.split()[:2] == ["1", "1"] for ln in lines)  # threads 1, batch 1 row
    assert "onnxruntime" not in out and "peak RSS" in out


@pytest.mark.parametrize("argv, fragment", [
    (("--threads", "0"), "--threads"),
    (("--threads", "1,x"), "--threads"),
    (("--threads", ""), "--threads"),
    (("--threads", "1.5"), "--threads"),
    (("--batch", "-1"), "--batch"),
    (("--compare", "tflite"), "--compare"),
])
def test_bad_arguments_are_one_line_errors(argv, fragment):
    code, out, err = run_cli("bench", MODEL, *argv, "--rounds", "1", "--min-time", "0",
                             timeout=120)
    assert_one_line_error(code, err, fragment)
    assert out == ""


@pytest.mark.parametrize("model, fragment", [
    ("no_such_model", "unknown model"),
    ("mobilenet_v2", "architecture"),
    ("missing/model.tmn", "no such file"),
])
def test_unknown_model_is_a_one_line_error(model, fragment):
    code, out, err = run_cli("bench", model, "--rounds", "1", "--min-time", "0", timeout=120)
    assert_one_line_error(code, err, fragment)


def test_parse_int_list():
    assert parse_int_list("1,2", "--threads", 8) == [1, 2]
    assert parse_int_list(" 2, 1 ,2", "--threads", 8) == [2, 1]
    assert parse_int_list([4], "--batch", 8) == [4]
    for bad in ("", "0", "1,,2", "a", "9", "1.0", "-2", True):
        with pytest.raises(TinymnetError, match="--threads"):
            parse_int_list(bad, "--threads", 8)
