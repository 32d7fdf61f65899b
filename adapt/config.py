"""What a NetAdapt run is asked to do: one config object, named as `hwnas adapt`'s options (the CLI builds it
as `AdaptConfig(**params)`; the run records `record()` and a resume compares it)."""
from __future__ import annotations

from dataclasses import dataclass

from hwnas.settings import finite, literal, record, require

# settings that say where output goes or how many processes help: not recorded, free to change on --resume
NOT_RECORDED = ("out", "resume", "executor", "ray_address", "devices_file", "db", "max_iterations")
# recorded settings a resume may change: how many proposals run at once changes no result; the accuracy floor
# may be lowered (or raised) when an iteration stopped because every proposal fell below it
RESUMABLE = ("workers", "accuracy_floor", "train_device")
# names runs of earlier versions recorded (read on resume as today's names)
RENAMED = {"initial_fraction": "initial_step"}


@dataclass
class AdaptConfig:
    model: str
    budget_ms: float
    device: str = "cpu"
    data: str = "digits"
    weights: str | None = None
    input_size: int = 32
    batch: int = 1                  # the batch every latency is measured at (training batches: batch_size)
    train_device: str = "auto"      # where fine-tuning runs: auto (a GPU if torch sees one), cpu, cuda, cuda:N
    importance: str = "l2"          # which channels of a group go first (adapt/importance.py)
    out: str | None = None           # default runs/adapt-<model>-<device>
    short_steps: int = 50
    long_epochs: int = 2
    pretrain_steps: int = 300
    workers: int = 1
    executor: str = "local"         # where proposals run: local (process pool of `workers`) or ray
    ray_address: str | None = None
    initial_step: float = 0.1       # first latency reduction, a fraction of the original (the paper: 0.025)
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
    db: str | None = None           # the per-layer latency database (default: the latency-table database)
    resume: bool = False

    def __post_init__(self):
        if self.out is None:
            import os
            import re
            name = os.path.basename(str(self.model)).removesuffix(".safetensors")
            self.out = f"runs/adapt-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}-{self.device}"

    def check(self) -> None:
        """Every value in range, or one SettingError naming the first that is not."""
        require(finite(self.budget_ms) and self.budget_ms > 0, "{} must be a positive latency, got "
                + literal(repr(self.budget_ms)), "budget_ms")
        for name in ("short_steps", "long_epochs", "pretrain_steps"):
            require(isinstance(getattr(self, name), int) and getattr(self, name) >= 0, "{} must be 0 or more", name)
        for name in ("input_size", "batch", "workers", "unit", "min_proposals", "batch_size", "runs",
                     "max_iterations"):
            require(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, "{} must be at least 1",
                    name)
        require(finite(self.initial_step) and 0 < self.initial_step < 1, "{} must be in (0, 1)", "initial_step")
        require(finite(self.decay) and 0 < self.decay <= 1, "{} must be in (0, 1]", "decay")
        require(finite(self.max_cut) and 0 < self.max_cut <= 1, "{} must be in (0, 1]", "max_cut")
        require(self.accuracy_floor is None or (finite(self.accuracy_floor) and 0 <= self.accuracy_floor < 1),
                "{} is a top-1 in [0, 1)", "accuracy_floor")
        for name in ("lr", "pretrain_lr"):
            require(finite(getattr(self, name)) and getattr(self, name) > 0, "{} must be above 0", name)
        from hwnas.adapt.importance import get_importance
        from hwnas.train import check_train_device
        check_train_device(self.train_device)
        get_importance(self.importance)  # an unknown criterion: one line listing the known ones

    def record(self) -> dict:
        return record(self, omit=NOT_RECORDED)

    def data_args(self) -> dict:
        return {"spec": self.data, "image_size": self.input_size, "channels": 3, "seed": self.seed}


def saved_record(saved: dict) -> dict:
    """A run state's recorded settings under today's names; a setting an earlier version did not record reads
    as its default then (what that version used)."""
    from dataclasses import fields
    out = {RENAMED.get(k, k): v for k, v in saved.items()}
    for f in fields(AdaptConfig):
        if f.name not in out and f.name not in NOT_RECORDED and f.name not in ("model", "budget_ms"):
            out[f.name] = f.default
    return out
