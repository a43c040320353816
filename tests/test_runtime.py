"""The compiled C++ plan: equal to the NumPy reference, with any thread count, batch and
concurrent callers; the arena is planned, not one buffer per tensor."""
import threading

import numpy as np
import pytest

import tinymnet
from tinymnet import info
from tinymnet.graph import GraphBuilder, run_reference
from tinymnet.models import build
from tinymnet.runtime import compile_graph, default_threads


def _close(y, ref, tol=1e-4):
    assert np.max(np.abs(y - ref)) <= tol * np.max(np.abs(ref))


@pytest.fixture(scope="module")
def v3s():
    return build("mobilenet_v3_small", width=0.75, resolution=96, num_classes=37)


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(3).standard_normal((3, 96, 96, 3)).astype(np.float32)


@pytest.mark.parametrize("arch", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large",
                                  "efficientnet_lite0"])
def test_each_architecture_matches_the_reference(arch):
    g = build(arch, resolution=64, num_classes=11)
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
    _close(compile_graph(g, threads=2)(x), run_reference(g, x))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_and_batch_give_the_reference(v3s, batch, threads):
    model = compile_graph(v3s, threads=threads)
    assert model.threads == threads
    y = model(batch)
    _close(y, run_reference(v3s, batch))
    for i in range(len(batch)):  # an image's result does not depend on its batch
        np.testing.assert_array_equal(model(batch[i:i + 1])[0], y[i])


@pytest.mark.parametrize("name", ["mobilenet_v2_100_224_tf", "mobilenet_v3_small_100_224_tf",
                                  "mobilenet_v1", "mobilenet_v3_large", "efficientnet_lite0",
                                  "ghostnet", "mobilenext"])
def test_one_image_gives_the_same_bits_on_any_thread_count(name):
    # Steps split over threads by rows, by pixels (parts of >= 12, whose GEMM row tiles add
    # each row's sums in the order of one call: see gemm_simd.h) or by output channels in whole
    # weight panels; two threads move their cut with the cores' speeds, so calls repeat too.
    # Fused chains split by rows; their 1x1 levels' row tiles are >= 4 rows at these widths.
    bundled = name.endswith("_tf")
    size = 224 if bundled else 128
    g = None if bundled else build(name, resolution=size, num_classes=10)

    def load(threads):
        return tinymnet.load(name, threads=threads) if bundled else compile_graph(g, threads=threads)

    x = np.random.default_rng(5).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    want = load(1)(x)
    for threads in (2, 3):
        model = load(threads)
        for _ in range(3):
            assert np.array_equal(model(x), want), f"{threads} threads"


@pytest.mark.parametrize("threads, images", [(2, 5), (3, 7), (4, 4)])
def test_batches_run_whole_images_per_thread_with_serial_results(v3s, threads, images):
    # A batch of >= threads images runs whole images in parallel, each thread on its own
    # arena; the remainder runs row-split. Each image must match its batch-1 result, and
    # batch-1 calls before and after must not be disturbed by the extra arenas.
    x = np.random.default_rng(threads).standard_normal((images, 96, 96, 3)).astype(np.float32)
    model = compile_graph(v3s, threads=threads)
    alone_before = np.concatenate([model(x[i:i + 1]) for i in range(images)])
    together = model(x)
    alone_after = np.concatenate([model(x[i:i + 1]) for i in range(images)])
    np.testing.assert_array_equal(together, alone_before)
    np.testing.assert_array_equal(alone_after, alone_before)
    _close(together, run_reference(v3s, x))


@pytest.mark.parametrize("arch, tail", [
    ("mobilenet_v3_small", ["flatten", "classifier.0", "classifier.3"]),
    ("ghostnet", ["conv_head", "flatten", "classifier"]),  # a 1x1 conv of one pixel, too
])
@pytest.mark.parametrize("threads", [1, 3])
def test_a_batch_runs_its_classifier_layers_once_with_the_bits_of_single_images(arch, tail,
                                                                              threads):
    # 70 images: a batch of 64 and one of 6 through the batched tail, whole images on 3
    # threads plus a remainder row-split; one image holds a NaN and must come out all NaN
    # without disturbing its neighbours.
    g = build(arch, width=0.5, resolution=32, num_classes=11)
    model = compile_graph(g, threads=threads)
    assert model.batched_steps == tail == tinymnet.Model(g, threads=threads).batched_steps
    x = np.random.default_rng(threads).standard_normal((70, 32, 32, 3)).astype(np.float32)
    x[65, 3, 4, 1] = np.nan
    together = model(x)
    alone = np.concatenate([model(x[i:i + 1]) for i in range(70)])
    assert np.isnan(together[65]).all() and not np.isnan(np.delete(together, 65, 0)).any()
    np.testing.assert_array_equal(together, alone)
    # (random GhostNet weights give scores up to ~3000: float32 sums differ from the
    # reference's in the 4th digit)
    _close(np.delete(together, 65, 0), run_reference(g, np.delete(x, 65, 0)), 1e-3)


