import numpy as np
import pytest
import torch

from hwnas.data import load_dataset, make_loaders
from hwnas.errors import HwnasError


def test_digits_shapes_split_and_normalisation():
    s = load_dataset("digits", image_size=16, channels=3, val_fraction=0.2, seed=0)
    assert len(s.train) + len(s.val) == 1797 and s.num_classes == 10 and s.input_shape == (3, 16, 16)
    x, y = s.train.tensors
    assert x.shape[1:] == (3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-2
    assert torch.equal(x[:, 0], x[:, 2])  # gray repeated to 3 channels
    # stratified: each class is ~20% in validation
    yv = s.val.tensors[1].numpy()
    counts = np.bincount(yv, minlength=10)
    assert counts.min() >= 33 and counts.max() <= 38


def test_digits_split_is_deterministic_by_seed():
    a = load_dataset("digits", image_size=8, seed=1).val.tensors[1]
    b = load_dataset("digits", image_size=8, seed=1).val.tensors[1]
    c = load_dataset("digits", image_size=8, seed=2).val.tensors[0]
    assert torch.equal(a, b)
    assert not torch.equal(load_dataset("digits", image_size=8, seed=1).val.tensors[0], c)


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw"])
def test_npz_layouts(tmp_path, layout):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 12, 12), dtype=np.uint8)
    if layout == "nhwc":
        x = np.repeat(x[..., None], 3, axis=-1)
    elif layout == "nchw":
        x = np.repeat(x[:, None], 3, axis=1)
    y = np.repeat([3, 7], 20)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    s = load_dataset(tmp_path / "d.npz", image_size=8, channels=3)
    assert s.num_classes == 2 and s.input_shape == (3, 8, 8)
    assert set(s.train.tensors[1].tolist()) == {0, 1}  # labels 3, 7 mapped to 0, 1


def test_npz_float_images_and_channel_errors(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((30, 3, 10, 10)).astype(np.float32)
    np.savez(tmp_path / "f.npz", x=x, y=np.arange(30) % 3)
    s = load_dataset(tmp_path / "f.npz", image_size=10, channels=3)
    assert s.num_classes == 3 and s.train.tensors[0].shape[1:] == (3, 10, 10)
    # float input is taken as it is (not divided by 255): standardised values keep the original order
    gray = load_dataset(tmp_path / "f.npz", image_size=10, channels=1)
    assert gray.input_shape == (1, 10, 10)
    np.savez(tmp_path / "two.npz", x=rng.random((30, 2, 10, 10)), y=np.arange(30) % 3)
    with pytest.raises(HwnasError, match="2 channels; cannot make 3"):
        load_dataset(tmp_path / "two.npz", channels=3)
    np.savez(tmp_path / "flt.npz", x=x, y=np.linspace(0, 1, 30))
    with pytest.raises(HwnasError, match="labels y must be integers"):
        load_dataset(tmp_path / "flt.npz")


def _png(path, value):
    from PIL import Image
    Image.fromarray(np.full((10, 10, 3), value, dtype=np.uint8)).save(path)


def test_image_folder_and_train_val_layout(tmp_path):
    for cls, v in (("cat", 20), ("dog", 230)):
        (tmp_path / "flat" / cls).mkdir(parents=True)
        for i in range(5):
            _png(tmp_path / "flat" / cls / f"{i}.png", v)
        for part in ("train", "val"):
            (tmp_path / "tv" / part / cls).mkdir(parents=True)
            for i in range(3):
                _png(tmp_path / "tv" / part / cls / f"{i}.png", v)
    s = load_dataset(tmp_path / "flat", image_size=6)
    assert s.class_names == ["cat", "dog"] and len(s.train) + len(s.val) == 10
    s = load_dataset(tmp_path / "tv", image_size=6)
    assert len(s.train) == 6 and len(s.val) == 6
    # dog images are brighter than cat images after standardisation too
    x, y = s.train.tensors
    assert float(x[y == 1].mean()) > float(x[y == 0].mean())


@pytest.mark.parametrize("make,match", [
    (lambda p: p / "missing.npz", "does not exist"),
    (lambda p: (np.savez(p / "a.npz", images=np.zeros((2, 4, 4))), p / "a.npz")[1], "must hold arrays 'x'"),
    (lambda p: (np.savez(p / "b.npz", x=np.zeros((3, 4, 4)), y=np.zeros(2, int)), p / "b.npz")[1],
     "3 images but y has 2 labels"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no class folders"),
    (lambda p: ((p / "noimg" / "a").mkdir(parents=True), (p / "noimg" / "a" / "x.txt").write_text("x"),
                p / "noimg")[2], "no images"),
    (lambda p: "imagenet", "unknown data 'imagenet'"),
])
def test_errors(tmp_path, make, match):
    with pytest.raises(HwnasError, match=match):
        load_dataset(make(tmp_path))


def test_loaders_are_seeded():
    s = load_dataset("digits", image_size=8)
    a = next(iter(make_loaders(s, 16, seed=3)[0]))[1]
    b = next(iter(make_loaders(s, 16, seed=3)[0]))[1]
    assert torch.equal(a, b)
