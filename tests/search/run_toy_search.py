"""A toy search run as a separate process, for the kill -9 tests: python run_toy_search.py OUT STRATEGY N."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy_space import ToyPredictor, ToySpace  # noqa: E402

from hwnas.search.estimators import CachedEstimator, get_estimator  # noqa: E402
from hwnas.search.reward import Reward  # noqa: E402
from hwnas.search.run import CACHE, SearchRun  # noqa: E402
from hwnas.search.strategies import get_strategy  # noqa: E402


def make_run(out, strategy, n, resume=True):
    torch.set_num_threads(1)
    space = ToySpace()
    opts = {"batch": 4} if strategy in ("rl", "ppo") else ({"population": 8, "sample_size": 3}
                                                           if strategy == "evolution" else {})
    est = CachedEstimator(get_estimator("naswot", space, seed=0, calibration=6, batch_size=8), Path(out) / CACHE)
    return SearchRun(out, space, ToyPredictor(space), get_strategy(strategy, space, seed=5, **opts), est,
                     Reward.hard(4.0), samples=n, device=None, top_k=3,
                     config={"space": "toy", "strategy": strategy, "seed": 5}, resume=resume)


if __name__ == "__main__":
    out, strategy, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    res = make_run(out, strategy, n).run()
    print(res.summary["replay_mismatches"])
