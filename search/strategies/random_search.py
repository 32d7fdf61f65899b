"""Random search: uniform samples of the space (the baseline every strategy must beat)."""
from __future__ import annotations

from hwnas.search.strategies.base import Strategy, register_strategy


@register_strategy("random")
class RandomSearch(Strategy):
    def __init__(self, space, seed: int = 0):
        super().__init__(space, seed)

    def ask(self):
        return self.space.validate(self.space.sample(self.rng))
