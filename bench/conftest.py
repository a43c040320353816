"""Benchmarks are not part of the test suite (pyproject testpaths = tests); run them with
`pytest bench/ --benchmark-only`. BLAS on one thread, before anything imports numpy, and
benchmarks timed in thread CPU time (as bench_kernels.timeit) unless --benchmark-timer is given:
the shared machine is oversubscribed, and wall time mostly measures the other processes."""
import os

import pytest

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    if not any(a.startswith("--benchmark-timer") for a in config.invocation_params.args):
        config.option.benchmark_timer = "time.thread_time"
