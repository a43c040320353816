"""Linear and squeeze-excite kernels against tinymnet.reference under every ISA, plus ISA
selection through the TINYMNET_ISA environment variable."""
import os
import subprocess
import sys

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
    act_kwargs,
    assert_close_scaled,
    randn,
    rng_for,
)
from tinymnet import kernels as K
from tinymnet import reference as R

SE_ACTS = st.sampled_from(["relu", "relu6", "hardswish", "hardsigmoid"])


@KERNEL_SETTINGS
@given(n=BATCH, fin=CHANNELS, fout=CHANNELS, act=ACTIVATIONS, bias=st.booleans(), seed=SEEDS)
def test_linear_matches_reference(isa, n, fin, fout, act, bias, seed):
    rng = rng_for(seed)
    w = randn(rng, (fout, fin), fin**-0.5)
    b = randn(rng, (fout,)) if bias else None
    x = randn(rng, (n, fin))
    op = K.Linear(w, b, **act_kwargs(act))
    assert_close_scaled(op(x), R.linear(x, w, b, **act_kwargs(act)))


def test_linear_classifier_sized(isa):
    rng = rng_for(0)
    w, b, x = randn(rng, (1000, 1280), 1280**-0.5), randn(rng, (1000,)), randn(rng, (3, 1280))
    assert_close_scaled(K.Linear(w, b)(x), R.linear(x, w, b))
    xt = randn(rng, (1280, 3)).T  # non-contiguous input
    assert_close_scaled(K.Linear(w, b, "hardswish")(xt), R.linear(xt, w, b, "hardswish"))


@KERNEL_SETTINGS
@given(n=st.integers(2, 19), fin=CHANNELS, fout=st.sampled_from([1, 3, 7, 8, 9, 16, 17, 33, 100]),
       act=ACTIVATIONS, bias=st.booleans(), quantized=st.booleans(), seed=SEEDS)
def test_linear_gives_each_row_of_a_batch_the_bits_it_gets_alone(isa, n, fin, fout, act, bias,
                                                                 quantized, seed):
    # A compiled model runs its classifier layers on a whole batch at once (batched_steps):
    # an image's scores must not depend on the batch it came in. The GEMM's row tiles sum
    # rows as a one-row call does (GemmArgs::gemv_order); the 8-bit GEMV takes the rows in turn.
    rng = rng_for(seed)
    b = randn(rng, (fout,)) if bias else None
    if quantized:
        q, scale, zero, _ = _quantized(rng, fout, fin, rng.random() < 0.5, rng.random() < 0.5)
        op = K.QuantizedLinear(q, scale, zero, b, **act_kwargs(act))
    else:
        op = K.Linear(randn(rng, (fout, fin), fin**-0.5), b, **act_kwargs(act))
    x = randn(rng, (n, fin))
    alone = np.concatenate([op(x[i:i + 1]) for i in range(n)])
    np.testing.assert_array_equal(op(x), alone)


