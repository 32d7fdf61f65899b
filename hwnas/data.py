"""Datasets for search and NetAdapt: the built-in `digits`, an .npz (x, y), or an ImageFolder directory.

    split = load_dataset("digits", image_size=32)            # scikit-learn's real handwritten digits
    train_loader, val_loader = make_loaders(split, batch_size=64, seed=0)

Images come out as float32 tensors N×C×H×W, standardised; labels int64. Nothing is downloaded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from hwnas.errors import HwnasError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class DatasetSplit:
    train: TensorDataset
    val: TensorDataset
    num_classes: int
    class_names: list[str]
    input_shape: tuple[int, int, int]  # (C, H, W)
    source: str


def _to_nchw(x: np.ndarray, source: str) -> np.ndarray:
    """N×H×W, N×H×W×C or N×C×H×W -> N×C×H×W float32 in [0, 1] for integer input."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
            x = x.transpose(0, 3, 1, 2)
    else:
        raise HwnasError(f"{source}: images must be N×H×W, N×H×W×C or N×C×H×W, got shape {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / 255.0
    return np.ascontiguousarray(x, dtype=np.float32)


def _prepare(x: np.ndarray, image_size: int, channels: int, source: str) -> torch.Tensor:
    t = torch.from_numpy(x)
    if t.shape[1] != channels:
        if t.shape[1] == 1:
            t = t.repeat(1, channels, 1, 1)
        elif channels == 1 and t.shape[1] == 3:
            t = t.mean(dim=1, keepdim=True)
        else:
            raise HwnasError(f"{source}: images have {t.shape[1]} channels; cannot make {channels} of them")
    if t.shape[-2:] != (image_size, image_size):
        t = F.interpolate(t, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return t.contiguous()


def _standardise(train: torch.Tensor, *others: torch.Tensor):
    """Scale every tensor by the training images' mean and std."""
    mean, std = train.mean(), train.std().clamp_min(1e-6)
    return [(t - mean) / std for t in (train, *others)]


def _stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def _digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64), [str(c) for c in range(10)]


def _npz(path: Path):
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:
        raise HwnasError(f"{path} is not a readable .npz file ({type(e).__name__})") from None
    missing = [k for k in ("x", "y") if k not in data.files]
    if missing:
        raise HwnasError(f"{path} must hold arrays 'x' (images) and 'y' (labels); missing {', '.join(missing)} "
                         f"(found: {', '.join(data.files) or 'nothing'})")
    x, y = data["x"], data["y"]
    if len(x) != len(y):
        raise HwnasError(f"{path}: x has {len(x)} images but y has {len(y)} labels")
    if len(x) == 0:
        raise HwnasError(f"{path}: no images")
    if not np.issubdtype(y.dtype, np.integer):
        raise HwnasError(f"{path}: labels y must be integers, got {y.dtype}")
    classes = sorted(int(c) for c in np.unique(y))
    return x, y.astype(np.int64), [str(c) for c in classes]


def _read_images(folder: Path, classes: list[str], image_size: int, source: str):
    from PIL import Image
    xs, ys = [], []
    for label, cls in enumerate(classes):
        for f in sorted((folder / cls).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                img = Image.open(f).convert("RGB").resize((image_size, image_size), Image.BILINEAR)
            except Exception as e:
                raise HwnasError(f"{f}: not a readable image ({type(e).__name__})") from None
            xs.append(np.asarray(img, dtype=np.uint8))
            ys.append(label)
    if not xs:
        raise HwnasError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def _class_folders(root: Path) -> list[str]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise HwnasError(f"{root} has no class folders (ImageFolder layout: {root}/<class>/<image>.png)")
    return classes


def load_dataset(spec: str | os.PathLike, image_size: int = 32, channels: int = 3, val_fraction: float = 0.2,
                 seed: int = 0) -> DatasetSplit:
    """`spec`: "digits", a .npz path with x and y, or an ImageFolder directory (with optional train/ and val/)."""
    if not 0.0 < val_fraction < 1.0:
        raise HwnasError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if image_size < 1:
        raise HwnasError(f"image size must be positive, got {image_size}")
    text = str(spec)
    path = Path(text)
    if text == "digits":
        x, y, names = _digits()
        source = "digits (scikit-learn's handwritten digits)"
    elif path.suffix.lower() == ".npz":
        if not path.is_file():
            raise HwnasError(f"data file {path} does not exist")
        x, y, names = _npz(path)
        source = str(path)
    elif path.is_dir():
        source = str(path)
        if (path / "train").is_dir() and (path / "val").is_dir():
            names = _class_folders(path / "train")
            xt, yt = _read_images(path / "train", names, image_size, f"{path}/train")
            val_names = _class_folders(path / "val")
            if val_names != names:
                raise HwnasError(f"{path}: train/ and val/ have different class folders")
            xv, yv = _read_images(path / "val", names, image_size, f"{path}/val")
            (xt, yt), (xv, yv) = (_tensors(xt, yt, image_size, channels, source),
                                  _tensors(xv, yv, image_size, channels, source))
            xt, xv = _standardise(xt, xv)
            return DatasetSplit(TensorDataset(xt, yt), TensorDataset(xv, yv), len(names), names,
                                (channels, image_size, image_size), source)
        names = _class_folders(path)
        x, y = _read_images(path, names, image_size, source)
    elif not path.exists() and (os.sep in text or path.suffix):
        raise HwnasError(f"data path {path} does not exist")
    else:
        raise HwnasError(f"unknown data {text!r}: give 'digits', a .npz file with x and y, or an ImageFolder directory")
    if text != "digits" and path.suffix.lower() == ".npz":
        # map arbitrary integer labels onto 0..K-1
        classes = np.unique(y)
        y = np.searchsorted(classes, y)
    tr, va = _stratified_split(y, val_fraction, seed)
    if len(tr) == 0 or len(va) == 0:
        raise HwnasError(f"{source}: too few images ({len(y)}) to split into train and validation")
    xs, ys = _tensors(x, y, image_size, channels, source)
    xt, xv = _standardise(xs[tr], xs[va])
    return DatasetSplit(TensorDataset(xt, ys[tr]), TensorDataset(xv, ys[va]), len(names), names,
                        (channels, image_size, image_size), source)


def _tensors(x: np.ndarray, y: np.ndarray, image_size: int, channels: int, source: str):
    return _prepare(_to_nchw(x, source), image_size, channels, source), torch.as_tensor(y, dtype=torch.int64)


def make_loaders(split: DatasetSplit, batch_size: int = 64, seed: int = 0, workers: int = 0):
    """(train_loader, val_loader); the training order is a function of `seed` alone."""
    g = torch.Generator().manual_seed(seed)
    train = DataLoader(split.train, batch_size=batch_size, shuffle=True, generator=g, num_workers=workers,
                       drop_last=len(split.train) > batch_size)
    val = DataLoader(split.val, batch_size=max(batch_size, 256), shuffle=False, num_workers=workers)
    return train, val
