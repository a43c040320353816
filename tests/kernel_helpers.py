"""Helpers shared by the kernel property tests (tests/test_kernels_*.py)."""
import os

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# The `isa` fixture is function scoped but only selects the ISA, so it is safe to share
# between hypothesis examples. TINYMNET_TEST_EXAMPLES=500 runs a longer search.
KERNEL_SETTINGS = settings(
    max_examples=int(os.environ.get("TINYMNET_TEST_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

CHANNELS = st.sampled_from([1, 3, 7, 16, 17, 32, 33, 64, 65, 96])
BATCH = st.integers(1, 3)
SEEDS = st.integers(0, 2**32 - 1)
# (name, alpha, beta); alpha/beta None means the defaults (torch: 1/6, 1/2).
ACTIVATIONS = st.sampled_from(
    [
        (None, None, None),
        ("relu", None, None),
        ("relu6", None, None),
        ("hardswish", None, None),
        ("hardsigmoid", None, None),
        ("hardsigmoid", 0.2, 0.5),  # ONNX HardSigmoid
        ("hardswish", 0.2, 0.5),
    ]
)


def assert_close_scaled(y, ref, rtol=1e-5):
    """max|y - ref| <= rtol * max(max|ref|, 1): the error is measured relative to the scale of
    the output (not per element), with an absolute floor of rtol for outputs near zero."""
    y = np.asarray(y)
    ref = np.asarray(ref)
    assert y.shape == ref.shape, f"shape {y.shape} != reference {ref.shape}"
    assert y.dtype == np.float32, f"dtype {y.dtype}"
    if ref.size == 0:
        return
    err = float(np.max(np.abs(y.astype(np.float64) - ref)))
    scale = max(float(np.max(np.abs(ref))), 1.0)
    assert err <= rtol * scale, (
        f"max|y - ref| = {err:.3g} > {rtol:g} * {scale:.3g}; "
        f"worst at {np.unravel_index(np.argmax(np.abs(y - ref)), y.shape)}"
    )


def randn(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def rng_for(seed):
    return np.random.default_rng(seed)


def act_kwargs(act):
    name, alpha, beta = act
    kw = {"activation": name}
    if alpha is not None:
        kw.update(alpha=alpha, beta=beta)
    return kw
