"""torch's thread count is process-wide: library calls change it only inside ``torch_threads``, which
puts back the count it found when the block ends, also when it raises. Entry points (a ``main``)
may still set it for their whole process."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block (or, as a decorator, each call) with ``n`` intra-op threads; ``None`` or 0
    leaves the count as it is."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


__all__ = ["torch_threads"]
