"""What `hwnas search` and `hwnas scale` are asked to do: one config object each, named as the CLI's options.

The CLI builds them from its parameters (`SearchConfig(**params)`), the Python API from keywords
(`search(target="20ms", samples=50)`) or whole (`search(SearchConfig(...))`); the run records `record()`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hwnas.settings import finite, literal, record, require

DEFAULT_W = -0.07  # MnasNet's soft-reward exponent
MISSING_OPS = ("build", "kernels")  # what a search does with ops its latency table lacks: time them, or predict them


def target_ms(target) -> float:
    from hwnas.settings import SettingError
    from hwnas.units import parse_latency_ms
    try:
        return parse_latency_ms(target)
    except SettingError:
        raise
    except Exception as e:  # the unit parser's message, said of the setting
        raise SettingError("{}: " + literal(e), "target") from None


@dataclass
class SearchConfig:
    target: Any                      # "20ms", "0.02s", "20000us" or a number of ms
    device: str = "cpu"
    space: str = "mnasnet"
    strategy: str = "evolution"
    strategy_options: dict = field(default_factory=dict)
    samples: int = 200
    w: float | None = None           # soft reward: alpha = beta = w (default -0.07)
    hard: bool = False               # hard constraint: alpha = 0, beta = -1
    alpha: float | None = None
    beta: float | None = None
    data: str | None = "digits"
    estimator: str = "naswot"
    estimator_options: dict = field(default_factory=dict)
    out: str | None = None           # default runs/search-<space>-<device>-<strategy>
    resume: bool = False
    seed: int = 0
    top_k: int = 5
    db: str | None = None
    build: bool = True               # build a missing latency table (False: fail instead)
    missing_ops: str = "build"       # ops the table lacks: "build" (time them, as `build` says) or "kernels"
    executor: Any = "local"          # "local" (this process), "ray", or an hwnas.executor.Executor
    ray_address: str | None = None
    devices_file: str | None = None
    train_device: str = "auto"       # where estimators that train do so: auto (a GPU if torch sees one), cpu, cuda
    train_size: int | None = None    # input size the accuracy is estimated at (default: min(the space's, 32))

    def __post_init__(self):
        from hwnas.train import check_train_device
        check_train_device(self.train_device)
        self.target_ms = target_ms(self.target)
        require(self.train_size is None or (isinstance(self.train_size, int) and self.train_size >= 8),
                "{} must be at least 8 px", "train_size")
        require(self.missing_ops in MISSING_OPS, "{} must be one of " + ", ".join(MISSING_OPS), "missing_ops")
        self.strategy_options = dict(self.strategy_options or {})
        self.estimator_options = dict(self.estimator_options or {})
        if self.out is None:
            self.out = f"runs/search-{self.space}-{self.device}-{self.strategy}"
        require(isinstance(self.samples, int) and self.samples >= 1, "{} must be at least 1", "samples")
        require(isinstance(self.top_k, int) and self.top_k >= 1, "{} must be at least 1", "top_k")
        for name in ("w", "alpha", "beta"):
            value = getattr(self, name)
            require(value is None or finite(value), "{} must be a finite number", name)
        require(not (self.hard and (self.w is not None or self.alpha is not None or self.beta is not None)),
                "{} sets alpha=0, beta=-1: do not combine it with {}, {} or {}", "hard", "w", "alpha", "beta")
        require(self.w is None or (self.alpha is None and self.beta is None),
                "give either {} (soft reward) or {}/{}, not both", "w", "alpha", "beta")

    def reward(self):
        from hwnas.search.reward import Reward
        if self.hard:
            return Reward.hard(self.target_ms)
        if self.alpha is not None or self.beta is not None:
            return Reward(self.target_ms, DEFAULT_W if self.alpha is None else self.alpha,
                          DEFAULT_W if self.beta is None else self.beta)
        return Reward.soft(self.target_ms, DEFAULT_W if self.w is None else self.w)

    def resolutions(self, space) -> tuple[int, int]:
        """(deployment input size: the space's, which the latency table is at; training input size: where the
        accuracy is estimated, --train-size or min(the space's, 32) — NetAdapt's split, cheap training on a
        CPU with latency at the size the network is deployed at)."""
        return space.input_size, self.train_size or min(space.input_size, 32)

    def record(self) -> dict:
        """The settings a search run records; a resume must ask the same (samples may grow)."""
        rec = record(self, omit=("target", "w", "hard", "alpha", "beta", "out", "resume", "db", "build", "executor",
                                 "ray_address", "devices_file", "train_device", "train_size", "missing_ops"))
        if self.missing_ops != "build":  # predicted latencies are not timed ones: a resume must ask the same
            rec["missing_ops"] = self.missing_ops
        return {**rec, "target_ms": self.target_ms, "reward": self.reward().to_dict()}


@dataclass
class ScaleConfig:
    target: Any
    device: str = "cpu"
    base: str = "efficientnet_b0"
    data: str = "digits"
    resolution: int = 32
    input_size: int | None = None    # deployment base resolution the latency is measured at (None: resolution)
    steps: int = 200
    final_steps: int | None = None   # default: steps; 0 exports the final network untrained
    batch_size: int = 32
    lr: float = 0.05
    grid_step: float = 0.1
    tolerance: float = 0.05
    max_candidates: int = 5
    grid: list | None = None         # explicit (alpha, beta, gamma) candidates instead of the generated grid
    phi_min: float = -4.0
    phi_max: float = 8.0
    bisect_steps: int = 4
    runs: int | None = None          # timed runs per round of the measurement protocol (default: the protocol's)
    out: str | None = None           # default runs/scale-<base>-<device>
    resume: bool = False
    seed: int = 0
    devices_file: str | None = None
    train_device: str = "auto"       # where candidates train: auto (a GPU if torch sees one), cpu, cuda, cuda:N

    def __post_init__(self):
        from hwnas.search.scaling import MIN_RESOLUTION, compound_grid
        from hwnas.train import check_train_device
        check_train_device(self.train_device)
        self.target_ms = target_ms(self.target)
        if self.out is None:
            self.out = f"runs/scale-{self.base}-{self.device}"
        require(isinstance(self.resolution, int) and self.resolution >= MIN_RESOLUTION,
                "{} must be at least " + str(MIN_RESOLUTION) + " px", "resolution")
        require(self.input_size is None or (isinstance(self.input_size, int) and self.input_size >= MIN_RESOLUTION),
                "{} must be at least " + str(MIN_RESOLUTION) + " px", "input_size")
        for name in ("steps", "batch_size"):
            require(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, "{} must be at least 1", name)
        require(self.final_steps is None or (isinstance(self.final_steps, int) and self.final_steps >= 0),
                "{} must be 0 or more", "final_steps")
        require(finite(self.lr) and self.lr > 0, "{} must be above 0", "lr")
        require(finite(self.phi_min) and finite(self.phi_max) and self.phi_min < self.phi_max,
                "{} must be below {}", "phi_min", "phi_max")
        require(isinstance(self.bisect_steps, int) and self.bisect_steps >= 0, "{} must be 0 or more",
                "bisect_steps")
        require(self.runs is None or (isinstance(self.runs, int) and self.runs >= 1), "{} must be at least 1", "runs")
        if self.grid is None:
            self.grid = compound_grid(step=self.grid_step, tolerance=self.tolerance,
                                      max_candidates=self.max_candidates)
        self.grid = [tuple(float(v) for v in g) for g in self.grid]
        self.final_steps = self.steps if self.final_steps is None else self.final_steps

    def record(self) -> dict:
        """The settings a scaling run records; a resume must ask the same."""
        rec = record(self, omit=("target", "grid", "grid_step", "tolerance", "max_candidates", "phi_min",
                                 "phi_max", "runs", "out", "resume", "devices_file", "train_device"))
        return {**rec, "target_ms": self.target_ms, "grid": [list(g) for g in self.grid],
                "phi_range": [self.phi_min, self.phi_max]}
