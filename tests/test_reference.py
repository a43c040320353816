"""The NumPy reference ops (the oracle for the kernels): hand-computed cases, then parity with
torch.nn.functional when torch is importable."""
import numpy as np
import pytest

from tinymnet import reference as R


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous().numpy()


# ----------------------------------------------------------------------- hand-computed cases


def test_same_padding_stride2_even_input_pads_after():
    # 4 -> ceil(4/2) = 2 outputs; a 3-tap window needs 1 pad pixel and TF puts it after.
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 4, 1)
    w = np.ones((1, 1, 1, 3), np.float32)
    y = R.conv2d(x, w, stride=2, padding="same")
    np.testing.assert_array_equal(y.ravel(), [0 + 1 + 2, 2 + 3 + 0])
    assert y.shape == (1, 1, 2, 1)
    # The same as explicit (top, bottom, left, right) = (0, 0, 0, 1).
    np.testing.assert_array_equal(y, R.conv2d(x, w, stride=2, padding=(0, 0, 0, 1)))


def test_conv_asymmetric_padding_and_rectangular_stride():
    x = np.arange(1, 7, dtype=np.float32).reshape(1, 2, 3, 1)  # [[1,2,3],[4,5,6]]
    w = np.ones((1, 1, 2, 2), np.float32)
    y = R.conv2d(x, w, stride=(2, 1), padding=(1, 0, 0, 1))
    # padded rows: [0,0,0,0], [1,2,3,0], [4,5,6,0]; windows start at rows 0 only (stride 2).
    np.testing.assert_array_equal(y[0, :, :, 0], [[3, 5, 3]])


def test_conv_groups_bias_residual_activation():
    x = rand((1, 3, 3, 4))
    w = rand((6, 2, 1, 1), 1)
    b = rand((6,), 2)
    r = rand((1, 3, 3, 6), 3)
    y = R.conv2d(x, w, b, groups=2, activation="relu", residual=r)
    g0 = x[..., :2] @ w[:3, :, 0, 0].T
    g1 = x[..., 2:] @ w[3:, :, 0, 0].T
    expect = np.maximum(np.concatenate([g0, g1], -1) + b + r, 0)
    np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-5)
    assert y.dtype == np.float32


def test_activations_by_hand():
    x = np.array([-4.0, -3.0, -1.0, 0.0, 1.5, 3.0, 7.0], np.float32)
    np.testing.assert_allclose(R.activation(x, "relu"), [0, 0, 0, 0, 1.5, 3, 7])
    np.testing.assert_allclose(R.activation(x, "relu6"), [0, 0, 0, 0, 1.5, 3, 6])
    gate = np.clip(x / 6 + 0.5, 0, 1)
    np.testing.assert_allclose(R.activation(x, "hardsigmoid"), gate, rtol=1e-6)
    np.testing.assert_allclose(R.activation(x, "hardswish"), x * gate, rtol=1e-6)
    onnx_gate = np.clip(0.2 * x + 0.5, 0, 1)
    np.testing.assert_allclose(R.activation(x, "hardsigmoid", 0.2, 0.5), onnx_gate, rtol=1e-6)
    np.testing.assert_array_equal(R.activation(x, None), x)
    np.testing.assert_array_equal(R.activation(x, "none"), x)


def test_avg_pool_count_include_pad():
    x = np.ones((1, 2, 2, 1), np.float32)
    with_pad = R.avg_pool2d(x, 3, 1, 1, count_include_pad=True)
    without = R.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    np.testing.assert_allclose(with_pad.ravel(), [4 / 9] * 4, rtol=1e-6)
    np.testing.assert_array_equal(without.ravel(), [1, 1, 1, 1])


def test_max_pool_padding_never_wins():
    x = -np.ones((1, 3, 3, 2), np.float32)
    assert np.all(R.max_pool2d(x, 3, 2, "same") == -1)


def test_global_pool_mul_add_squeeze_excite():
    x = rand((2, 3, 5, 4))
    np.testing.assert_allclose(R.global_avg_pool(x), x.mean((1, 2), keepdims=True), rtol=1e-5)
    s = rand((2, 1, 1, 4), 1)
    np.testing.assert_allclose(R.mul(x, s), x * s, rtol=1e-6)
    np.testing.assert_allclose(R.add(x, x, "relu"), np.maximum(2 * x, 0), rtol=1e-6)
    w1, b1, w2, b2 = rand((2, 4), 2), rand((2,), 3), rand((4, 2), 4), rand((4,), 5)
    h = np.maximum(x.mean((1, 2)) @ w1.T + b1, 0)
    g = np.clip((h @ w2.T + b2) / 6 + 0.5, 0, 1)
    expect = x * g[:, None, None, :]
    np.testing.assert_allclose(R.squeeze_excite(x, w1, b1, w2, b2), expect, rtol=1e-5, atol=1e-6)
    # 1x1 conv weights are accepted too.
    y4 = R.squeeze_excite(x, w1[:, :, None, None], b1, w2[:, :, None, None], b2)
    np.testing.assert_array_equal(y4, R.squeeze_excite(x, w1, b1, w2, b2))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: R.conv2d(rand((1, 4, 4)), rand((2, 3, 1, 1))), "x"),
        (lambda: R.conv2d(rand((1, 4, 4, 3)), rand((2, 4, 1, 1))), "weight"),
        (lambda: R.conv2d(rand((1, 4, 4, 4)), rand((3, 2, 1, 1)), groups=2), "groups"),
        (lambda: R.conv2d(rand((1, 2, 2, 3)), rand((2, 3, 5, 5))), "kernel"),
        (lambda: R.conv2d(rand((1, 4, 4, 3)), rand((2, 3, 1, 1)), rand((3,))), "bias"),
        (lambda: R.conv2d(rand((1, 4, 4, 3)), rand((2, 3, 1, 1)), padding="valid"), "padding"),
        (lambda: R.conv2d(rand((1, 4, 4, 3)), rand((2, 3, 1, 1)), padding=(1, 2, 3)), "padding"),
        (lambda: R.conv2d(rand((1, 4, 4, 3)), rand((2, 3, 1, 1)), stride=0), "stride"),
        (lambda: R.conv2d(rand((1, 4, 4, 3)), rand((2, 3, 1, 1)), activation="gelu"), "activation"),
        (lambda: R.conv2d(rand((1, 4, 4, 3)), rand((2, 3, 1, 1)), residual=rand((1, 4, 4, 3))),
         "residual"),
        (lambda: R.linear(rand((2, 3)), rand((4, 5))), "weight"),
        (lambda: R.avg_pool2d(rand((1, 2, 2, 1)), 3), "kernel"),
        (lambda: R.max_pool2d(rand((1, 4, 4, 1)), 0), "kernel"),
        (lambda: R.mul(rand((1, 2, 2, 3)), rand((1, 1, 1, 2))), "s"),
        (lambda: R.add(rand((1, 2, 2, 3)), rand((1, 2, 2, 2))), "b"),
        (lambda: R.squeeze_excite(rand((1, 2, 2, 3)), rand((2, 4)), None, rand((3, 2)), None), "w1"),
        (lambda: R.squeeze_excite(rand((1, 2, 2, 3)), rand((2, 3)), None, rand((3, 2)), None,
                                  gate=None), "gate"),
    ],
)
def test_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------- parity with torch


