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
from hwnas.registry import import_modules

import_modules(__name__, __path__)  # every module here registers its strategies: a new one is a new file

__all__ = ["Strategy", "get_strategy", "list_strategies", "register_strategy", "strategy_class"]
