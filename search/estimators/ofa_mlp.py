"""An accuracy predictor over the architecture encoding, fitted on a once-for-all supernet's estimates (OFA's
small MLP, Cai et al. 2020): once fitted, thousands of architectures are estimated in a millisecond, which is what
lets an evolution with the latency table evaluate tens of thousands of architectures a second
(search/strategies/predictor_evolution.py).

    est = get_estimator("ofa-mlp", space_at_32, data="digits", fit=400)   # the `ofa` options, plus fit/hidden
    est.warm_up()                      # trains (or reuses) the supernet, reads `fit` architectures off it, fits
    est.estimate_many(archs)           # one batched forward of the MLP

The encoding is one-hot per decision (OFA one-hot encodes kernel, expansion and depth per layer). The `fit`
architectures (random, distinct, seeded) are read off the supernet through an accuracy cache beside its
checkpoint (<checkpoint>.evals.jsonl), so they are computed once; the MLP is refitted from them whenever a process
needs it (a second or two: no model file, nothing unpickled). `info()` reports the MLP's error and rank
correlation on a held-out fifth of them, fitted on the rest, before the final fit on all.
"""
from __future__ import annotations

import numpy as np

from hwnas.errors import HwnasError
from hwnas.search.estimators.base import CachedEstimator, Estimator, register_estimator
from hwnas.search.estimators.ofa import OfaEstimator


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


@register_estimator("ofa-mlp")
class OfaMlpEstimator(Estimator):
    def __init__(self, space, data="digits", seed: int = 0, fit: int = 400, hidden: int = 400, layers: int = 3,
                 fit_seed: int = 777, steps: int = 1500, batch_size: int = 64, lr: float | None = None,
                 bn_batches: int = 8, random_paths: int = 2, distill: bool = True, schedule: str = "blockwise",
                 teacher: float = 0.15, metric: str = "top1", normalise: bool = False, validate: int = 0,
                 validate_steps: int = 300, checkpoint: str | None = None, checkpoint_every: int = 25):
        super().__init__(space, data=data or "digits", seed=seed)
        if fit < 1 or hidden < 1 or layers < 1:
            raise HwnasError(f"ofa-mlp needs fit >= 1, hidden >= 1, layers >= 1 (got {fit}, {hidden}, {layers})")
        # the supernet it reads: the `ofa` estimator with these options (the same checkpoint as `ofa` uses)
        self.supernet = OfaEstimator(space, data=data, seed=seed, steps=steps, batch_size=batch_size, lr=lr,
                                     bn_batches=bn_batches, random_paths=random_paths, distill=distill,
                                     schedule=schedule, teacher=teacher, metric=metric, normalise=normalise,
                                     validate=validate, validate_steps=validate_steps, checkpoint=checkpoint,
                                     checkpoint_every=checkpoint_every)
        self.is_accuracy = self.supernet.is_accuracy
        self.fit, self.hidden, self.layers, self.fit_seed = int(fit), int(hidden), int(layers), int(fit_seed)
        self._model = None
        self._report: dict | None = None

    def options(self):
        metric = {"metric": self.supernet.metric} if self.supernet.metric != "top1" else {}
        return {**self.supernet.options(), **metric, "fit": self.fit, "hidden": self.hidden, "layers": self.layers,
                "fit_seed": self.fit_seed}

    trains = True
    weights_note = OfaEstimator.weights_note

    @property
    def train_device(self) -> str:  # type: ignore[override]
        return self.supernet.train_device

    @train_device.setter
    def train_device(self, value: str) -> None:
        self.supernet.train_device = value

    def num_classes(self) -> int:
        return self.supernet.num_classes()

    def trained_model(self, arch):
        return self.supernet.trained_model(arch)

    def evaluations(self, log=None) -> tuple[list[tuple], np.ndarray]:
        """The `fit` architectures and their supernet estimates (computed once, cached beside the checkpoint)."""
        archs = fit_archs(self.space, self.fit, self.fit_seed)
        if len(archs) < self.fit:
            raise HwnasError(f"space {self.space.name!r} has fewer than fit={self.fit} distinct architectures")
        cache = CachedEstimator(self.supernet, self.supernet.checkpoint_path.with_suffix(".evals.jsonl"))
        todo = [a for a in archs if a not in cache.values]
        if todo and log is not None:
            log(f"reading {len(todo)} architectures off the supernet to fit the accuracy predictor")
        from hwnas.progress import progress
        with progress(len(todo), "supernet estimates for the predictor", enabled=None if todo else False) as bar:
            for i in range(0, len(todo), 10):  # recorded as they come: a kill loses at most these 10
                cache.estimate_many(todo[i:i + 10])
                bar.advance(len(todo[i:i + 10]))
        return archs, np.asarray(cache.estimate_many(archs), dtype=np.float64)

    def _fit(self, log=None):
        if self._model is not None:
            return self._model
        self.supernet.warm_up(log)
        archs, acc = self.evaluations(log)
        x = one_hot(self.space, archs)
        hidden = (self.hidden,) * self.layers
        self._report = {"fit": len(archs), "supernet_range": [float(acc.min()), float(acc.max())]}
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
        return {"predictor": dict(self._report), "supernet": self.supernet.info()}
