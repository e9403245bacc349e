"""The NB201 cell: its candidate operations and its edges, shared by the space and the network it builds."""
from __future__ import annotations

import numpy as np

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# (to_node, from_node) in the order of the cell string: 1<-0 | 2<-0 2<-1 | 3<-0 3<-1 3<-2
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def is_connected(indices: list[int]) -> bool:
    """Whether some path of non-``none`` ops leads from the input to the output node."""
    reach = {0}
    for (j, i), op in zip(EDGES, indices):
        if op != 0 and i in reach:
            reach.add(j)
    return 3 in reach


def op_graph() -> tuple[np.ndarray, int]:
    """Op-node DAG of the NB201 cell: node 0 input, 1..6 the edges' ops, 7 output."""
    n = len(EDGES) + 2
    adj = np.zeros((n, n), dtype=np.float32)  # adj[dst, src]
    for e, (_, src) in enumerate(EDGES, start=1):
        if src == 0:
            adj[e, 0] = 1.0
        for f, (dst2, _) in enumerate(EDGES, start=1):
            if dst2 == src:
                adj[e, f] = 1.0
    for f, (dst, _) in enumerate(EDGES, start=1):
        if dst == 3:
            adj[n - 1, f] = 1.0
    return adj, len(EDGES)
