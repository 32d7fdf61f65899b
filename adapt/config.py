"""What a NetAdapt run is asked to do (the CLI builds it from its options; the run records it)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AdaptConfig:
    model: str
    budget_ms: float
    device: str = "cpu"
    data: str = "digits"
    weights: str | None = None
    input_size: int = 32
    out: str = "netadapt-out"
    short_steps: int = 50
    long_epochs: int = 2
    pretrain_steps: int = 300
    workers: int = 1
    executor: str = "local"         # where proposals run: local (process pool of `workers`) or ray
    ray_address: str | None = None
    initial_fraction: float = 0.1   # the paper-like value is 0.025; larger steps finish sooner here
    decay: float = 0.96
    unit: int = 8
    min_proposals: int = 1          # halve Δ until at least this many groups can meet it (or all that can)
    max_cut: float = 1.0            # fraction of a group's channels one iteration may remove
    accuracy_floor: float | None = None  # top-1 no kept proposal may fall below (None: halfway chance..start)
    batch_size: int = 64
    lr: float = 0.01
    pretrain_lr: float = 0.05
    seed: int = 0
    runs: int = 10                  # timed runs per round of the measurement protocol (whole networks)
    max_iterations: int = 200
    devices_file: str | None = None
    layer_db: str | None = None
    resume: bool = False

    def data_args(self) -> dict:
        return {"spec": self.data, "image_size": self.input_size, "channels": 3, "seed": self.seed}
