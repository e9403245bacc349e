"""Image data for supernet training: scikit-learn's digits, ``.npz`` files, ImageFolder trees and
CIFAR-10 in the python layout (read with a restricted unpickler that only rebuilds numpy arrays).

Every loader returns ``ImageData``: float32 images ``[N, 3, 32, 32]`` normalised per channel,
int64 labels, class count.
"""
from __future__ import annotations

import io
import pickle  # only for the restricted CIFAR-10 reader below; nothing else is unpickled
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from modnas.toolkit.errors import BadInput

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm"}


@dataclass
class ImageData:
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    source: str

    def __len__(self) -> int:
        return int(self.y.shape[0])


def _finish(x: np.ndarray, y: np.ndarray, source: str, size: int = 32) -> ImageData:
    """uint8/float NHWC or NCHW -> normalised float NCHW at ``size``, 3 channels."""
    arr = np.asarray(x)
    if arr.ndim == 3:
        arr = arr[:, None, :, :]
    if arr.ndim != 4:
        raise BadInput(f"{source}: images must be [N, H, W(, C)] or [N, C, H, W], got shape {arr.shape}")
    if arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    t = torch.as_tensor(arr.astype(np.float32))
    if t.shape[1] == 1:
        t = t.repeat(1, 3, 1, 1)
    if t.shape[1] != 3:
        raise BadInput(f"{source}: images need 1 or 3 channels, got {t.shape[1]}")
    if t.shape[-2:] != (size, size):
        t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    mean = t.mean(dim=(0, 2, 3), keepdim=True)
    std = t.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    labels = np.asarray(y).astype(np.int64).reshape(-1)
    if len(labels) != t.shape[0]:
        raise BadInput(f"{source}: {t.shape[0]} images but {len(labels)} labels")
    if labels.min() < 0:
        raise BadInput(f"{source}: labels must be non-negative")
    return ImageData((t - mean) / std, torch.as_tensor(labels), int(labels.max()) + 1, source)


def load_digits_data() -> ImageData:
    """scikit-learn's bundled 8x8 digits (read from the package's data file, no sklearn import)."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise BadInput("the digits data set needs scikit-learn installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    return _finish(table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64), "digits")


def load_npz(path: Path) -> ImageData:
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f or "y" not in f:
                raise BadInput(f"{path}: an .npz needs arrays 'x' and 'y'")
            x, y = f["x"], f["y"]
    except BadInput:
        raise
    except Exception as exc:  # truncated or not a zip archive
        raise BadInput(f"{path}: not a readable .npz ({type(exc).__name__})") from None
    return _finish(x, y, str(path))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Allows the few globals a pickled numpy array needs; refuses everything else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):  # type: ignore[override]
        if (module, name) not in self.ALLOWED:
            raise BadInput(f"refusing to unpickle {module}.{name}: CIFAR batches hold only numpy arrays")
        if module.startswith("numpy.core"):
            module = module.replace("numpy.core", "numpy._core") if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except BadInput:
        raise
    except Exception as exc:  # malformed file
        raise BadInput(f"{path}: not a CIFAR-10 python batch ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise BadInput(f"{path}: not a CIFAR-10 python batch")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if data is None or labels is None:
        raise BadInput(f"{path}: CIFAR batch lacks 'data' or 'labels'")
    return np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def load_cifar10(folder: Path, train: bool = True) -> ImageData:
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    files = [folder / n for n in names if (folder / n).exists()]
    if not files:
        raise BadInput(f"{folder}: no CIFAR-10 python batches ({names[0]} ...)")
    parts = [_read_cifar_batch(f) for f in files]
    return _finish(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), str(folder))


def load_image_folder(folder: Path) -> ImageData:
    from PIL import Image

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise BadInput(f"{folder}: an image folder needs one sub-folder per class")
    xs, ys = [], []
    for label, cls in enumerate(classes):
        for f in sorted((folder / cls).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                with Image.open(f) as im:
                    xs.append(np.asarray(im.convert("RGB").resize((32, 32)), dtype=np.uint8))
                ys.append(label)
    if not xs:
        raise BadInput(f"{folder}: no images found")
    return _finish(np.stack(xs), np.asarray(ys), str(folder))


def load_images(source: str | Path, max_images: int | None = None, seed: int = 0) -> ImageData:
    """``digits``, an ``.npz`` (x, y), a CIFAR-10 python folder, or an ImageFolder tree."""
    if str(source) == "digits":
        data = load_digits_data()
    else:
        path = Path(source)
        if not path.exists():
            raise BadInput(f"image data not found: {path}")
        if path.is_file() and path.suffix == ".npz":
            data = load_npz(path)
        elif path.is_dir() and (path / "cifar-10-batches-py").is_dir():
            data = load_cifar10(path / "cifar-10-batches-py")
        elif path.is_dir() and (path / "data_batch_1").exists():
            data = load_cifar10(path)
        elif path.is_dir():
            data = load_image_folder(path)
        else:
            raise BadInput(f"unsupported image data {path}: use digits, an .npz, a CIFAR-10 folder or an ImageFolder")
    if max_images is not None and len(data) > max_images:
        gen = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(data), generator=gen)[:max_images]
        data = ImageData(data.x[keep], data.y[keep], data.num_classes, data.source)
    return data


def split_three(data: ImageData, seed: int = 0, val_fraction: float = 0.1
                ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Weight half, architecture half and a held-back validation share (for read-out errors)."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(data), generator=gen)
    n_val = max(1, int(round(val_fraction * len(data))))
    val, rest = perm[:n_val], perm[n_val:]
    half = len(rest) // 2
    w, a = rest[:half], rest[half:]
    return (data.x[w], data.y[w]), (data.x[a], data.y[a]), (data.x[val], data.y[val])


def data_digest(data: ImageData) -> str:
    """Content hash of the images and labels as loaded (a checkpoint names the data it was trained on)."""
    import hashlib

    h = hashlib.sha256()
    h.update(str(tuple(data.x.shape)).encode())
    h.update(np.ascontiguousarray(data.x.numpy()).tobytes())
    h.update(np.ascontiguousarray(data.y.numpy()).tobytes())
    return h.hexdigest()[:32]


def split_heldout(n: int, seed: int = 0, fraction: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and held-back indices: a fixed permutation for ``seed``, the same split on every call."""
    if n < 2:
        raise BadInput(f"need at least 2 images for a held-back split, got {n}")
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=gen)
    n_held = min(n - 1, max(1, int(round(fraction * n))))
    return perm[n_held:], perm[:n_held]


__all__ = ["ImageData", "data_digest", "split_heldout", "load_cifar10", "load_digits_data", "load_image_folder", "load_images", "load_npz",
           "split_three"]
