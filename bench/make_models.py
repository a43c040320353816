"""Random-weight .tmn models of the architectures without a bundled pretrained model, for
`tinymnet bench` (which takes a bundled name or a .tmn file).

    python bench/make_models.py [--out DIR] [--arch mobilenet_v3_large,mobilenet_v1,...]
    tinymnet bench DIR/mobilenet_v3_large.tmn --threads 1,2 --batch 1,8 --compare onnxruntime

Each model is `tinymnet.models.build(arch)` at 224x224 (width 1.0, the builder's default
classes and BN eps) with its deterministic random init (seed 0), written with
`formats.tmn.save_tmn`, optimised (BN folded, activations fused) as `tinymnet convert` writes
them (GEMM weights packed for this CPU, used in place), so `tinymnet.load` takes the fast
path (plan built from the mapped file). Speed does not depend on the weight values (the same folded weights go
to both engines); these files are not for classification. The BatchNorm statistics are then
calibrated (`calibrate_batchnorm`) so activations stay O(1) as in a trained network: with the
raw init a random GhostNet reaches logits ~1e5 and is so ill-conditioned that onnxruntime and
tinymnet both differ from the NumPy reference by 3e-4, and `tinymnet bench` (which checks
1e-4 before timing) refuses it. Without --out they go to a new temporary folder, whose path is
printed.
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from tinymnet import reference
from tinymnet.formats.tmn import save_tmn
from tinymnet.graph import _run_node
from tinymnet.info import info_totals
from tinymnet.models import ARCHS, build

DEFAULT_ARCHS = ("mobilenet_v3_large", "mobilenet_v1", "efficientnet_lite0")


def calibrate_batchnorm(graph, images=2, seed=0):
    """Set every BatchNorm's running mean / var to the statistics of its input on random
    uniform(-1, 1) images, node by node (so each BN sees the already calibrated ones before
    it): its output is then ~ beta + gamma * N(0, 1), as in a trained network."""
    _, h, w, c = graph.inputs[graph.input_name]
    x = np.random.default_rng(seed).uniform(-1, 1, (images, h, w, c)).astype(np.float32)
    env = {graph.input_name: x}
    for node in graph.nodes:
        xs = [env[t] for t in node.inputs]
        if node.op == "batchnorm":
            v = xs[0].astype(np.float64).reshape(-1, xs[0].shape[-1])
            graph.params[node.params["mean"]] = v.mean(0).astype(np.float32)
            graph.params[node.params["var"]] = v.var(0).astype(np.float32)
        env[node.output] = _run_node(reference, node, xs, graph.params)
    return graph


def make_models(out_dir, archs=DEFAULT_ARCHS, resolution=224):
    """-> {arch: path of the written .tmn}"""
    paths = {}
    for arch in archs:
        g = calibrate_batchnorm(build(arch, resolution=resolution))
        path = os.path.join(out_dir, f"{arch}.tmn")
        save_tmn(path, g, provenance={"source": "random weights (bench/make_models.py)",
                                      "arch": arch, "seed": 0}, optimize=True,
                 gemm_panels="native")
        paths[arch] = path
    return paths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="folder to write into (default: a new temporary folder)")
    ap.add_argument("--arch", default=",".join(DEFAULT_ARCHS),
                    help=f"comma-separated, from {', '.join(ARCHS)}")
    ap.add_argument("--resolution", type=int, default=224)
    args = ap.parse_args(argv)
    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    unknown = [a for a in archs if a not in ARCHS]
    if unknown:
        ap.error(f"unknown arch {unknown}; known: {', '.join(ARCHS)}")
    out = args.out or tempfile.mkdtemp(prefix="tinymnet-models-")
    os.makedirs(out, exist_ok=True)
    for arch, path in make_models(out, archs, args.resolution).items():
        from tinymnet.formats.tmn import load_source_graph

        t = info_totals(load_source_graph(path))
        print(f"{path}  ({arch}, {args.resolution}x{args.resolution}, "
              f"{t['macs'] / 1e6:.0f}M MACs, {t['params'] / 1e6:.2f}M params)")


if __name__ == "__main__":
    main()
