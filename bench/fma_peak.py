"""Measured single-core FMA peak: compiles bench/fma_peak.cc with g++ into a temp dir (once
per process, one binary per ISA) and runs it.

    python bench/fma_peak.py          # prints GFLOP/s for avx512 and avx2
"""
from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("fma_peak.cc")
FLAGS = {"avx512": ["-mavx512f", "-mfma"], "avx2": ["-mavx2", "-mfma"]}


@functools.lru_cache(maxsize=None)
def _binaries() -> dict:
    """ISA -> path of the compiled binary (the temp dir lives as long as the process)."""
    tmp = tempfile.mkdtemp(prefix="tinymnet-fma-peak-")
    out = {}
    for isa, flags in FLAGS.items():
        exe = os.path.join(tmp, f"fma_peak_{isa}")
        subprocess.run(["g++", "-O2", *flags, "-o", exe, str(SOURCE)], check=True)
        out[isa] = exe
    return out


def fma_peak(isa: str, seconds: float = 0.02, trials: int = 7) -> float:
    """Single-core FP32 FMA peak in GFLOP/s for 'avx512' or 'avx2' (best of `trials`)."""
    res = subprocess.run([_binaries()[isa], str(seconds), str(trials)], check=True,
                         capture_output=True, text=True)
    name, gflops = res.stdout.split()
    assert name == isa, res.stdout
    return float(gflops)


def runnable_isas() -> list:
    """The ISAs of FLAGS this CPU can run (an AVX-512 binary dies of SIGILL on an AVX2-only CPU)."""
    from tinymnet.kernels import available_isas
    have = set(available_isas())
    return [isa for isa in FLAGS if isa in have]


if __name__ == "__main__":
    for isa in runnable_isas():
        print(f"{isa:7s} {fma_peak(isa):8.1f} GFLOP/s")
