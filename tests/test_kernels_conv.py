"""Conv2d kernels (pointwise GEMM, depthwise, stem, direct/im2col) against
tinymnet.reference.conv2d, under every ISA the CPU supports (the `isa` fixture)."""
import os
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

STRIDES = st.sampled_from([1, 2, (2, 1), (1, 2)])
# The stem kernel ("stem": 3x3 stride 2, 3 input channels): the output widths of the nets
# (V3 / GhostNet 16, V1 / V2 / EfficientNet-Lite 32, widths 0.75 / 1.5: 24 / 48) and odd ones
# around the vector widths; TF SAME (0 top/left, 1 bottom/right at even sizes), torch's 1, none,
# asymmetric and wider than the kernel reaches.
STEM_COUT = st.sampled_from([1, 3, 7, 8, 16, 17, 24, 32, 33, 48])
STEM_PADDING = st.sampled_from([1, "same", 0, (0, 1, 0, 1), (1, 0, 1, 0), (1, 1, 0, 2), 2])


@st.composite
def paddings(draw, kh, kw):
    """0, symmetric (int or (ph, pw)), asymmetric (top, bottom, left, right) or "same"."""
    form = draw(st.sampled_from(["zero", "int", "pair", "four", "same"]))
    if form == "zero":
        return 0
    if form == "same":
        return "same"
    if form == "int":
        return draw(st.integers(0, max(kh, kw) // 2))
    if form == "pair":
        return (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    return tuple(draw(st.integers(0, k - 1)) for k in (kh, kh, kw, kw))


def _explicit_pads(padding):
    if padding == "same":
        return None
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return padding


@st.composite
def conv_configs(draw):
    kind = draw(st.sampled_from(["pointwise", "depthwise", "direct", "stem"]))
    if kind == "pointwise":
        cin, cout, groups, kh, kw, stride, padding = draw(CHANNELS), draw(CHANNELS), 1, 1, 1, 1, 0
    elif kind == "stem":  # MobileNet's first layer: 3x3, stride 2, three input channels
        cin, cout, groups, kh, kw, stride = 3, draw(STEM_COUT), 1, 3, 3, 2
        padding = draw(STEM_PADDING)
    else:
        kh = draw(st.sampled_from([1, 3, 5]))
        kw = draw(st.sampled_from([kh, kh, kh, 1, 3]))
        stride = draw(STRIDES)
        padding = draw(paddings(kh, kw))
        if kind == "depthwise":
            cin = cout = groups = draw(CHANNELS)
        else:
            cin, cout, groups = draw(st.sampled_from([1, 3, 7, 16, 17, 33])), draw(CHANNELS), 1
    pads = _explicit_pads(padding)
    min_h = 1 if pads is None else max(1, kh - pads[0] - pads[1])
    min_w = 1 if pads is None else max(1, kw - pads[2] - pads[3])
    h = draw(st.integers(min_h, min_h + 10))
    w = draw(st.integers(min_w, min_w + 10))
    return dict(n=draw(BATCH), h=h, w=w, cin=cin, cout=cout, groups=groups, kh=kh, kw=kw,
                stride=stride, padding=padding)


def expected_kinds(c):
    if c["groups"] > 1:
        return {"depthwise"}
    if (c["cin"], c["kh"], c["kw"]) == (3, 3, 3) and c["stride"] in (2, (2, 2)):
        return {"stem"}
    if (c["kh"], c["kw"]) == (1, 1) and c["stride"] in (1, (1, 1)):
        if c["padding"] == "same":
            return {"pointwise", "direct"}
        if _explicit_pads(c["padding"]) == (0, 0, 0, 0):
            return {"pointwise"}
    return {"direct"}


def make_conv(c, rng, bias=True, act=(None, None, None)):
    fan_in = (c["cin"] // c["groups"]) * c["kh"] * c["kw"]
    w = randn(rng, (c["cout"], c["cin"] // c["groups"], c["kh"], c["kw"]), fan_in**-0.5)
    b = randn(rng, (c["cout"],), 0.5) if bias else None
    kw = dict(stride=c["stride"], padding=c["padding"], groups=c["groups"], **act_kwargs(act))
    return w, b, kw


@KERNEL_SETTINGS
@given(c=conv_configs(), act=ACTIVATIONS, bias=st.booleans(), residual=st.booleans(), seed=SEEDS)
def test_conv2d_matches_reference(isa, c, act, bias, residual, seed):
    rng = rng_for(seed)
    w, b, kw = make_conv(c, rng, bias, act)
    conv = K.Conv2d(w, b, **kw)
    assert conv.isa == isa
    assert conv.kind in expected_kinds(c), (conv.kind, c)
    x = randn(rng, (c["n"], c["h"], c["w"], c["cin"]))
    ref_plain = R.conv2d(x, w, b, **kw)
    shape = ref_plain.shape
    assert conv.out_shape(x.shape) == shape
    r = randn(rng, shape) if residual else None
    ref = R.conv2d(x, w, b, residual=r, **kw) if residual else ref_plain
    y = conv(x, residual=r)
    assert_close_scaled(y, ref)


@KERNEL_SETTINGS
@given(c=conv_configs(), act=ACTIVATIONS, residual=st.booleans(), before=st.integers(0, 9),
       after=st.integers(0, 9), seed=SEEDS)
def test_conv2d_writes_a_channel_slice_of_out(isa, c, act, residual, before, after, seed):
    rng = rng_for(seed)
    w, b, kw = make_conv(c, rng, True, act)
    conv = K.Conv2d(w, b, **kw)
    x = randn(rng, (c["n"], c["h"], c["w"], c["cin"]))
    n, oh, ow, cout = conv.out_shape(x.shape)
    r = randn(rng, (n, oh, ow, cout)) if residual else None
    out = randn(rng, (n, oh, ow, before + cout + after), 100.0)
    original = out.copy()
    got = conv(x, residual=r, out=out, channel_offset=before)
    assert got is out
    assert_close_scaled(out[..., before:before + cout], R.conv2d(x, w, b, residual=r, **kw))
    np.testing.assert_array_equal(out[..., :before], original[..., :before])
    np.testing.assert_array_equal(out[..., before + cout:], original[..., before + cout:])


@pytest.mark.parametrize("weight_shape, groups, stride", [
    ((8, 8, 1, 1), 1, 1), ((8, 1, 3, 3), 8, 1), ((8, 1, 3, 3), 8, 2), ((8, 3, 3, 3), 1, 2),
    ((8, 8, 3, 3), 1, 1)])
def test_conv2d_refuses_an_out_that_overlaps_its_inputs(isa, weight_shape, groups, stride):
    # The kernels write out while still reading x and residual (depthwise and stem kernels
    # read a window's rows; a GEMM row's every channel): an overlap gave garbage, not an error.
    rng = rng_for(9)
    cin = weight_shape[1] * groups
    conv = K.Conv2d(randn(rng, weight_shape), randn(rng, (8,)), stride=stride,
                    padding=weight_shape[2] // 2, groups=groups)
    x = randn(rng, (1, 9, 9, cin))
    shape = conv.out_shape(x.shape)
    y = randn(rng, shape)
    with pytest.raises(ValueError, match="overlap residual"):
        conv(x, residual=y, out=y)
    if stride == 1:
        buf = randn(rng, (1, 9, 9, 8 + cin))
        with pytest.raises(ValueError, match="overlap x"):
            conv(buf[..., 4:4 + cin], out=buf, channel_offset=0)
    # Disjoint channel ranges of one buffer are fine: x in [0, cin), the output after it
    # (a concat built in place).
    if stride == 1:
        buf = randn(rng, (1, 9, 9, cin + 8))
        xin = buf[..., :cin].copy()
        conv(buf[..., :cin], out=buf, channel_offset=cin)
        np.testing.assert_array_equal(buf[..., :cin], xin)
        assert_close_scaled(buf[..., cin:], conv(xin))


@KERNEL_SETTINGS
@given(h=st.integers(1, 37), w=st.integers(1, 37), cout=STEM_COUT, padding=STEM_PADDING,
       act=ACTIVATIONS, before=st.integers(0, 5), after=st.integers(0, 5), seed=SEEDS)
def test_stem_kernel_odd_sizes_into_a_channel_slice(isa, h, w, cout, padding, act, before,
                                                    after, seed):
    """The stem kernel over sizes from 1x1 up (every border case: tiles that need zero padding
    on both sides, rows split into every tile width), writing channels [before, before + cout)
    of a wider buffer whose other channels must stay untouched."""
    rng = rng_for(seed)
    c = dict(cin=3, cout=cout, groups=1, kh=3, kw=3, stride=2, padding=padding)
    w_, b, kw = make_conv(c, rng, True, act)
    x = randn(rng, (1, h, w, 3))
    try:
        ref = R.conv2d(x, w_, b, **kw)
    except ValueError:  # the padded input is smaller than the kernel
        return
    conv = K.Conv2d(w_, b, **kw)
    assert (conv.kind, conv.isa) == ("stem", isa)
    out = randn(rng, ref.shape[:3] + (before + cout + after,), 100.0)
    original = out.copy()
    conv(x, out=out, channel_offset=before)
    assert_close_scaled(out[..., before:before + cout], ref)
    np.testing.assert_array_equal(out[..., :before], original[..., :before])
    np.testing.assert_array_equal(out[..., before + cout:], original[..., before + cout:])


@pytest.mark.parametrize("cout, padding, act", [(32, "same", "relu6"), (16, 1, "hardswish"),
                                                (48, 1, "relu"), (24, "same", None)])
def test_stem_kernel_mobilenet_sizes(isa, cout, padding, act):
    """Full-size stems (224x224 and a non-square, odd-sized input): many full tiles per row."""
    rng = rng_for(cout)
    c = dict(cin=3, cout=cout, groups=1, kh=3, kw=3, stride=2, padding=padding)
    w, b, kw = make_conv(c, rng, True, (act, None, None))
    for shape in [(1, 224, 224, 3), (2, 97, 130, 3)]:
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        conv = K.Conv2d(w, b, **kw)
        assert conv.kind == "stem"
        assert_close_scaled(conv(x), R.conv2d(x, w, b, **kw))


@KERNEL_SETTINGS
@given(c=conv_configs(), act=ACTIVATIONS, before=st.integers(0, 9), after=st.integers(1, 9),
       seed=SEEDS)
def test_conv2d_reads_a_channel_slice_of_x_in_place(isa, c, act, before, after, seed):
    """x = big[..., a:b] is read with big's pixel stride (how a plan's cheap depthwise reads
    the primary conv's part of a concat), no copy."""
    from tinymnet.kernels import _nhwc_view

    rng = rng_for(seed)
    w, b, kw = make_conv(c, rng, True, act)
    conv = K.Conv2d(w, b, **kw)
    big = randn(rng, (c["n"], c["h"], c["w"], before + c["cin"] + after))
    x = big[..., before:before + c["cin"]]
    assert _nhwc_view(x, c["cin"]) is x
    assert_close_scaled(conv(x), R.conv2d(np.ascontiguousarray(x), w, b, **kw))


@pytest.mark.parametrize(
    "n, h, w, cin, cout, k, stride, padding, groups, act",
    [
        (1, 64, 64, 3, 16, 3, 2, "same", 1, "hardswish"),  # stem
        (1, 56, 56, 32, 32, 3, 1, 1, 32, "relu6"),  # depthwise
        (2, 28, 30, 72, 72, 5, 2, 2, 72, "hardswish"),  # depthwise 5x5 stride 2
        (1, 28, 28, 40, 120, 1, 1, 0, 1, "relu"),  # pointwise expand
        (3, 14, 14, 96, 24, 1, 1, 0, 1, None),  # pointwise project, batched
        (1, 1, 1, 576, 1024, 1, 1, 0, 1, "hardswish"),  # classifier as a 1x1 conv
    ],
)
def test_conv2d_mobilenet_sized_layers(isa, n, h, w, cin, cout, k, stride, padding, groups, act):
    rng = rng_for(0)
    c = dict(cin=cin, cout=cout, groups=groups, kh=k, kw=k, stride=stride, padding=padding)
    wt, b, kw = make_conv(c, rng, True, (act, None, None))
    x = randn(rng, (n, h, w, cin))
    r = randn(rng, R.conv2d(x, wt, b, **kw).shape)
    assert_close_scaled(K.Conv2d(wt, b, **kw)(x, residual=r), R.conv2d(x, wt, b, residual=r, **kw))


@pytest.mark.parametrize("groups", [1, 17])
def test_conv2d_windows_entirely_in_the_padding_give_act_bias(isa, groups):
    rng = rng_for(3)
    w, b = randn(rng, (17, 17 // groups, 2, 2)), randn(rng, (17,))
    x = randn(rng, (1, 3, 4, 17))
    pads = (3, 0, 1, 4)  # top rows and right columns see only padding
    y = K.Conv2d(w, b, padding=pads, groups=groups, activation="hardswish")(x)
    ref = R.conv2d(x, w, b, padding=pads, groups=groups, activation="hardswish")
    assert_close_scaled(y, ref)
    assert_close_scaled(y[0, 0, 0], R.activation(b, "hardswish"))


@KERNEL_SETTINGS
@given(cin=st.sampled_from([3, 17, 64, 200]), cout=st.sampled_from([1, 7, 17, 24, 40, 48, 100]),
       cuts=st.lists(st.integers(12, 80), min_size=1, max_size=4),
       act=ACTIVATIONS, seed=SEEDS)
def test_pointwise_cut_into_pixel_ranges_gives_the_bits_of_one_call(isa, cin, cout, cuts, act,
                                                                   seed):
    # A thread pool splits a 1x1 conv into pixel ranges of >= 12 pixels anywhere (two threads
    # cut where the cores' speeds say): every output must be bit-identical to one call's, so
    # the GEMM adds each row's sums in an order that does not depend on its tile height.
    rng = rng_for(seed)
    wt, b, kw = make_conv(dict(cin=cin, cout=cout, groups=1, kh=1, kw=1, stride=1, padding=0),
                          rng, True, act)
    conv = K.Conv2d(wt, b, **kw)
    pixels = 12 * len(cuts) + sum(cuts)
    x = randn(rng, (1, 1, pixels, cin))
    want = conv(x)
    bounds = np.cumsum([0] + cuts + [pixels - sum(cuts)])
    got = np.concatenate([conv(x[:, :, a:e]) for a, e in zip(bounds[:-1], bounds[1:])], axis=2)
    np.testing.assert_array_equal(got, want)


def test_conv2d_concurrent_calls_from_threads(isa):
    """Calls release the GIL; the same op used from several threads must give the same answers."""
    from concurrent.futures import ThreadPoolExecutor

    rng = rng_for(4)
    ops = [K.Conv2d(randn(rng, (24, 16, 3, 3)), None, 2, "same"),  # direct (im2col scratch)
           K.Conv2d(randn(rng, (16, 1, 3, 3)), None, 1, 1, 16),  # depthwise
           K.Conv2d(randn(rng, (24, 16, 1, 1)))]  # pointwise
    xs = [randn(rng, (2, 20 + i, 17, 16)) for i in range(8)]
    expected = [[op(x) for x in xs] for op in ops]
    with ThreadPoolExecutor(4) as pool:
        for op, want in zip(ops, expected):
            got = list(pool.map(op, xs * 3))
            for i, y in enumerate(got):
                np.testing.assert_array_equal(y, want[i % len(xs)])


@pytest.mark.parametrize("groups", [1, 8])
def test_conv2d_accepts_non_contiguous_inputs(isa, groups):
    rng = rng_for(1)
    w = randn(rng, (8, 8 // groups, 3, 3))
    big = randn(rng, (2, 9, 11, 16))
    x = big[:, :, ::-1, ::2]  # strided and reversed views
    r_big = randn(rng, (2, 10, 9, 8)).transpose(0, 2, 1, 3)  # (2, 9, 10, 8), not contiguous
    conv = K.Conv2d(w, None, stride=(1, 1), padding=(1, 1, 1, 0), groups=groups)
    assert_close_scaled(conv(x, residual=r_big),
                        R.conv2d(x, w, None, padding=(1, 1, 1, 0), groups=groups, residual=r_big))


def test_ops_bind_to_the_isa_current_at_construction(isa):
    w = np.ones((4, 4, 1, 1), np.float32)
    conv = K.Conv2d(w)
    with K.use_isa("scalar"):
        scalar_conv = K.Conv2d(w)
        assert K.isa() == "scalar"
    assert K.isa() == isa
    assert (conv.isa, scalar_conv.isa) == (isa, "scalar")
    x = np.ones((1, 2, 2, 4), np.float32)
    np.testing.assert_array_equal(conv(x), scalar_conv(x))


@st.composite
def dilated_depthwise(draw):
    """A dilated depthwise kernel written densely (as importers of dilated convs do): only the
    taps on a lattice of step (dh, dw) are nonzero. Conv2d runs just those taps."""
    k = draw(st.sampled_from([2, 3, 5]))
    dh, dw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kh, kw = (k - 1) * dh + 1, (k - 1) * dw + 1
    padding = draw(st.sampled_from(["same", "pads"]))
    if padding == "pads":
        padding = tuple(draw(st.integers(0, q - 1)) for q in (kh, kh, kw, kw))
    pads = _explicit_pads(padding)
    min_h = 1 if pads is None else max(1, kh - pads[0] - pads[1])
    min_w = 1 if pads is None else max(1, kw - pads[2] - pads[3])
    c = draw(CHANNELS.filter(lambda c: c > 1))  # 1 channel is a plain conv
    return dict(n=1, h=draw(st.integers(min_h, min_h + 12)), w=draw(st.integers(min_w, min_w + 40)),
                cin=c, cout=c, groups=c, kh=kh, kw=kw, dil=(dh, dw), stride=draw(STRIDES),
                padding=padding)


@KERNEL_SETTINGS
@given(c=dilated_depthwise(), act=ACTIVATIONS, seed=SEEDS)
def test_depthwise_dilated_kernel_written_densely(isa, c, act, seed):
    rng = rng_for(seed)
    w, b, kw = make_conv(c, rng, True, act)
    dh, dw = c["dil"]
    lattice = np.zeros(w.shape[2:], bool)
    lattice[::dh, ::dw] = True
    w = np.where(lattice, w, 0).astype(np.float32)
    conv = K.Conv2d(w, b, **kw)
    assert conv.kind == "depthwise"
    x = randn(rng, (c["n"], c["h"], c["w"], c["cin"]))
    assert_close_scaled(conv(x), R.conv2d(x, w, b, **kw))


@pytest.mark.parametrize("kind", ["pointwise", "depthwise", "stem", "direct"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_conv2d_non_finite_inputs_stay_local(isa, kind, bad):
    """A NaN/Inf pixel must not crash or leak outside its receptive field."""
    rng = rng_for(2)
    c = {"pointwise": dict(cin=17, cout=33, groups=1, kh=1, kw=1, stride=1, padding=0),
         "depthwise": dict(cin=17, cout=17, groups=17, kh=3, kw=3, stride=1, padding=1),
         "stem": dict(cin=3, cout=16, groups=1, kh=3, kw=3, stride=2, padding="same"),
         "direct": dict(cin=3, cout=16, groups=1, kh=3, kw=3, stride=1, padding="same")}[kind]
    w, b, kw = make_conv(c, rng, True, ("relu6", None, None))
    x = randn(rng, (1, 9, 9, c["cin"]))
    x[0, 4, 4, 1] = bad
    y = K.Conv2d(w, b, **kw)(x)
    ref = R.conv2d(x, w, b, **kw)
    finite = np.isfinite(R.conv2d(x, w, b, **dict(kw, activation=None)))
    assert y.shape == ref.shape
    assert not finite.all()
    assert np.all(np.isfinite(y[finite]))
    assert np.max(np.abs(y[finite] - ref[finite])) <= 1e-5 * max(np.max(np.abs(ref[finite])), 1)


# ----------------------------------------------------------------------------- errors


def _w(cout=4, cin=3, k=3):
    return np.ones((cout, cin, k, k), np.float32)


def _x(shape=(1, 5, 5, 3), dtype=np.float32):
    return np.ones(shape, dtype)


@pytest.mark.parametrize(
    "make, call, match",
    [
        (lambda: K.Conv2d(_w()), lambda c: c(_x(dtype=np.int32)), "x.*floating-point"),
        (lambda: K.Conv2d(_w()), lambda c: c(_x((5, 5, 3))), "x"),
        (lambda: K.Conv2d(_w()), lambda c: c([[[[1.0]]]]), "x"),
        (lambda: K.Conv2d(_w()), lambda c: c(_x((1, 5, 5, 4))), "channels"),
        (lambda: K.Conv2d(_w(k=5)), lambda c: c(_x((1, 3, 3, 3))), "kernel"),
        (lambda: K.Conv2d(_w(), padding=1), lambda c: c(_x(), residual=_x((1, 5, 5, 3))),
         "residual"),
        (lambda: K.Conv2d(_w(), padding=1),
         lambda c: c(_x(), residual=_x((1, 5, 5, 4), np.bool_)), "residual"),
        (lambda: K.Conv2d(_w(), padding=1), lambda c: c(_x(), out=_x((1, 4, 5, 4))), "out"),
        (lambda: K.Conv2d(_w(), padding=1),
         lambda c: c(_x(), out=_x((1, 5, 5, 4), np.float64)), "out"),
        (lambda: K.Conv2d(_w(), padding=1),
         lambda c: c(_x(), out=_x((1, 5, 5, 6)), channel_offset=3), "channel_offset"),
        (lambda: K.Conv2d(_w(), padding=1),
         lambda c: c(_x(), out=_x((1, 5, 5, 6)), channel_offset=-1), "channel_offset"),
    ],
)
def test_conv2d_call_errors(isa, make, call, match):
    conv = make()
    with pytest.raises(ValueError, match=match):
        call(conv)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(weight=np.ones((4, 3, 3), np.float32)), "weight"),
        (dict(weight=np.ones((4, 3, 3, 3), np.int32)), "weight"),
        (dict(weight=_w(), bias=np.ones(3, np.float32)), "bias"),
        (dict(weight=_w(), activation="gelu"), "activation"),
        (dict(weight=_w(), padding="valid"), "padding"),
        (dict(weight=_w(), padding=(1, 2, 3)), "padding"),
        (dict(weight=_w(), padding=-1), "padding"),
        (dict(weight=_w(), stride=0), "stride"),
        (dict(weight=_w(), stride=(1, 2, 3)), "stride"),
        (dict(weight=_w(cout=8, cin=2), groups=2), "groups"),  # grouped, 1 < groups < Cin
        (dict(weight=_w(cout=8, cin=1), groups=4), "groups"),  # channel multiplier 2
        (dict(weight=_w(), groups=0), "groups"),
    ],
)
def test_conv2d_constructor_errors(isa, kwargs, match):
    with pytest.raises(ValueError, match=match):
        K.Conv2d(**kwargs)


def test_isa_errors():
    with pytest.raises(ValueError, match="isa"):
        K.set_isa("bogus")
    with pytest.raises(ValueError):
        with K.use_isa("sse9"):
            pass


def test_pointwise_weight_blocks_of_any_size_give_the_same_answer(tmp_path):
    """GEMMs split their packed weights into L2-sized panel blocks (a quarter of this CPU's L2,
    or TINYMNET_GEMM_BLOCK_KB): with 1 KB blocks every panel is its own block, and the output
    must not change (bit for bit) on any ISA here."""
    import subprocess
    import sys
    script = (
        "import numpy as np, sys\n"
        "from tinymnet import kernels as K\n"
        "rng = np.random.default_rng(7)\n"
        "w = rng.standard_normal((200, 67, 1, 1)).astype(np.float32)\n"
        "b = rng.standard_normal(200).astype(np.float32)\n"
        "x = rng.standard_normal((1, 9, 11, 67)).astype(np.float32)\n"
        "outs = []\n"
        "for isa in K.available_isas():\n"
        "    with K.use_isa(isa):\n"
        "        outs.append(K.Conv2d(w, b, activation='relu6')(x))\n"
        "np.save(sys.argv[1], np.stack(outs))\n")
    outs = {}
    for kb in ("1", ""):
        env = dict(os.environ, TINYMNET_GEMM_BLOCK_KB=kb)
        dest = tmp_path / f"out{kb or 'default'}.npy"
        subprocess.run([sys.executable, "-c", script, str(dest)], check=True, env=env)
        outs[kb] = np.load(dest)
    np.testing.assert_array_equal(outs["1"], outs[""])
    x = np.random.default_rng(7)
    ref_w = x.standard_normal((200, 67, 1, 1)).astype(np.float32)
    ref_b = x.standard_normal(200).astype(np.float32)
    ref_x = x.standard_normal((1, 9, 11, 67)).astype(np.float32)
    ref = R.conv2d(ref_x, ref_w, ref_b, activation="relu6")
    for y in outs["1"]:
        assert_close_scaled(y, ref)