def test_no_batched_tail_when_the_output_is_not_a_linear_layers_chain():
    b = GraphBuilder("tails", (6, 5, 3))
    pooled = b.add("global_avg_pool", [b.conv2d(b.input, "c", 8, 3, padding=1, bias=True)], "gap")
    fc = b.linear(b.add("flatten", [pooled], "flat"), "fc", 4)
    x = np.random.default_rng(2).standard_normal((3, 6, 5, 3)).astype(np.float32)
    for outputs, batched in (([fc], ["flat", "fc"]), ([b.add("softmax", [fc], "sm")], []),
                             ([pooled], [])):
        g = b.build(outputs)
        model = compile_graph(g, threads=2)
        assert model.batched_steps == batched
        y = model(x)
        np.testing.assert_array_equal(y, np.concatenate([model(x[i:i + 1]) for i in range(3)]))
        _close(y, run_reference(g, x))


def test_concurrent_callers_get_serial_results(v3s, batch):
    model = compile_graph(v3s, threads=2)
    expected = [model(batch[i:i + 1]) for i in range(3)]
    results, errors = {}, []

    def worker(k):
        try:
            for _ in range(5):
                i = k % 3
                out = model(batch[i:i + 1])
                if not np.array_equal(out, expected[i]):
                    errors.append(f"thread {k} differs")
            results[k] = True
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 8


def test_liveness_planner_without_fusion():
    g = build("mobilenet_v2")
    model = compile_graph(g, threads=1, fuse_blocks=False)
    totals = info.info_totals(g)
    # About two tensors are alive at a time: far below the sum of all outputs, but at least
    # the widest layer's input and output (112x112x96 expanded + 112x112x16 block input).
    assert model.arena_bytes < totals["activation_bytes"] / 8
    assert model.arena_bytes >= 112 * 112 * (96 + 16) * 4
    assert model.arena_bytes <= 6 * 2**20  # MobileNetV2-224: 5.74 MiB


def test_default_threads_and_bad_threads(v3s):
    assert default_threads() >= 1
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads"):
            compile_graph(v3s, threads=bad)


@pytest.mark.parametrize("arch", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small",
                                  "mobilenet_v3_large", "efficientnet_lite0"])
def test_block_fusion_changes_memory_not_results(arch):
    g = build(arch, resolution=112, num_classes=10)
    x = np.random.default_rng(1).standard_normal((2, 112, 112, 3)).astype(np.float32)
    plain = compile_graph(g, threads=1, fuse_blocks=False)
    want = plain(x)
    for threads in (1, 2, 3):
        fused = compile_graph(g, threads=threads)
        _close(fused(x), want, 1e-5)
    assert compile_graph(g, threads=1).arena_bytes <= plain.arena_bytes


def test_convs_pad_the_pixels_of_1kb_multiples_between_them():
    # A conv output of C = 256 channels read by a depthwise conv gets one spare cache line per
    # pixel (256 + 16 floats): the arena holds it beside the depthwise output, which global
    # average pooling reads, so that one stays dense.
    b = GraphBuilder("pad", (8, 8, 256))
    d = b.conv2d(b.conv2d(b.input, "pw", 256, 1, bias=True, activation="relu6"),
                 "dw", 256, 3, padding=1, groups=256, bias=True)
    g = b.build([b.linear(b.add("flatten", [b.add("global_avg_pool", [d], "gap")], "flat"),
                          "fc", 10)])
    x = np.random.default_rng(4).standard_normal((2, 8, 8, 256)).astype(np.float32)
    for fuse in (True, False):
        model = compile_graph(g, threads=1, fuse_blocks=fuse)
        assert model.arena_bytes == 4 * 8 * 8 * ((256 + 16) + 256)
        _close(model(x), run_reference(g, x))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_padded_pixels_give_the_reference(threads):
    # 256/512-channel tensors between convs (padded; 1x1, depthwise k3/k5, stride 1 and 2,
    # residuals, a fused chain reading and writing them) and beside readers that need dense
    # pixels (add, squeeze-excite, concat, the output), on a non-square image.
    b = GraphBuilder("padmix", (13, 9, 32))
    a = b.conv2d(b.input, "a", 256, 1, bias=True, activation="relu6")
    c = b.conv2d(b.conv2d(a, "b", 256, 3, padding=1, groups=256, bias=True), "c", 256, 1,
                 bias=True, residual=a)
    h = b.conv2d(b.conv2d(b.conv2d(c, "p1", 1024, 1, bias=True, activation="relu6"), "p2", 1024, 3,
                          padding=1, groups=1024, bias=True), "p3", 256, 1, bias=True, residual=c)
    e = b.conv2d(b.conv2d(h, "d", 256, 3, stride=2, padding=1, groups=256, bias=True), "e", 512, 1,
                 bias=True, activation="hardswish")
    f = b.conv2d(e, "f", 512, 5, padding=2, groups=512, bias=True, activation="relu")
    s = b.squeeze_excite(b.add("add", [f, e], "sum"), "se", 128)
    t = b.conv2d(b.conv2d(b.conv2d(s, "x1", 1024, 1, bias=True, activation="relu6"), "x2", 1024, 3,
                          padding=1, groups=1024, bias=True, activation="relu6"), "x3", 256, 1, bias=True)
    u = b.add("concat", [t, b.conv2d(t, "y", 256, 1, bias=True)], "cat")
    out = b.conv2d(b.conv2d(u, "z", 512, 3, stride=2, padding=1, groups=512, bias=True), "w", 256, 1)
    g = b.build([out])
    x = np.random.default_rng(6).standard_normal((3, 13, 9, 32)).astype(np.float32)
    want = run_reference(g, x)
    for fuse in (True, False):
        model = compile_graph(g, threads=threads, fuse_blocks=fuse)
        if threads == 1:  # p1 -> p2 -> p3 runs fused (as one step, named p1) at 1 thread
            assert ("p2" in [name for name, _ in model.profile(x[:1], 1)]) != fuse
        _close(model(x), want)


