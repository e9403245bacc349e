"""Image loaders for supernet mode: digits, .npz, ImageFolder, CIFAR-10 python batches (restricted)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from modnas.toolkit.data.datasets import load_images, split_three
from modnas.toolkit.errors import BadInput


def test_digits_are_upsampled_to_32x32_rgb() -> None:
    data = load_images("digits", max_images=100, seed=0)
    assert data.x.shape == (100, 3, 32, 32) and data.num_classes == 10
    assert abs(float(data.x.mean())) < 0.1
    w, a, v = split_three(data, seed=0)
    assert len(w[0]) + len(a[0]) + len(v[0]) <= 100 and abs(len(w[0]) - len(a[0])) <= 1 and len(v[0]) == 10


def test_npz_and_image_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8), y=np.array([0, 1, 2, 0, 1, 2]))
    d = load_images(tmp_path / "d.npz")
    assert d.x.shape == (6, 3, 32, 32) and d.num_classes == 3
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    f = load_images(tmp_path / "imgs")
    assert f.x.shape == (4, 3, 32, 32) and f.y.tolist() == [0, 0, 1, 1]
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 8, 8)))
    with pytest.raises(BadInput, match="'x' and 'y'"):
        load_images(tmp_path / "bad.npz")


class _Evil:
    def __reduce__(self):  # noqa: D105 - builds a call to os.system when unpickled
        import os

        return (os.system, ("echo should-not-run",))


def test_cifar_batches_load_without_arbitrary_classes(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    batch = {b"data": rng.integers(0, 255, (5, 3072), dtype=np.uint8), b"labels": [0, 3, 9, 1, 2]}
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    d = load_images(tmp_path)
    assert d.x.shape == (5, 3, 32, 32) and d.y.tolist() == [0, 3, 9, 1, 2]
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [0]}))
    with pytest.raises(BadInput, match="refusing to unpickle"):
        load_images(tmp_path)
