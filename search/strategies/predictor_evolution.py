"""Evolution over predictors (Once-for-All's search, Cai et al. 2020): with an accuracy predictor that estimates a
batch of architectures at once (estimator `ofa-mlp` or `train-mlp`) and the latency table, a whole evolution runs
in memory, vectorised, before the first ask: `generations` rounds over a population of `population`
architectures, each keeping the best `parent_ratio` by predicted reward, and filling the rest with mutants (each
decision resampled with probability `mutate_prob`) and uniform crossovers of two parents, in `mutation_ratio` :
rest.

The search then asks the best distinct architectures the evolution met, by predicted reward, one per sample: the
search records each with the estimator's value and the table's latency, and re-measures its top-k on the device as
for any strategy. `info()` says how many architectures the evolution evaluated, and how many a second.

It needs an estimator with `predict_batch(archs)` (ofa-mlp, train-mlp); a search binds it (Strategy.bind)."""
from __future__ import annotations

import time

import numpy as np

from hwnas.errors import HwnasError
from hwnas.search.strategies.base import Strategy, register_strategy


def evolve(space, accuracy, latency, reward, rng: np.random.Generator, population: int = 100,
           generations: int = 100, parent_ratio: float = 0.25, mutate_prob: float = 0.1,
           mutation_ratio: float = 0.5, keep: int = 1000) -> dict:
    """The evolution, vectorised. `accuracy(archs [N, D]) -> [N]`, `latency(archs) -> [N] ms`, `reward` a
    search.reward.Reward. Returns {"archs": [K, D] best distinct by reward, "reward", "accuracy", "latency_ms",
    "evaluated": architectures scored, "seconds"}."""
    sizes = np.array([len(d.choices) for d in space.decisions()], dtype=np.int64)
    d = len(sizes)

    def randoms(n):
        return (rng.random((n, d)) * sizes).astype(np.int64)

    def score(a):
        acc, lat = np.asarray(accuracy(a), dtype=np.float64), np.asarray(latency(a), dtype=np.float64)
        return np.asarray(reward.batch(acc, lat), dtype=np.float64), acc, lat

    start = time.perf_counter()
    pop = randoms(population)
    r, acc, lat = score(pop)
    seen_a, seen_r, seen_acc, seen_lat = [pop], [r], [acc], [lat]
    n_parents = max(2, int(round(parent_ratio * population)))
    n_mut = int(round(mutation_ratio * (population - n_parents)))
    n_cross = population - n_parents - n_mut
    for _ in range(generations):
        order = np.argsort(-r, kind="stable")[:n_parents]
        parents, pr = pop[order], r[order]
        mut = parents[rng.integers(n_parents, size=n_mut)]
        mut = np.where(rng.random(mut.shape) < mutate_prob, randoms(n_mut), mut)
        pa, pb = parents[rng.integers(n_parents, size=n_cross)], parents[rng.integers(n_parents, size=n_cross)]
        cross = np.where(rng.random(pa.shape) < 0.5, pa, pb)
        children = np.concatenate([mut, cross])
        cr, cacc, clat = score(children)
        seen_a.append(children)
        seen_r.append(cr)
        seen_acc.append(cacc)
        seen_lat.append(clat)
        pop, r = np.concatenate([parents, children]), np.concatenate([pr, cr])
    seconds = time.perf_counter() - start
    all_a, all_r = np.concatenate(seen_a), np.concatenate(seen_r)
    all_acc, all_lat = np.concatenate(seen_acc), np.concatenate(seen_lat)
    _, first = np.unique(all_a, axis=0, return_index=True)  # distinct architectures
    best = first[np.argsort(-all_r[first], kind="stable")][:keep]
    return {"archs": all_a[best], "reward": all_r[best], "accuracy": all_acc[best], "latency_ms": all_lat[best],
            "evaluated": int(len(all_a)), "distinct": int(len(first)), "seconds": seconds}


@register_strategy("predictor-evolution")
class PredictorEvolution(Strategy):
    def __init__(self, space, seed: int = 0, population: int = 500, generations: int = 60,
                 parent_ratio: float = 0.25, mutate_prob: float = 0.1, mutation_ratio: float = 0.5):
        super().__init__(space, seed)
        if population < 4 or generations < 0 or not 0 < parent_ratio < 1 or not 0 <= mutate_prob <= 1 \
                or not 0 <= mutation_ratio <= 1:
            raise HwnasError("predictor-evolution needs population >= 4, generations >= 0, 0 < parent_ratio < 1, "
                             f"0 <= mutate_prob <= 1, 0 <= mutation_ratio <= 1 (got {population}, {generations}, "
                             f"{parent_ratio}, {mutate_prob}, {mutation_ratio})")
        self.population, self.generations = int(population), int(generations)
        self.parent_ratio, self.mutate_prob, self.mutation_ratio = float(parent_ratio), float(mutate_prob), \
            float(mutation_ratio)
        self._latency = self._reward = self._estimator = None
        self.ranked: list[tuple] | None = None
        self.stats: dict = {}
        self.n_asked = 0

    def bind(self, latency=None, reward=None, estimator=None) -> None:
        self._latency, self._reward, self._estimator = latency, reward, estimator

    def _run(self) -> None:
        # a search's estimator comes wrapped in its accuracy cache; a batch predictor is asked directly (its values
        # cost microseconds, and the samples the search records go through the cache as usual)
        est = getattr(self._estimator, "estimator", self._estimator)
        if self._latency is None or self._reward is None or not hasattr(est, "predict_batch"):
            name = getattr(est, "name", None)
            raise HwnasError(f"strategy predictor-evolution needs an estimator that predicts a batch at once "
                             f"(ofa-mlp, train-mlp){f', not {name!r}' if name else ''}, and a latency table")
        est.warm_up()
        out = evolve(self.space, est.predict_batch, self._latency.predict_batch, self._reward, self.rng,
                     population=self.population, generations=self.generations, parent_ratio=self.parent_ratio,
                     mutate_prob=self.mutate_prob, mutation_ratio=self.mutation_ratio)
        self.ranked = [tuple(int(v) for v in a) for a in out["archs"]]
        self.stats = {"evaluated": out["evaluated"], "distinct": out["distinct"],
                      "seconds": round(out["seconds"], 4),
                      "architectures_per_s": round(out["evaluated"] / max(out["seconds"], 1e-9))}

    def ask(self):
        if self.ranked is None:
            self._run()
        i = self.n_asked
        self.n_asked += 1
        if i < len(self.ranked):
            return self.space.validate(self.ranked[i])
        return self.space.validate(self.space.sample(self.rng))  # beyond what the evolution met: random

    def state_dict(self):
        d = super().state_dict()
        d.update(ranked=None if self.ranked is None else [list(a) for a in self.ranked], stats=self.stats,
                 n_asked=self.n_asked)
        return d

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.ranked = None if state["ranked"] is None else [tuple(a) for a in state["ranked"]]
        self.stats, self.n_asked = dict(state["stats"]), int(state["n_asked"])

    def info(self):
        return {**super().info(), **self.stats}
