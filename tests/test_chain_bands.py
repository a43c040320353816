"""Fused conv chains run band by band: the bands slide down their buffers (with a window of
slack when memory allows) and are compacted when they run out. Outputs must match the
unfused plan whatever tile, slack and thread split the plan picks."""

import numpy as np
import pytest

from tinymnet.graph import GraphBuilder, run_reference
from tinymnet.runtime import compile_graph


def _close(y, ref, tol):
    assert np.max(np.abs(y - ref)) <= tol * np.max(np.abs(ref))


def _sandglass_head(h, w, cin, wide, project):
    """MobileNeXt's first chain: 1x1 expand (ReLU6) -> depthwise 3x3 stride 2 -> depthwise
    3x3 (ReLU6), or with project > 0 an inverted-residual block (-> 1x1 to `project`)."""
    b = GraphBuilder("chain", (h, w, cin))
    x = b.conv2d(b.input, "expand", wide, 1, activation="relu6")
    x = b.conv2d(x, "dw_s2", wide, 3, 2, 1, groups=wide)
    if project:
        x = b.conv2d(x, "project", project, 1)
    else:
        x = b.conv2d(x, "dw", wide, 3, 1, 1, groups=wide, activation="relu6")
    return b.build([x], seed=11)


@pytest.mark.parametrize("shape", [(112, 112, 16, 96, 0), (75, 41, 13, 88, 7)])
def test_banded_chain_matches_the_unfused_plan(isa, shape):
    h, w, cin, wide, project = shape
    g = _sandglass_head(h, w, cin, wide, project)
    x = np.random.default_rng(5).standard_normal((1, h, w, cin)).astype(np.float32)
    plain = compile_graph(g, threads=1, fuse_blocks=False)
    want = plain(x)
    _close(want, run_reference(g, x), 1e-4)
    for threads in (1, 2, 3):
        fused = compile_graph(g, threads=threads)
        if threads == 1:  # one step: the wide tensors never exist whole (more threads' bands
            assert fused.step_names == ["expand"]  # may take too much memory to fuse all three)
        _close(fused(x), want, 1e-5)
        assert fused.arena_bytes < plain.arena_bytes
