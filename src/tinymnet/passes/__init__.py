"""Graph-to-graph passes. Each returns a new Graph and leaves its input (and its param
arrays) untouched, so a test can run both and compare.

``optimize`` is the standard pipeline before compiling a graph for the kernels:
remove_dropout -> fold_batchnorm -> fuse_residual_adds -> fuse_activations ->
remove_dead_nodes.
"""

from __future__ import annotations

from tinymnet.graph import Graph
from tinymnet.passes.dead import remove_dead_nodes, remove_dropout
from tinymnet.passes.fold_bn import fold_batchnorm
from tinymnet.passes.fuse import fuse_activations, fuse_residual_adds


def optimize(graph: Graph) -> Graph:
    """BN folded, dropout gone, activations and residual adds fused into their producers."""
    g = remove_dropout(graph)
    g = fold_batchnorm(g)
    # Residuals first: add -> act chains then fuse into the conv that took the add over.
    g = fuse_residual_adds(g)
    g = fuse_activations(g)
    return remove_dead_nodes(g)


__all__ = [
    "optimize",
    "fold_batchnorm",
    "fuse_activations",
    "fuse_residual_adds",
    "remove_dead_nodes",
    "remove_dropout",
]