@pytest.fixture(scope="module")
def torch_f():
    torch = pytest.importorskip("torch")
    return torch, torch.nn.functional


CONV_CASES = [
    # (x shape NHWC, cout, k, stride, padding (t, b, l, r), groups)
    ((2, 9, 7, 3), 8, 3, 2, (1, 1, 1, 1), 1),      # stem
    ((1, 8, 8, 6), 6, 3, 1, (1, 1, 1, 1), 6),      # depthwise
    ((1, 8, 9, 6), 6, 5, 2, (1, 2, 2, 1), 6),      # depthwise 5x5, asymmetric
    ((1, 5, 5, 8), 12, 1, 1, (0, 0, 0, 0), 1),     # pointwise
    ((3, 6, 7, 8), 4, 3, (2, 1), (0, 1, 2, 0), 2),  # grouped, rectangular stride
    ((1, 1, 1, 5), 3, 1, 1, (0, 0, 0, 0), 1),      # 1x1 spatial
]


@pytest.mark.parametrize("shape, cout, k, stride, pads, groups", CONV_CASES)
def test_conv2d_matches_torch(torch_f, shape, cout, k, stride, pads, groups):
    torch, F = torch_f
    x = rand(shape)
    w = rand((cout, shape[3] // groups, k, k), 1)
    b = rand((cout,), 2)
    y = R.conv2d(x, w, b, stride=stride, padding=pads, groups=groups)
    t, bo, l, r = pads
    xt = F.pad(torch.from_numpy(nchw(x)), (l, r, t, bo))
    expect = nhwc(F.conv2d(xt, torch.from_numpy(w), torch.from_numpy(b), stride=stride,
                           groups=groups))
    np.testing.assert_allclose(y, expect, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "name, fn",
    [("relu", "relu"), ("relu6", "relu6"), ("hardswish", "hardswish"),
     ("hardsigmoid", "hardsigmoid")],
)
def test_activations_match_torch(torch_f, name, fn):
    torch, F = torch_f
    x = np.linspace(-8, 8, 1001, dtype=np.float32)
    expect = getattr(F, fn)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(R.activation(x, name), expect, rtol=1e-6, atol=1e-6)


def test_linear_matches_torch(torch_f):
    torch, F = torch_f
    x, w, b = rand((3, 17)), rand((5, 17), 1), rand((5,), 2)
    expect = F.hardswish(F.linear(*map(torch.from_numpy, (x, w, b)))).numpy()
    np.testing.assert_allclose(R.linear(x, w, b, "hardswish"), expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "k, stride, pad, count_include_pad",
    [(3, 2, 1, True), (3, 2, 1, False), (2, 2, 0, True), (3, 1, 1, False), ((3, 2), (2, 1), (1, 0), True)],
)
def test_pools_match_torch(torch_f, k, stride, pad, count_include_pad):
    torch, F = torch_f
    x = rand((2, 7, 8, 5))
    xt = torch.from_numpy(nchw(x))
    avg = F.avg_pool2d(xt, k, stride, pad, count_include_pad=count_include_pad)
    np.testing.assert_allclose(R.avg_pool2d(x, k, stride, pad, count_include_pad), nhwc(avg),
                               rtol=1e-5, atol=1e-6)
    mx = F.max_pool2d(xt, k, stride, pad)
    np.testing.assert_array_equal(R.max_pool2d(x, k, stride, pad), nhwc(mx))


def test_squeeze_excite_matches_torch(torch_f):
    torch, F = torch_f
    x, w1, b1, w2, b2 = rand((2, 4, 3, 8)), rand((3, 8), 1), rand((3,), 2), rand((8, 3), 3), rand((8,), 4)
    xt = torch.from_numpy(nchw(x))
    s = F.adaptive_avg_pool2d(xt, 1).flatten(1)
    g = F.hardsigmoid(F.linear(F.relu(F.linear(s, torch.from_numpy(w1), torch.from_numpy(b1))),
                               torch.from_numpy(w2), torch.from_numpy(b2)))
    expect = nhwc(xt * g[:, :, None, None])
    np.testing.assert_allclose(R.squeeze_excite(x, w1, b1, w2, b2), expect, rtol=1e-5, atol=1e-6)
