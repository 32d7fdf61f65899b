"""Regularized (aging) evolution, after Real et al. 2019 ("Regularized Evolution for Image Classifier
Architecture Search"): a population of the `population` most recent results; each new child is a
mutation of the best of `sample_size` members drawn at random; the oldest member dies each step.
The first `population` proposals are random samples."""
from __future__ import annotations

from collections import deque

from hwnas.errors import HwnasError
from hwnas.search.strategies.base import Strategy, register_strategy


@register_strategy("evolution")
class RegularizedEvolution(Strategy):
    def __init__(self, space, seed: int = 0, population: int = 32, sample_size: int = 8, mutations: int = 1):
        super().__init__(space, seed)
        if population < 2 or not 1 <= sample_size <= population or mutations < 1:
            raise HwnasError("evolution needs population >= 2, 1 <= sample_size <= population, mutations >= 1 "
                             f"(got {population}, {sample_size}, {mutations})")
        self.population_size = int(population)
        self.sample_size = int(sample_size)
        self.mutations = int(mutations)
        self.population: deque[tuple[tuple[int, ...], float]] = deque()

    def ask(self):
        if len(self.population) < self.population_size:
            return self.space.validate(self.space.sample(self.rng))
        idx = self.rng.choice(len(self.population), size=self.sample_size, replace=False)
        parent = max((self.population[i] for i in sorted(idx)), key=lambda m: m[1])[0]
        child = parent
        for _ in range(self.mutations):
            child = self.space.mutate(child, self.rng)
        return self.space.validate(child)

    def _tell(self, arch, reward):
        self.population.append((arch, reward))
        while len(self.population) > self.population_size:
            self.population.popleft()

    def state_dict(self):
        d = super().state_dict()
        d["population"] = [[list(a), r] for a, r in self.population]
        return d

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.population = deque((tuple(a), float(r)) for a, r in state["population"])

    def info(self):
        best = max((r for _, r in self.population), default=None)
        return {**super().info(), "population": len(self.population), "population_best": best}
