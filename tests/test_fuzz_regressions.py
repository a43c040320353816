"""Replay every input the fuzzers (fuzz/run.py) found, kept under tests/fuzz_cases/<target>/:
each must now load or fail with a TinymnetError naming the file, within a few seconds,
through the same check the fuzz target runs (fuzz/targets.py; atheris is not needed)."""
from __future__ import annotations

import faulthandler
import importlib.util
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CASES = REPO / "tests" / "fuzz_cases"

_spec = importlib.util.spec_from_file_location("tinymnet_fuzz_targets", REPO / "fuzz" / "targets.py")
targets = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = targets
_spec.loader.exec_module(targets)

# The optional package each target's parsers need.
NEEDS = {"tflite": "tflite", "h5": "h5py", "onnx": "onnx", "image": "PIL"}

CASE_FILES = sorted(p for p in CASES.glob("*/*") if p.is_file())


def test_every_case_folder_is_a_target():
    assert CASE_FILES, "no kept fuzz cases"
    assert {p.parent.name for p in CASE_FILES} <= set(targets.TARGETS)


@pytest.mark.parametrize("case", CASE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fuzz_case(case):
    target = case.parent.name
    if target in NEEDS:
        pytest.importorskip(NEEDS[target])
    check, _seeds = targets.TARGETS[target]
    t0 = time.perf_counter()
    # A hang that is back (one case made libhdf5 loop forever) must not stall the suite:
    # dump the stack and exit.
    faulthandler.dump_traceback_later(120, exit=True)
    try:
        check(case)  # raises Finding (or the stray exception) if the bug is back
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert time.perf_counter() - t0 < 10, "took too long"
