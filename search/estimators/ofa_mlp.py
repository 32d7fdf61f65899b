"""Accuracy predictors over the architecture encoding (OFA's small MLP, Cai et al. 2020): once fitted, thousands
of architectures are estimated in a millisecond, which is what lets an evolution with the latency table evaluate
tens of thousands of architectures a second (search/strategies/predictor_evolution.py). Two of them, by what the
MLP is fitted on:

    est = get_estimator("ofa-mlp", space_at_32, data="digits", fit=400)   # the `ofa` options, plus fit/hidden
    est = get_estimator("train-mlp", space_at_32, data="digits", fit=200, steps=50)   # short-train's options
    est.warm_up()                      # reads (or reuses) `fit` architectures' estimates, fits the MLP
    est.estimate_many(archs)           # one batched forward of the MLP

- `ofa-mlp`: the `fit` architectures read off a once-for-all supernet (trained once, then a second each);
- `train-mlp`: the `fit` architectures each trained alone for `steps` (short-train, default 50 steps at lr 0.02):
  measured on distorted digits (bench/supernet.py --hard 4), 50 steps from scratch rank 20 architectures like
  500 steps do (Spearman 0.86), where the supernet's reads rank at 0.23-0.32.

The encoding is one-hot per decision (OFA one-hot encodes kernel, expansion and depth per layer). The `fit`
architectures (random, distinct, seeded) are estimated through an accuracy cache (ofa-mlp: beside the supernet's
checkpoint, <checkpoint>.evals.jsonl; train-mlp: <cache root>/predictor/), so they are computed once, and a
killed warm-up loses at most 10 of them; the MLP is refitted from them whenever a process needs it (a second or
two: no model file, nothing unpickled). `info()` reports the MLP's error and rank correlation on a held-out fifth
of them, fitted on the rest, before the final fit on all.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hwnas.errors import HwnasError
from hwnas.search.estimators.base import CachedEstimator, Estimator, register_estimator
from hwnas.search.estimators.ofa import OfaEstimator
from hwnas.search.estimators.short_train import ShortTrain


def one_hot(space, archs) -> np.ndarray:
    """[N, sum of choice counts] one-hot encoding of `archs`, decision by decision."""
    a = np.asarray(archs, dtype=np.int64).reshape(-1, len(space.decisions()))
    sizes = np.array([len(d.choices) for d in space.decisions()])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = np.zeros((len(a), int(sizes.sum())), dtype=np.float32)
    out[np.arange(len(a))[:, None], offsets[None, :] + a] = 1.0
    return out


def fit_archs(space, n: int, seed: int) -> list[tuple]:
    """`n` distinct random architectures of `space`, seeded."""
    rng = np.random.default_rng(seed)
    seen, out = set(), []
    for _ in range(100 * n):
        if len(out) == n:
            break
        a = tuple(space.sample(rng))
        if a not in seen:
            seen.add(a)
            out.append(a)
    return out


def _mlp(hidden: tuple, seed: int):
    from sklearn.neural_network import MLPRegressor
    return MLPRegressor(hidden_layer_sizes=hidden, activation="relu", solver="adam", learning_rate_init=1e-3,
                        alpha=1e-4, max_iter=2000, early_stopping=False, random_state=seed, tol=1e-7,
                        n_iter_no_change=50)


class MlpPredictor(Estimator):
    """The MLP over the one-hot encoding, fitted on `fit` estimates of `self.source` (an estimator that trains:
    `trained_model(arch)` is the source's network). Subclasses set `source` and `evals_path`."""

    source: Estimator
    trains = True

    def __init__(self, space, data="digits", seed: int = 0, fit: int = 400, hidden: int = 400, layers: int = 3,
                 fit_seed: int = 777):
        super().__init__(space, data=data or "digits", seed=seed)
        if fit < 1 or hidden < 1 or layers < 1:
            raise HwnasError(f"{self.name} needs fit >= 1, hidden >= 1, layers >= 1 (got {fit}, {hidden}, {layers})")
        self.fit, self.hidden, self.layers, self.fit_seed = int(fit), int(hidden), int(layers), int(fit_seed)
        self._model = None
        self._report: dict | None = None

    @property
    def evals_path(self) -> Path:
        raise NotImplementedError

    def options(self):
        return {"fit": self.fit, "hidden": self.hidden, "layers": self.layers, "fit_seed": self.fit_seed}

    @property
    def weights_note(self) -> str:  # type: ignore[override]
        return self.source.weights_note

    @property
    def train_device(self) -> str:  # type: ignore[override]
        return self.source.train_device

    @train_device.setter
    def train_device(self, value: str) -> None:
        self.source.train_device = value

    def num_classes(self) -> int:
        return self.source.num_classes()

    def trained_model(self, arch):
        return self.source.trained_model(arch)

    def evaluations(self, log=None) -> tuple[list[tuple], np.ndarray]:
        """The `fit` architectures and their source estimates (computed once, cached at `evals_path`)."""
        archs = fit_archs(self.space, self.fit, self.fit_seed)
        if len(archs) < self.fit:
            raise HwnasError(f"space {self.space.name!r} has fewer than fit={self.fit} distinct architectures")
        cache = CachedEstimator(self.source, self.evals_path)
        todo = [a for a in archs if a not in cache.values]
        if todo and log is not None:
            log(f"estimating {len(todo)} architectures ({self.source.name}) to fit the accuracy predictor")
        from hwnas.progress import progress
        with progress(len(todo), f"{self.source.name} estimates for the predictor",
                      enabled=None if todo else False) as bar:
            for i in range(0, len(todo), 10):  # recorded as they come: a kill loses at most these 10
                cache.estimate_many(todo[i:i + 10])
                bar.advance(len(todo[i:i + 10]))
        return archs, np.asarray(cache.estimate_many(archs), dtype=np.float64)

    def _fit(self, log=None):
        if self._model is not None:
            return self._model
        self.source.warm_up(log)
        archs, acc = self.evaluations(log)
        x = one_hot(self.space, archs)
        hidden = (self.hidden,) * self.layers
        self._report = {"fit": len(archs), "fitted_on": self.source.name,
                        "fit_range": [float(acc.min()), float(acc.max())]}
        # fitted on standardised values: accuracies differ by a few points around a large mean, and an MLP fitted
        # on the raw values learns the mean and overfits the rest (an additive test function: held-out Spearman
        # 0.18 raw, 0.93 standardised)
        self._shift, self._scale = float(acc.mean()), float(acc.std()) or 1.0
        z = (acc - self._shift) / self._scale
        cut = int(len(archs) * 0.8)
        if len(archs) >= 10:  # how well it predicts what it was not fitted on: a fifth held out
            from scipy.stats import spearmanr
            held = _mlp(hidden, self.seed).fit(x[:cut], z[:cut]).predict(x[cut:]) * self._scale + self._shift
            rho = spearmanr(held, acc[cut:])[0]
            self._report.update(held_out=len(archs) - cut,
                                held_out_rmse=float(np.sqrt(np.mean((held - acc[cut:]) ** 2))),
                                held_out_spearman=float(rho) if np.isfinite(rho) else 0.0)
        self._model = _mlp(hidden, self.seed).fit(x, z)
        return self._model

    def warm_up(self, log=None) -> None:
        self._fit(log)

    def estimate_many(self, archs, executor=None, log=None) -> list[float]:
        if len(archs) == 0:
            return []
        return [float(v) for v in self.predict_batch(archs)]

    def predict_batch(self, archs) -> np.ndarray:
        """Predicted top-1 of `archs` ([N] in [0, 1]): one batched forward of the MLP."""
        model = self._fit()
        return np.clip(model.predict(one_hot(self.space, archs)) * self._scale + self._shift, 0.0, 1.0)

    def estimate(self, arch) -> float:
        return float(self.predict_batch([arch])[0])

    def info(self) -> dict:
        self._fit()
        return {"predictor": dict(self._report)}


@register_estimator("ofa-mlp")
class OfaMlpEstimator(MlpPredictor):
    def __init__(self, space, data="digits", seed: int = 0, fit: int = 400, hidden: int = 400, layers: int = 3,
                 fit_seed: int = 777, steps: int = 1500, batch_size: int = 64, lr: float | None = None,
                 bn_batches: int = 8, random_paths: int = 2, distill: bool = True, schedule: str = "blockwise",
                 teacher: float = 0.15, metric: str = "top1", normalise: bool = False, validate: int = 0,
                 validate_steps: int = 300, checkpoint: str | None = None, checkpoint_every: int = 25):
        super().__init__(space, data=data, seed=seed, fit=fit, hidden=hidden, layers=layers, fit_seed=fit_seed)
        # the supernet it reads: the `ofa` estimator with these options (the same checkpoint as `ofa` uses)
        self.supernet = self.source = OfaEstimator(
            space, data=data, seed=seed, steps=steps, batch_size=batch_size, lr=lr, bn_batches=bn_batches,
            random_paths=random_paths, distill=distill, schedule=schedule, teacher=teacher, metric=metric,
            normalise=normalise, validate=validate, validate_steps=validate_steps, checkpoint=checkpoint,
            checkpoint_every=checkpoint_every)
        self.is_accuracy = self.supernet.is_accuracy

    @property
    def evals_path(self) -> Path:
        return self.supernet.checkpoint_path.with_suffix(".evals.jsonl")

    def options(self):
        metric = {"metric": self.supernet.metric} if self.supernet.metric != "top1" else {}
        read = {k: v for k, v in self.supernet.options().items() if k != "finetune"}  # never fine-tuned here
        return {**read, **metric, **super().options()}

    def info(self) -> dict:
        return {**super().info(), "supernet": self.supernet.info()}


@register_estimator("train-mlp")
class TrainMlpEstimator(MlpPredictor):
    def __init__(self, space, data="digits", seed: int = 0, fit: int = 200, hidden: int = 400, layers: int = 3,
                 fit_seed: int = 777, steps: int = 50, batch_size: int = 64, lr: float = 0.02,
                 evals: str | None = None):
        super().__init__(space, data=data, seed=seed, fit=fit, hidden=hidden, layers=layers, fit_seed=fit_seed)
        # each fit architecture trained alone: the `short-train` estimator with these options
        self.source = ShortTrain(space, data=data, seed=seed, steps=steps, batch_size=batch_size, lr=lr)
        self._evals = Path(evals) if evals else None

    @property
    def evals_path(self) -> Path:
        """`evals`, or in the cache; the file is keyed by the estimates' config inside, as every estimate cache."""
        from hwnas.cache import cache_dir
        return self._evals or cache_dir("predictor") / f"train-mlp-{self.space.name}.evals.jsonl"

    def options(self):
        return {**self.source.options(), **super().options()}
