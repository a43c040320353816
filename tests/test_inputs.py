"""What Model / Classifier / kernels do with awkward inputs: other float dtypes, any strides
and lists are converted; int/bool/complex/object, wrong ranks and shapes raise ValueError
naming the argument; NaN/Inf never crash (a model gives NaN logits for the images holding
them, under every ISA); results never alias memory a later call writes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinymnet
from tinymnet import kernels as K

SMALL = "mobilenet_v1_025_224_tf"   # fastest bundled model (ReLU6)
SE = "mobilenet_v3_small_100_224_tf"  # h-swish and squeeze-excite


@pytest.fixture(scope="module")
def model():
    return tinymnet.load(SMALL, threads=2)


def _batch(n, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 224, 224, 3)).astype(np.float32)


# ------------------------------------------------------------------ Model: accepted inputs

def _unaligned(x):
    buf = np.empty(x.nbytes + 1, np.uint8)
    y = np.frombuffer(buf.data, np.float32, x.size, offset=1).reshape(x.shape)
    y[...] = x
    assert not y.flags.aligned
    return y


def _readonly(x):
    x = x.copy()
    x.flags.writeable = False
    return x


def _view_of_bigger(x):
    big = np.zeros((x.shape[0] + 2, 230, 231, 5), np.float32)
    big[1:-1, 3:227, 5:229, 1:4] = x
    return big[1:-1, 3:227, 5:229, 1:4]  # strided view into a larger buffer


CONVERSIONS = {
    "float64": lambda x: x.astype(np.float64),
    "float16": lambda x: x.astype(np.float16),
    "big-endian": lambda x: x.astype(">f4"),
    "fortran": np.asfortranarray,
    "negative strides": lambda x: np.flip(np.flip(x).copy()),
    "view of a bigger buffer": _view_of_bigger,
    "contiguous slice of a bigger batch": lambda x: np.concatenate([x, x, x])[len(x):2 * len(x)],
    "read-only": _readonly,
    "unaligned": _unaligned,
    "nested list": lambda x: x.tolist(),
}


@pytest.mark.parametrize("how", sorted(CONVERSIONS))
def test_model_converts_inputs(model, how):
    x = _batch(3)
    converted = CONVERSIONS[how](x)
    want = model(np.ascontiguousarray(np.asarray(converted), dtype=np.float32))
    assert np.array_equal(model(converted), want)
    if how != "float16":  # float16 rounds the input itself
        assert np.array_equal(want, model(x))


def test_model_nchw_layout_and_transposed_views(model):
    x = _batch(2, seed=1)
    want = model(x)
    assert np.array_equal(model(x.transpose(0, 3, 1, 2), layout="NCHW"), want)
    assert np.array_equal(model(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), layout="NCHW"), want)
    assert np.array_equal(model(x[0].transpose(2, 0, 1), layout="NCHW"), want[0])


def test_model_single_image_and_empty_batch(model):
    x = _batch(2, seed=2)
    want = model(x)
    one = model(x[1])
    assert one.shape == (1001,) and np.array_equal(one, want[1])
    empty = model(x[:0])
    assert empty.shape == (0, 1001) and empty.dtype == np.float32


def test_model_huge_strided_batch_is_converted_in_chunks(model):
    x = _batch(1, seed=3)
    many = np.broadcast_to(x, (37, 224, 224, 3))  # zero strides, read-only, 37 > one chunk
    y = model(many)
    assert y.shape == (37, 1001)
    assert np.array_equal(y, np.broadcast_to(model(x), y.shape))


def test_results_never_alias_the_model(model):
    a, b = _batch(1, seed=4), _batch(2, seed=5)
    ya = model(a)
    kept = ya.copy()
    yb = model(b)
    y1 = model(a[0])
    model(b)
    assert np.array_equal(ya, kept) and np.array_equal(y1, kept[0])
    assert not np.shares_memory(ya, yb) and ya.flags.writeable and yb.flags.owndata


# ------------------------------------------------------------------ Model: refused inputs

@pytest.mark.parametrize("x, layout, match", [
    (np.zeros((1, 224, 224, 3), np.int32), "NHWC", "x must be floating-point.*int32"),
    (np.zeros((1, 224, 224, 3), np.uint8), "NHWC", "normalised"),
    (np.zeros((1, 224, 224, 3), bool), "NHWC", "x must be floating-point.*bool"),
    (np.zeros((1, 224, 224, 3), np.complex64), "NHWC", "complex64"),
    (np.zeros((1, 224, 224, 3), object), "NHWC", "object"),
    ("image.jpg", "NHWC", "floating-point"),
    (None, "NHWC", "floating-point"),
    ([[0.0, 1.0], [2.0]], "NHWC", "x must be a numpy array or convertible"),
    (np.zeros((224, 3), np.float32), "NHWC", r"x must be an NHWC batch.*\(224, 3\)"),
    (np.zeros((1, 1, 224, 224, 3), np.float32), "NHWC", "x must be an NHWC batch"),
    (np.zeros((1, 225, 224, 3), np.float32), "NHWC", r"\(N, 224, 224, 3\).*\(1, 225, 224, 3\)"),
    (np.zeros((1, 224, 224, 4), np.float32), "NHWC", "NHWC batch"),
    (np.zeros((2, 3, 224, 224), np.float32), "NHWC", 'looks like NCHW: pass layout="NCHW"'),
    (np.zeros((2, 224, 224, 3), np.float32), "NCHW", 'looks like NHWC'),
    (np.zeros((1, 224, 224, 3), np.float32), "nhwc", "layout"),
])
def test_model_refuses_bad_inputs(model, x, layout, match):
    with pytest.raises(ValueError, match=match):
        model(x, layout=layout)


# ------------------------------------------------------------------ NaN / Inf, every ISA

@pytest.mark.parametrize("name", [SMALL, SE])
def test_nan_and_inf_images_get_nan_logits_on_every_isa(isa, name):
    m = tinymnet.load(name, threads=2)
    assert m.isa == isa
    x = _batch(6, seed=6)
    clean = m(x)
    x[1] = np.nan
    x[2] = np.inf
    x[3, 100:110, 50:60] = -np.inf
    x[4, 7, 9, 2] = np.nan   # one pixel: ReLU clamps would hide it
    x[5] = 3e38            # finite but absurd: no crash, whatever comes out
    y = m(x)
    assert y.shape == clean.shape
    assert np.array_equal(y[0], clean[0])
    assert np.isnan(y[1:5]).all()


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 3), data=st.data())
def test_non_finite_pixels_anywhere(model, n, data):
    x = _batch(n, seed=n)
    bad = set()
    for _ in range(data.draw(st.integers(0, 4))):
        i = data.draw(st.integers(0, n - 1))
        h, w, c = (data.draw(st.integers(0, s - 1)) for s in (224, 224, 3))
        x[i, h, w, c] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        bad.add(i)
    y = model(x)
    for i in range(n):
        assert np.isnan(y[i]).all() == (i in bad)
        if i not in bad:
            assert np.isfinite(y[i]).all()


# ------------------------------------------------------------------ Classifier

@pytest.fixture(scope="module")
def clf():
    return tinymnet.Classifier(SMALL, threads=1)


def test_classifier_strided_and_readonly_images(clf):
    img = np.random.default_rng(7).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    want = clf.classify(np.ascontiguousarray(img[::-1, ::2]), top_k=3)
    ro = img[::-1, ::2]
    ro.flags.writeable = False
    assert clf.classify(ro, top_k=3) == want
    assert clf.classify(np.asfortranarray(img[::-1, ::2]), top_k=3) == want


def test_classifier_predict_single_image_and_batch(clf):
    x = np.stack([clf.prepare(np.full((50, 60, 3), v, np.uint8)) for v in (0, 200)])
    batch = clf.predict(x)
    assert batch.shape == (2, 1000)
    assert np.allclose(batch.sum(axis=1), 1)
    assert np.array_equal(clf.predict(x[1]), batch[1])
    assert np.array_equal(clf.predict(x.astype(np.float64)), batch)
    x[0, 0, 0, 0] = np.nan
    assert np.isnan(clf.predict(x)[0]).all() and np.array_equal(clf.predict(x)[1], batch[1])


@pytest.mark.parametrize("call, match", [
    (lambda c: c.classify(np.zeros((9, 9, 3), np.float32)), "uint8"),
    (lambda c: c.classify(np.zeros((9, 9, 3), bool)), "uint8"),
    (lambda c: c.classify(np.zeros((0, 9, 3), np.uint8)), r"\(H, W, 3\)"),
    (lambda c: c.classify(np.zeros((9, 9, 5), np.uint8)), r"\(H, W, 3\)"),
    (lambda c: c.classify(None), "images must be"),
    (lambda c: c.classify(7), "images must be"),
    (lambda c: c.classify([np.zeros((9, 9, 3), np.uint8)], batch_size=0), "batch_size"),
    (lambda c: c.classify([np.zeros((9, 9, 3), np.uint8)], top_k=0), "top_k"),
    (lambda c: c.predict(np.zeros((1, 224, 224, 3), np.uint8)), "floating-point"),
    (lambda c: c.predict(np.zeros((1, 100, 100, 3), np.float32)), "224, 224, 3"),
])
def test_classifier_refuses_bad_inputs(clf, call, match):
    with pytest.raises(ValueError, match=match):
        call(clf)


def test_classifier_empty_sequence(clf):
    assert clf.classify([]) == []


# ------------------------------------------------------------------ kernels

def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _kernel_cases():
    conv = K.Conv2d(_rand(6, 4, 1, 1), _rand(6, seed=1), activation="relu6")
    dw = K.Conv2d(_rand(4, 1, 3, 3), stride=2, padding="same", groups=4)
    lin = K.Linear(_rand(5, 7), activation="hardswish")
    se = K.SqueezeExcite(_rand(2, 4), None, _rand(4, 2), None)
    pool = K.AvgPool2d(2, padding=(0, 1, 1, 0))
    return {
        "pointwise": (conv, lambda x: (x,), (2, 5, 3, 4)),
        "depthwise": (dw, lambda x: (x,), (2, 5, 3, 4)),
        "linear": (lin, lambda x: (x.reshape(2, -1)[:, :7],), (2, 5, 3, 4)),
        "se": (se, lambda x: (x,), (2, 5, 3, 4)),
        "pool": (pool, lambda x: (x,), (2, 5, 3, 4)),
        "gap": (K.global_avg_pool, lambda x: (x,), (2, 5, 3, 4)),
        "mul": (K.mul, lambda x: (x, x[:, :1, :1]), (2, 5, 3, 4)),
        "add": (K.add, lambda x: (x, x[::-1]), (2, 5, 3, 4)),
        "activation": (lambda x: K.activation(x, "hardsigmoid"), lambda x: (x,), (2, 5, 3, 4)),
    }


@pytest.mark.parametrize("op", sorted(_kernel_cases()))
@pytest.mark.parametrize("how", ["float64", "float16", "fortran", "negative strides",
                                 "view of a bigger buffer", "read-only", "unaligned",
                                 "nested list"])
def test_kernels_convert_inputs(op, how):
    fn, args, shape = _kernel_cases()[op]
    x = _rand(*shape, seed=3)
    plain = [np.ascontiguousarray(a) for a in args(x)]
    odd = [CONVERSIONS[how](a) if how != "view of a bigger buffer" else _bigger(a)
           for a in plain]
    want = fn(*[np.ascontiguousarray(np.asarray(a), dtype=np.float32) for a in odd])
    assert np.array_equal(fn(*odd), want)


def _bigger(a):
    big = np.zeros(tuple(s + 3 for s in a.shape), np.float32)
    view = big[tuple(slice(1, 1 + s) for s in a.shape)]
    view[...] = a
    return view


@pytest.mark.parametrize("call, match", [
    (lambda: K.Conv2d(_rand(4, 4, 1, 1))(np.zeros((1, 2, 2, 4), np.int16)), "x.*int16"),
    (lambda: K.Conv2d(_rand(4, 4, 1, 1))(_rand(1, 2, 2, 4), residual=np.zeros((1, 2, 2, 4), bool)),
     "residual.*bool"),
    (lambda: K.mul(_rand(1, 2, 2, 4), np.ones((1, 1, 1, 4), np.complex64)), "s.*complex"),
    (lambda: K.add(_rand(3), np.zeros(3, object)), "b.*object"),
    (lambda: K.Linear(_rand(3, 2))([[1.0, 2.0], [3.0]]), "x must be a numpy array or conv"),
    (lambda: K.global_avg_pool(_rand(2, 2, 4)), "NHWC"),
    (lambda: K.global_avg_pool(_rand(0, 2, 2, 4)), "empty"),
])
def test_kernels_refuse_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_kernels_non_finite_inputs_stay_local_on_every_isa(data):
    """NaN/Inf never crash a kernel, and only reach the outputs that read them."""
    x = _rand(1, 6, 5, 4, seed=9)
    h, w = data.draw(st.integers(0, 5)), data.draw(st.integers(0, 4))
    x[0, h, w, data.draw(st.integers(0, 3))] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    for isa in K.available_isas():
        with K.use_isa(isa):
            pw = K.Conv2d(_rand(3, 4, 1, 1), activation=data.draw(
                st.sampled_from([None, "relu", "relu6", "hardswish"])))
            dw = K.Conv2d(_rand(4, 1, 3, 3), padding=1, groups=4)
        clean_pw, clean_dw = pw(np.nan_to_num(x, nan=0, posinf=0, neginf=0)), None
        y = pw(x)
        other = np.ones((6, 5), bool)
        other[h, w] = False
        assert np.array_equal(y[0][other], clean_pw[0][other])
        z = dw(x)
        near = np.zeros((6, 5), bool)
        near[max(h - 1, 0):h + 2, max(w - 1, 0):w + 2] = True
        clean_dw = dw(np.nan_to_num(x, nan=0, posinf=0, neginf=0))
        assert np.array_equal(z[0][~near], clean_dw[0][~near])
        for f in (K.global_avg_pool, lambda a: K.activation(a, "hardswish"), K.MaxPool2d(2)):
            assert f(x).dtype == np.float32  # no crash, no error
