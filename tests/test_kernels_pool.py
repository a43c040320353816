"""Pooling kernels (avg, max, global average) against tinymnet.reference, under every ISA."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel_helpers import BATCH, CHANNELS, KERNEL_SETTINGS, SEEDS, assert_close_scaled, randn, rng_for
from tinymnet import kernels as K
from tinymnet import reference as R


@st.composite
def pool_configs(draw):
    kh = draw(st.integers(1, 5))
    kw = draw(st.sampled_from([kh, kh, 1, 2, 3]))
    kernel = kh if kh == kw and draw(st.booleans()) else (kh, kw)
    stride = draw(st.sampled_from([None, 1, 2, (2, 1), (1, 2), 3]))
    # Padding stays below the kernel so every window holds at least one input pixel.
    form = draw(st.sampled_from(["zero", "sym", "four", "same"]))
    if form == "zero":
        padding, pads = 0, (0, 0, 0, 0)
    elif form == "same":
        padding, pads = "same", None
    elif form == "sym":
        ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
        padding, pads = (ph, pw), (ph, ph, pw, pw)
    else:
        pads = tuple(draw(st.integers(0, k - 1)) for k in (kh, kh, kw, kw))
        padding = pads
    min_h = 1 if pads is None else max(1, kh - pads[0] - pads[1])
    min_w = 1 if pads is None else max(1, kw - pads[2] - pads[3])
    shape = (draw(BATCH), draw(st.integers(min_h, min_h + 12)), draw(st.integers(min_w, min_w + 12)),
             draw(CHANNELS))
    return shape, kernel, stride, padding


@KERNEL_SETTINGS
@given(cfg=pool_configs(), count_include_pad=st.booleans(), seed=SEEDS)
def test_avg_pool2d_matches_reference(isa, cfg, count_include_pad, seed):
    shape, kernel, stride, padding = cfg
    x = randn(rng_for(seed), shape)
    y = K.AvgPool2d(kernel, stride, padding, count_include_pad)(x)
    assert_close_scaled(y, R.avg_pool2d(x, kernel, stride, padding, count_include_pad))


@KERNEL_SETTINGS
@given(cfg=pool_configs(), seed=SEEDS)
def test_max_pool2d_matches_reference(isa, cfg, seed):
    shape, kernel, stride, padding = cfg
    x = randn(rng_for(seed), shape) - 10.0  # all negative: zero padding would win, -inf must not
    y = K.MaxPool2d(kernel, stride, padding)(x)
    np.testing.assert_array_equal(y, R.max_pool2d(x, kernel, stride, padding))


@KERNEL_SETTINGS
@given(n=BATCH, h=st.integers(1, 20), w=st.integers(1, 20), c=CHANNELS, seed=SEEDS)
def test_global_avg_pool_matches_reference(isa, n, h, w, c, seed):
    x = randn(rng_for(seed), (n, h, w, c)) + 3.0
    assert_close_scaled(K.global_avg_pool(x), R.global_avg_pool(x))


@pytest.mark.parametrize("shape", [(1, 7, 7, 960), (2, 56, 56, 24), (1, 112, 112, 16)])
def test_pools_on_mobilenet_sized_inputs(isa, shape):
    x = randn(rng_for(0), shape)
    assert_close_scaled(K.global_avg_pool(x), R.global_avg_pool(x))
    assert_close_scaled(K.AvgPool2d(3, 2, "same", False)(x), R.avg_pool2d(x, 3, 2, "same", False))
    np.testing.assert_array_equal(K.MaxPool2d(3, 2, 1)(x), R.max_pool2d(x, 3, 2, 1))


def test_pools_accept_non_contiguous_inputs(isa):
    x = randn(rng_for(1), (2, 8, 9, 10))[:, 1:, ::2, 1::3]
    assert_close_scaled(K.AvgPool2d(2, 1)(x), R.avg_pool2d(x, 2, 1))
    np.testing.assert_array_equal(K.MaxPool2d(2, 1)(x), R.max_pool2d(x, 2, 1))
    assert_close_scaled(K.global_avg_pool(x), R.global_avg_pool(x))


@pytest.mark.parametrize("pads", [(3, 0, 0, 0), (0, 0, 4, 4), (2, 3, 1, 2)])
def test_pool_windows_entirely_in_the_padding(isa, pads):
    """Padding >= kernel: such windows give -inf (max) and 0 (average without the pad count)."""
    x = randn(rng_for(3), (1, 3, 4, 17))
    np.testing.assert_array_equal(K.MaxPool2d(2, 1, pads)(x), R.max_pool2d(x, 2, 1, pads))
    for count_include_pad in (True, False):
        assert_close_scaled(K.AvgPool2d(2, 1, pads, count_include_pad)(x),
                            R.avg_pool2d(x, 2, 1, pads, count_include_pad))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_pools_survive_non_finite_inputs(isa, bad):
    """A NaN/Inf must not crash; the other channels are unaffected."""
    x = randn(rng_for(2), (1, 6, 6, 17))
    x[0, 2, 3, 5] = bad
    pairs = [
        (K.AvgPool2d(3, 1, 1), lambda x: R.avg_pool2d(x, 3, 1, 1)),
        (K.MaxPool2d(3, 1, 1), lambda x: R.max_pool2d(x, 3, 1, 1)),
        (K.global_avg_pool, R.global_avg_pool),
    ]
    others = np.arange(17) != 5
    for op, ref in pairs:
        y, expect = op(x)[..., others], ref(x)[..., others]
        assert np.all(np.isfinite(y))
        assert_close_scaled(y, expect)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: K.AvgPool2d(3)(np.ones((1, 2, 2, 1), np.float32)), "kernel"),
        (lambda: K.MaxPool2d(3, 1, 0)(np.ones((1, 2, 5, 1), np.float32)), "kernel"),
        (lambda: K.AvgPool2d(2)(np.ones((1, 4, 4, 1), np.complex64)), "x"),
        (lambda: K.MaxPool2d(2)(np.ones((4, 4, 1), np.float32)), "x"),
        (lambda: K.AvgPool2d(0), "kernel"),
        (lambda: K.MaxPool2d(2, stride=0), "stride"),
        (lambda: K.AvgPool2d(2, padding="valid"), "padding"),
        (lambda: K.MaxPool2d(2, padding=(1, 1, 1)), "padding"),
        (lambda: K.global_avg_pool(np.ones((2, 3), np.float32)), "x"),
        (lambda: K.global_avg_pool(np.ones((1, 2, 2, 3), np.int32)), "x"),
    ],
)
def test_pool_errors(isa, call, match):
    with pytest.raises(ValueError, match=match):
        call()
