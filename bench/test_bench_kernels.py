"""pytest-benchmark view of bench_kernels.py: one benchmark per (distinct layer shape,
contender), grouped by layer, after the same output check against onnxruntime.

    pytest bench/ --benchmark-only
    TINYMNET_BENCH_NETS=v2 TINYMNET_BENCH_ISA=avx512 TINYMNET_BENCH_OPS=pw,dw \\
        pytest bench/ --benchmark-only

Absolute timings only: speed ratios and % of FMA peak, measured in alternating rounds so that
machine drift cancels, come from `python bench/bench_kernels.py`. No speed is asserted here.
"""
from __future__ import annotations

import functools
import os

import pytest

import bench_kernels as B
from shapes import OPS, load


def _env_list(name, default):
    return os.environ.get(name, default).split(",")


ISAS = [i for i in B.K.available_isas()
        if i in _env_list("TINYMNET_BENCH_ISA", "scalar,avx2,avx512,neon")]
_ops = _env_list("TINYMNET_BENCH_OPS", ",".join(OPS))
LAYERS = list({L.key: L for net in _env_list("TINYMNET_BENCH_NETS", "v1,v2,v3l,v3s")
               for L in load(net) if L.op in _ops}.values())
PARAMS = [pytest.param(L, c, id=f"{L.op}-{L.describe()}-{c}".replace(" ", "_"))
          for L in LAYERS
          for c in [f"tinymnet/{i}" for i in ISAS] + ["ort-nchw", "ort-nchwc"]
          + (["numpy"] if L.op == "pw" else [])]


@functools.lru_cache(maxsize=4)  # tests run layer by layer: keep only the current few
def _case(layer):
    return B.make_case(layer, ISAS)  # raises if any output differs from onnxruntime


@pytest.mark.parametrize("layer,contender", PARAMS)
def test_kernel(benchmark, layer, contender):
    case = _case(layer)
    if contender not in case.fns:
        pytest.skip("onnxruntime has no blocked (NCHWc) kernel for this layer")
    fn = case.fns[contender]
    benchmark.group = f"{layer.op} {layer.describe()}"
    benchmark.extra_info["mflop"] = layer.flops / 1e6
    benchmark.pedantic(fn, iterations=B.calibrate(fn, B.MIN_TIME), rounds=B.ROUNDS,
                       warmup_rounds=1)
    benchmark.extra_info["gflops"] = layer.flops / benchmark.stats.stats.median / 1e9