def test_mobilenet_v2_224_runs_in_at_most_2_mib_of_activations():
    g = build("mobilenet_v2")
    plain, fused = compile_graph(g, threads=1, fuse_blocks=False), compile_graph(g, threads=1)
    assert plain.arena_bytes > 5 * 2**20  # every tensor materialised: ~5.7 MiB
    assert fused.arena_bytes <= 2 * 2**20
    assert compile_graph(g, threads=2).arena_bytes <= 2 * 2**20  # a band set per thread
    x = np.random.default_rng(2).standard_normal((1, 224, 224, 3)).astype(np.float32)
    _close(fused(x), plain(x), 1e-5)


def test_many_short_parallel_steps_under_contention_neither_hang_nor_drift():
    """Regression: a worker still in the previous step once claimed a task against the next
    step's count, ran a bogus task and left the caller waiting forever."""
    g = build("mobilenet_v3_small", width=0.5, resolution=32, num_classes=5)
    x = np.random.default_rng(4).standard_normal((1, 32, 32, 3)).astype(np.float32)
    models = [compile_graph(g, threads=t) for t in (2, 3)]
    firsts = [m(x) for m in models]
    stop, errors = threading.Event(), []

    def noise():  # keep the cores busy so workers get descheduled in the middle of steps
        while not stop.is_set():
            sum(range(10000))

    def run():
        try:
            for _ in range(1500):
                for m, first in zip(models, firsts):
                    if not np.array_equal(m(x), first):
                        errors.append("results changed between identical calls")
                        return
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    noisy = [threading.Thread(target=noise, daemon=True) for _ in range(2)]
    worker = threading.Thread(target=run, daemon=True)
    for t in noisy + [worker]:
        t.start()
    worker.join(timeout=120)
    stop.set()
    assert not worker.is_alive(), "the thread pool hung"
    assert not errors, errors


def _readonly(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("make_x, make_out, message", [
    (lambda x: x.astype(np.float64), None, "x must be float32"),
    (lambda x: np.ascontiguousarray(np.repeat(x, 2, axis=2))[:, :, ::2], None,
     "x must be C-contiguous"),
    (lambda x: x[0], None, "x must have 4 dimensions"),
    (lambda x: x.tolist(), None, "x must be a numpy array"),
    (None, lambda y: _readonly(y), "out must be writable"),
    (None, lambda y: y.astype(np.float16), "out must be float32"),
    (None, lambda y: np.asfortranarray(np.zeros((2, y.shape[1]), np.float32))[:1, :],
     "out must be C-contiguous"),
])
def test_plan_run_checks_its_buffers(v3s, make_x, make_out, message):
    """The C++ entry point (read through the buffer protocol) refuses what it cannot run in
    place, naming the argument; model(x) converts such inputs before calling it."""
    model = compile_graph(v3s, threads=1)
    _, h, w, c = model.input_shape
    x = np.zeros((1, h, w, c), np.float32)
    out = np.zeros((1, model.output_shape[-1]), np.float32)
    x = make_x(x) if make_x else x
    out = make_out(out) if make_out else out
    with pytest.raises(ValueError, match=message):
        model._plan.run(x, out)