def _quantized(rng, fout, fin, signed, per_feature):
    """8-bit weights with their scales and zero points, and the float weights they stand for
    (dequantized as tinymnet.formats.tmn.QuantizedTensor does)."""
    lo, hi = (-128, 128) if signed else (0, 256)
    q = rng.integers(lo, hi, (fout, fin)).astype(np.int8 if signed else np.uint8)
    k = fout if per_feature else 1
    scale = rng.uniform(0.5, 2.0, k).astype(np.float32) / (16 * fin**0.5)
    zero = rng.integers(lo // 2, hi // 2, k).astype(np.int32)
    w = ((q.astype(np.float32) - zero.astype(np.float32)[:, None]) * scale[:, None]).astype(np.float32)
    return q, scale, zero, w


@KERNEL_SETTINGS
@given(n=BATCH, fin=CHANNELS, fout=st.sampled_from([1, 3, 7, 16, 17, 31, 32, 33, 65, 100]),
       signed=st.booleans(), per_feature=st.booleans(), act=ACTIVATIONS, bias=st.booleans(),
       seed=SEEDS)
def test_quantized_linear_matches_reference(isa, n, fin, fout, signed, per_feature, act, bias,
                                            seed):
    rng = rng_for(seed)
    q, scale, zero, w = _quantized(rng, fout, fin, signed, per_feature)
    b = randn(rng, (fout,)) if bias else None
    x = randn(rng, (n, fin))
    op = K.QuantizedLinear(q, scale, zero, b, **act_kwargs(act))
    assert_close_scaled(op(x), R.linear(x, w, b, **act_kwargs(act)))


def test_quantized_linear_classifier_sized(isa):
    """V3-Small's last two layers: 8-bit weights of uint8 per-tensor and int8 per-channel."""
    rng = rng_for(4)
    for (fout, fin), signed, per in (((1024, 576), False, False), ((1001, 1024), True, True)):
        q, scale, zero, w = _quantized(rng, fout, fin, signed, per)
        b, x = randn(rng, (fout,)), randn(rng, (2, fin))
        assert_close_scaled(K.QuantizedLinear(q, scale, zero, b, "hardswish")(x),
                            R.linear(x, w, b, "hardswish"))


@pytest.mark.parametrize("kwargs, match", [
    (dict(q=np.zeros((3, 4), np.float32)), "uint8 or int8"),
    (dict(q=np.zeros((3,), np.uint8)), "2-D"),
    (dict(scale=np.ones(2, np.float32), zero_point=np.zeros(2, np.int32)), "1 or out_features"),
    (dict(zero_point=np.zeros(3, np.int32)), "1 or out_features"),
    (dict(zero_point=np.zeros(1, np.float32)), "integers"),
])
def test_quantized_linear_constructor_errors(kwargs, match):
    args = dict(q=np.zeros((3, 4), np.uint8), scale=np.ones(1, np.float32),
                zero_point=np.zeros(1, np.int32))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        K.QuantizedLinear(**args)


@KERNEL_SETTINGS
@given(n=BATCH, h=st.integers(1, 9), w=st.integers(1, 9), c=CHANNELS,
       squeeze=st.sampled_from([1, 4, 8, 16, 24]), inner=SE_ACTS, gate=SE_ACTS,
       alpha_beta=st.sampled_from([(None, None), (0.2, 0.5)]), conv_weights=st.booleans(),
       bias=st.booleans(), seed=SEEDS)
def test_squeeze_excite_matches_reference(isa, n, h, w, c, squeeze, inner, gate, alpha_beta,
                                          conv_weights, bias, seed):
    rng = rng_for(seed)
    w1, w2 = randn(rng, (squeeze, c), c**-0.5), randn(rng, (c, squeeze), squeeze**-0.5)
    b1, b2 = (randn(rng, (squeeze,)), randn(rng, (c,))) if bias else (None, None)
    if conv_weights:  # torchvision keeps SE weights as 1x1 convs
        w1, w2 = w1[:, :, None, None], w2[:, :, None, None]
    alpha, beta = alpha_beta
    ab = {} if alpha is None else dict(alpha=alpha, beta=beta)
    x = randn(rng, (n, h, w, c))
    op = K.SqueezeExcite(w1, b1, w2, b2, inner=inner, gate=gate, **ab)
    expect = R.squeeze_excite(x, w1, b1, w2, b2, inner=inner, gate=gate, **ab)
    assert_close_scaled(op(x), expect)


def test_squeeze_excite_mobilenet_sized(isa):
    rng = rng_for(1)
    c, s = 672, 168
    w1, b1, w2, b2 = randn(rng, (s, c), 0.04), randn(rng, (s,)), randn(rng, (c, s), 0.08), randn(rng, (c,))
    x = randn(rng, (2, 14, 14, c))[:, :, ::-1]
    assert_close_scaled(K.SqueezeExcite(w1, b1, w2, b2)(x), R.squeeze_excite(x, w1, b1, w2, b2))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_linear_and_se_survive_non_finite_inputs(isa, bad):
    rng = rng_for(2)
    x = randn(rng, (3, 17))
    x[1, 4] = bad
    w = randn(rng, (9, 17))
    y = K.Linear(w, None, "relu")(x)
    assert_close_scaled(y[[0, 2]], R.linear(x[[0, 2]], w, None, "relu"))  # other rows exact
    xs = randn(rng, (2, 3, 3, 8))
    xs[0, 1, 1, 2] = bad
    w1, w2 = randn(rng, (4, 8)), randn(rng, (8, 4))
    y = K.SqueezeExcite(w1, None, w2, None)(xs)
    assert_close_scaled(y[1], R.squeeze_excite(xs[1:], w1, None, w2, None)[0])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: K.Linear(np.ones((4, 3), np.float32))(np.ones((2, 5), np.float32)), "x"),
        (lambda: K.Linear(np.ones((4, 3), np.float32))(np.ones((2, 3), np.uint8)), "x"),
        (lambda: K.Linear(np.ones((4, 3), np.float32))(np.ones((1, 1, 1, 3), np.float32)), "x"),
        (lambda: K.Linear(np.ones((4, 3, 1), np.float32)), "weight"),
        (lambda: K.Linear(np.ones((4, 3), np.float32), np.ones(3, np.float32)), "bias"),
        (lambda: K.Linear(np.ones((4, 3), np.float32), activation="tanh"), "activation"),
        (lambda: K.SqueezeExcite(np.ones((2, 8), np.float32), None, np.ones((8, 3), np.float32),
                                 None), "w2"),
        (lambda: K.SqueezeExcite(np.ones((2, 8), np.float32), np.ones(3, np.float32),
                                 np.ones((8, 2), np.float32), None), "b1"),
        (lambda: K.SqueezeExcite(np.ones((2, 8), np.float32), None, np.ones((8, 2), np.float32),
                                 None, inner="gelu"), "inner"),
        (lambda: K.SqueezeExcite(np.ones((2, 8), np.float32), None, np.ones((8, 2), np.float32),
                                 None, gate="sigmoid"), "gate"),
        (lambda: K.SqueezeExcite(np.ones((2, 8), np.float32), None, np.ones((8, 2), np.float32),
                                 None)(np.ones((1, 2, 2, 7), np.float32)), "x"),
    ],
)
def test_se_linear_errors(isa, call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- TINYMNET_ISA


def _run_with_isa(value):
    env = dict(os.environ, TINYMNET_ISA=value)
    code = "import tinymnet.kernels as k; print(k.isa())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)


def test_isa_env_var_selects_scalar():
    proc = _run_with_isa("scalar")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "scalar"


@pytest.mark.parametrize("value", ["bogus", "unavailable"])
def test_isa_env_var_rejects_unknown_or_unavailable_names(value):
    if value == "unavailable":
        missing = [i for i in ("avx2", "avx512", "neon") if i not in K.available_isas()]
        value = missing[-1]
    proc = _run_with_isa(value)
    assert proc.returncode != 0, proc.stdout
    assert "TINYMNET_ISA" in proc.stderr, proc.stderr
    assert value in proc.stderr
