"""Thread safety: one model called from 8 Python threads at once (calls overlapping, behind a
barrier) gives bit-identical results to serial calls, for a 1- and a 2-thread plan and
different batch sizes per thread; several models at once; single kernels from threads; an idle
model's workers sleep; and a model whose thread pool is live keeps working (and can be freed)
in a forked child."""
import gc
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest

import tinymnet
from tinymnet import kernels as K

N_THREADS = 8
CALLS = 3


def _input(seed, batch, shape=(224, 224, 3)):
    return np.random.default_rng(seed).uniform(-1, 1, (batch,) + shape).astype(np.float32)


def _run_threads(jobs):
    """Run each job (a callable) in its own thread, all released together by a barrier;
    returns their results in order and re-raises the first failure."""
    barrier = threading.Barrier(len(jobs))
    results, errors = [None] * len(jobs), []

    def work(i):
        try:
            barrier.wait(timeout=60)
            results[i] = jobs[i]()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("threads", [1, 2])
def test_one_model_from_eight_threads_equals_serial(threads):
    model = tinymnet.load(None, threads=threads)  # the bundled default model
    inputs = [_input(i, 1 + i % 4) for i in range(N_THREADS)]  # batch 1..4, different data
    serial = [model(x) for x in inputs]

    def job(x):
        return lambda: [model(x) for _ in range(CALLS)]

    for i, outs in enumerate(_run_threads([job(x) for x in inputs])):
        for y in outs:
            assert y.shape == serial[i].shape
            assert np.array_equal(y, serial[i]), f"thread {i} differs from the serial call"


def test_several_models_from_several_threads():
    names = ["mobilenet_v2_100_224_tf", "mobilenet_v3_small_100_224_tf", "mobilenet_v1_025_224_tf"]
    models = [tinymnet.load(n, threads=1 + i % 2) for i, n in enumerate(names)]
    jobs, serial = [], []
    for i in range(N_THREADS):
        m, x = models[i % len(models)], _input(100 + i, 1 + i % 3)
        serial.append(m(x))
        jobs.append(lambda m=m, x=x: [m(x) for _ in range(CALLS)])
    for i, outs in enumerate(_run_threads(jobs)):
        assert all(np.array_equal(y, serial[i]) for y in outs), f"thread {i}"


def test_models_loaded_and_freed_while_others_run():
    model = tinymnet.load("mobilenet_v1_025_224_tf", threads=2)
    x = _input(7, 2)
    want = model(x)

    def churn():
        for _ in range(5):
            m = tinymnet.load("mobilenet_v3_small_100_224_tf", threads=2)
            m(x[:1])
            del m
        return True

    def use():
        return [model(x) for _ in range(10)]

    results = _run_threads([churn, use, churn, use])
    for outs in results[1::2]:
        assert all(np.array_equal(y, want) for y in outs)


def test_kernels_shared_between_threads():
    rng = np.random.default_rng(3)
    ops = [
        K.Conv2d(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), stride=2, padding=1,
                 activation="relu6"),                                               # direct
        K.Conv2d(rng.standard_normal((24, 16, 1, 1)).astype(np.float32), activation="hardswish"),
        K.Conv2d(rng.standard_normal((16, 1, 5, 5)).astype(np.float32), padding="same", groups=16),
        K.SqueezeExcite(rng.standard_normal((4, 16)).astype(np.float32), None,
                        rng.standard_normal((16, 4)).astype(np.float32), None),
        K.AvgPool2d(3, 2, padding=1),
    ]
    xs = [_input(200 + i, 1 + i % 3, (33, 29, 3)) for i in range(N_THREADS)]

    def chain(x):
        y = ops[0](x)
        z = ops[1](y)
        return [z, ops[2](y), ops[3](y), ops[4](y), K.global_avg_pool(z),
                K.activation(z, "relu"), K.add(y, y, activation="relu")]

    serial = [chain(x) for x in xs]
    for i, outs in enumerate(_run_threads([lambda x=x: [chain(x) for _ in range(CALLS)]
                                           for x in xs])):
        for got in outs:
            assert all(np.array_equal(a, b) for a, b in zip(got, serial[i])), f"thread {i}"


# ------------------------------------------------------------------ idle workers

def test_idle_model_burns_no_cpu():
    """Pool workers spin through one call (no sleep between two steps) but go to sleep once
    calls stop: a model loaded and left idle costs no CPU time."""
    model = tinymnet.load(None, threads=2)
    x = _input(5, 1)
    for _ in range(3):
        model(x)
    model._compiled.profile(x, 2)  # profile holds the workers busy too
    time.sleep(0.05)  # past the workers' brief spin after the last call
    cpu = time.process_time()
    time.sleep(0.5)
    assert time.process_time() - cpu < 0.05  # a spinning worker would use ~0.5 s


# ------------------------------------------------------------------ fork

def _child_logits(x):
    return _FORK_MODEL(x)


_FORK_MODEL = None


def _wait_or_kill(pid, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_runs_and_frees_an_inherited_model():
    """The parent's pool workers (2 threads, idle on their condition variable) do not exist in
    the child: the child must still run the model (on one thread, same logits) and free it."""
    model = tinymnet.load(None, threads=2)
    x = _input(11, 2)
    want = model(x)
    time.sleep(0.05)  # let the workers go to sleep
    pid = os.fork()
    if pid == 0:  # child: no pytest machinery, just an exit code
        code = 1
        try:
            ok = np.array_equal(model(x), want) and model.threads == 1
            model.__dict__.clear()  # frees the compiled plan: the ThreadPool destructor runs
            gc.collect()
            code = 0 if ok else 2
        finally:
            os._exit(code)
    assert _wait_or_kill(pid, 120) == 0
    assert np.array_equal(model(x), want)  # the parent's pool is untouched


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_multiprocessing_fork_pool_with_a_live_model():
    global _FORK_MODEL
    _FORK_MODEL = tinymnet.load("mobilenet_v1_025_224_tf", threads=2)
    xs = [_input(300 + i, 1 + i % 2) for i in range(4)]
    want = [_FORK_MODEL(x) for x in xs]
    try:
        with multiprocessing.get_context("fork").Pool(2) as pool:
            got = pool.map_async(_child_logits, xs).get(timeout=120)
    finally:
        _FORK_MODEL = None
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
