"""bench/tflite_compare.py (tinymnet vs TFLite + XNNPACK) kept runnable: its quick mode converts
the float TFLite fixtures and checks both engines' outputs; one 1-round timing pass exercises the
timing and report code. No speed is asserted (speed belongs to bench/README.md)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

try:
    from _fixtures import fixture
except ImportError:  # pragma: no cover - run as a package
    from ._fixtures import fixture

pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed")
pytest.importorskip("tflite", reason="tflite (optional extra) is not installed")
pytest.importorskip("PIL")

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "tflite_compare.py"


@pytest.fixture(scope="module")
def tc():
    spec = importlib.util.spec_from_file_location("tflite_compare", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fixtures_for(tc, key):
    fname, photo = tc.MODELS[key]
    path = fixture("models", "tflite", fname)  # skips when absent
    fixture("images", photo)
    tc.FIXTURES = path.parents[2]


@pytest.mark.filterwarnings("ignore:.*experimental_preserve_all_tensors")
def test_quick_mode_checks_outputs(tc, capsys):
    for key in tc.MODELS:
        _fixtures_for(tc, key)
    assert tc.main(["--quick", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert not rep["skipped"]
    assert set(rep["models"]) == set(tc.MODELS)
    for e in rep["models"].values():
        assert e["max_rel_diff"] <= tc.TOLERANCE and e["xnnpack_vs_tflite"] <= tc.TOLERANCE
        assert e["results"] == []  # quick mode times nothing
    assert rep["models"]["deeplab"]["output"] == {"tinymnet": [33, 33, 21],
                                                  "tflite": [257, 257, 21]}


@pytest.mark.filterwarnings("ignore:.*experimental_preserve_all_tensors")
def test_one_timing_round_reports_ratios(tc, capsys):
    _fixtures_for(tc, "v1_025")
    assert tc.main(["--models", "v1_025", "--threads", "1", "--rounds", "1",
                    "--min-time", "0"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| v1_025 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "1" and float(cells[3]) > 0 and float(cells[4]) > 0
    assert float(cells[5].split()[0]) > 0


def test_bad_arguments_are_usage_errors(tc):
    with pytest.raises(SystemExit) as e:
        tc.main(["--models", "nope"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        tc.main(["--threads", "0"])
