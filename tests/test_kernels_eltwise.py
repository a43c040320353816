"""Elementwise kernels (activation, add, per-channel mul) against tinymnet.reference, under
every ISA. Odd sizes exercise the vector tails."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel_helpers import (
    ACTIVATIONS,
    BATCH,
    CHANNELS,
    KERNEL_SETTINGS,
    SEEDS,
    assert_close_scaled,
    randn,
    rng_for,
)
from tinymnet import kernels as K
from tinymnet import reference as R

SHAPES = st.one_of(
    st.tuples(BATCH, st.integers(1, 9), st.integers(1, 9), CHANNELS),  # NHWC
    st.tuples(st.integers(1, 200)),  # flat, every tail length
    st.tuples(BATCH, st.integers(1, 70)),
)


def _alpha_beta(act):
    name, alpha, beta = act
    return name, {} if alpha is None else dict(alpha=alpha, beta=beta)


@KERNEL_SETTINGS
@given(shape=SHAPES, act=ACTIVATIONS, seed=SEEDS)
def test_activation_matches_reference(isa, shape, act, seed):
    name, ab = _alpha_beta(act)
    x = randn(rng_for(seed), shape, 5.0)  # spans both clamps of relu6 and the gates
    assert_close_scaled(K.activation(x, name, **ab), R.activation(x, name, **ab))


def test_activation_at_the_breakpoints(isa):
    x = np.array([-np.inf, -3.0, -2.5, -0.0, 0.0, 2.5, 3.0, 6.0, 6.5, np.inf] * 3, np.float32)
    for name in ("relu", "relu6", "hardswish", "hardsigmoid"):
        y, ref = K.activation(x, name), R.activation(x, name)
        finite = np.isfinite(ref)
        np.testing.assert_allclose(y[finite], ref[finite], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(K.activation(x, "relu6")[[0, -1]], [0, 6])
    np.testing.assert_array_equal(K.activation(x, "hardsigmoid", 0.2, 0.5)[[0, 1, 2, -1]],
                                  [0, 0, 0, 1])


@KERNEL_SETTINGS
@given(shape=SHAPES, act=ACTIVATIONS, seed=SEEDS)
def test_add_matches_reference(isa, shape, act, seed):
    name, ab = _alpha_beta(act)
    rng = rng_for(seed)
    a, b = randn(rng, shape, 3.0), randn(rng, shape, 3.0)
    assert_close_scaled(K.add(a, b, name, **ab), R.add(a, b, name, **ab))


@KERNEL_SETTINGS
@given(n=BATCH, h=st.integers(1, 9), w=st.integers(1, 9), c=CHANNELS, seed=SEEDS)
def test_mul_matches_reference(isa, n, h, w, c, seed):
    rng = rng_for(seed)
    x, s = randn(rng, (n, h, w, c)), randn(rng, (n, 1, 1, c))
    assert_close_scaled(K.mul(x, s), R.mul(x, s))


def test_eltwise_accept_non_contiguous_inputs(isa):
    rng = rng_for(3)
    x = randn(rng, (2, 6, 8, 34))[:, ::2, 1:, ::2]
    s = randn(rng, (2, 1, 1, 34))[..., ::2]
    assert_close_scaled(K.activation(x, "hardswish"), R.activation(x, "hardswish"))
    assert_close_scaled(K.add(x, x[:, ::-1], "relu"), R.add(x, x[:, ::-1], "relu"))
    assert_close_scaled(K.mul(x, s), R.mul(x, s))


def test_eltwise_large_tensor(isa):
    rng = rng_for(4)
    x, y = randn(rng, (2, 56, 56, 72)), randn(rng, (2, 56, 56, 72))
    s = randn(rng, (2, 1, 1, 72))
    assert_close_scaled(K.add(x, y, "relu6"), R.add(x, y, "relu6"))
    assert_close_scaled(K.mul(x, s), R.mul(x, s))
    assert_close_scaled(K.activation(x, "hardswish"), R.activation(x, "hardswish"))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_eltwise_non_finite_inputs_stay_local(isa, bad):
    rng = rng_for(5)
    x, b = randn(rng, (1, 3, 3, 19)), randn(rng, (1, 3, 3, 19))
    s = randn(rng, (1, 1, 1, 19))
    x[0, 1, 1, 7] = bad
    others = np.ones(x.shape, bool)
    others[0, 1, 1, 7] = False
    for name in (None, "relu", "relu6", "hardswish", "hardsigmoid"):
        y = K.activation(x, name)
        assert_close_scaled(y[others], R.activation(x, name)[others])
        y = K.add(x, b, name)
        assert_close_scaled(y[others], R.add(x, b, name)[others])
    assert_close_scaled(K.mul(x, s)[others], R.mul(x, s)[others])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: K.activation(np.ones(4, np.float32), "gelu"), "gelu"),
        (lambda: K.activation(np.ones(4, np.int64), "relu"), "x.*floating-point"),
        (lambda: K.activation([[1.0], [2.0, 3.0]], "relu"), "x"),
        (lambda: K.add(np.ones(4, np.float32), np.ones(5, np.float32)), "shape"),
        (lambda: K.add(np.ones(4, np.float32), np.ones(4, np.int8)), "b.*floating-point"),
        (lambda: K.add(np.ones(4, np.float32), np.ones(4, np.float32), "swish"), "activation"),
        (lambda: K.mul(np.ones((1, 2, 2, 3), np.float32), np.ones((1, 1, 1, 2), np.float32)), "s"),
        (lambda: K.mul(np.ones((1, 2, 2, 3), np.float32), np.ones((1, 2, 2, 3), np.float32)), "s"),
        (lambda: K.mul(np.ones((2, 2, 3), np.float32), np.ones((1, 1, 3), np.float32)), "x"),
    ],
)
def test_eltwise_errors(isa, call, match):
    with pytest.raises(ValueError, match=match):
        call()
