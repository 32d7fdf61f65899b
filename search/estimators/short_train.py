"""Accuracy by short training: build the network, train it for a few hundred steps on the data, report
validation top-1. The ranking signal MnasNet got from 5-epoch proxy training, scaled down. Training and
evaluation use the project's helpers (hwnas.data, hwnas.train); every architecture starts from the same
seed and sees the batches in the same order, so the value depends on the architecture alone."""
from __future__ import annotations

from hwnas.errors import HwnasError
from hwnas.search.estimators.base import Estimator, register_estimator


def load_split(space, data, seed: int):
    from hwnas.data import load_dataset
    return load_dataset(data, image_size=space.input_size, channels=3, seed=seed)


@register_estimator("short-train")
class ShortTrain(Estimator):
    def __init__(self, space, data="digits", seed: int = 0, steps: int = 60, batch_size: int = 64,
                 lr: float = 0.2):
        super().__init__(space, data=data or "digits", seed=seed)
        if steps < 1 or batch_size < 1 or lr <= 0:
            raise HwnasError(f"short-train needs steps >= 1, batch_size >= 1, lr > 0 (got {steps}, {batch_size}, {lr})")
        self.steps, self.batch_size, self.lr = int(steps), int(batch_size), float(lr)
        self._split = None

    def options(self):
        return {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr}

    @property
    def split(self):
        if self._split is None:
            self._split = load_split(self.space, self.data, self.seed)
        return self._split

    trains = True

    def num_classes(self) -> int:
        return self.split.num_classes

    def trained_model(self, arch):
        """The network of `arch` after the short training (the same run the estimate comes from)."""
        from hwnas.data import make_loaders
        from hwnas.train import seed_everything, train

        split = self.split
        seed_everything(self.seed)
        model = self.space.build(tuple(arch), num_classes=split.num_classes)
        train_loader, _ = make_loaders(split, self.batch_size, self.seed)
        train(model, train_loader, steps=self.steps, lr=self.lr, progress_bar=False, device=self.train_device)
        return model.eval()

    def estimate(self, arch) -> float:
        from hwnas.data import make_loaders
        from hwnas.train import evaluate

        model = self.trained_model(arch)
        _, val_loader = make_loaders(self.split, self.batch_size, self.seed)
        return float(evaluate(model, val_loader, device=self.train_device))
