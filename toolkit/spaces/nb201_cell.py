"""The NB201 cell: its candidate operations and its edges, shared by the space and the network it builds."""
from __future__ import annotations

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# (to_node, from_node) in the order of the cell string: 1<-0 | 2<-0 2<-1 | 3<-0 3<-1 3<-2
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
