"""Search strategies: ask/tell objects behind one registry.

    strat = get_strategy("evolution", space, seed=0, population=32)
    arch = strat.ask(); strat.tell(arch, reward)
    state = strat.state_dict(); strat.load_state_dict(state)     # resume

Registered: random, evolution (regularized/aging), rl (REINFORCE, LSTM controller), ppo (same controller,
PPO updates as in MnasNet), progressive (PNAS: cells grown block by block, a learned accuracy predictor
ranks the children; cell spaces only).
"""
from __future__ import annotations

from hwnas.search.strategies.base import (Strategy, get_strategy, list_strategies, register_strategy,
                                          strategy_class)
from hwnas.search.strategies import random_search as _random  # noqa: F401  (registers "random")
from hwnas.search.strategies import evolution as _evolution  # noqa: F401
from hwnas.search.strategies import rl as _rl  # noqa: F401  (registers "rl" and "ppo")
from hwnas.search.strategies import progressive as _progressive  # noqa: F401

__all__ = ["Strategy", "get_strategy", "list_strategies", "register_strategy", "strategy_class"]
