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
# the deployment input of a network hwnas cannot look up (your own module or factory), and the largest default
# training input: fine-tuning at 224 is out of reach of a 2-core CPU (resnet50: ~0.26 s per batch of 64 at 32,
# ~50x that at 224); pruned networks are resolution-agnostic, so they train small and are timed at full size
DEFAULT_INPUT_SIZE = 224
TRAIN_SIZE = 32


def model_input_size(model) -> int | None:
    """The input size a zoo network (or an hwnas network file made from one) was designed for; None otherwise."""
    import os
    from hwnas.errors import HwnasError
    from hwnas.models import get_info, list_models
    name = str(model)
    if name.endswith(".safetensors") and os.path.isfile(name):
        from hwnas.tensorfile import load_tree
        try:
            base = load_tree(name, "pruned-network", what="network file").get("base")
        except HwnasError:  # the command reads the file again and says what is wrong with it
            return None
        name = base.get("zoo") if isinstance(base, dict) else None
    return get_info(name).input_size if name in list_models() else None


LAYER_COSTS = ("measured", "kernels")  # where NetAdapt's per-layer costs come from (adapt/costs.py)


@dataclass
class AdaptConfig:
    model: str
    budget_ms: float
    device: str = "cpu"
    data: str = "digits"
    weights: str | None = None
    input_size: int | None = None   # deployment input: every latency is measured at it (None: the model's own)
    train_size: int | None = None   # fine-tuning and evaluation input (None: min(input_size, TRAIN_SIZE))
    batch: int = 1                  # the batch every latency is measured at (training batches: batch_size)
    train_device: str = "auto"      # where fine-tuning runs: auto (a GPU if torch sees one), cpu, cuda, cuda:N
    importance: str = "l2"          # which channels of a group go first (adapt/importance.py)
    layer_costs: str = "measured"   # per-layer costs: measured (each conv timed alone) or kernels (the kernel table)
    distill: bool = True            # fine-tune against the unpruned network's soft labels too (Hinton et al.)
    out: str | None = None           # default runs/adapt-<model>-<device>
    short_steps: int = 50
    long_epochs: int = 2
    long_steps: int | None = None   # the long-term fine-tune in steps (None: long_epochs passes over the data)
    pretrain_steps: int = 600       # resnet50 from scratch on digits at 32: top-1 0.60 after 300, 0.81 after 600
    workers: int = 1
    executor: str = "local"         # where proposals run: local (process pool of `workers`) or ray
    ray_address: str | None = None
    initial_step: float = 0.1       # first latency reduction, a fraction of the original (the paper: 0.025)
    decay: float = 0.96
    unit: int = 8
    min_proposals: int = 2          # halve Δ until at least this many groups can meet it (or all that can)
    max_proposals: int | None = 8   # fine-tune at most this many per iteration (the least cut); None: all
    max_cut: float = 0.5            # fraction of a group's channels one iteration may remove (1.0: the paper)
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
        if self.input_size is None:
            self.input_size = model_input_size(self.model) or DEFAULT_INPUT_SIZE
        if self.train_size is None and isinstance(self.input_size, int):
            self.train_size = min(self.input_size, TRAIN_SIZE)

    def check(self) -> None:
        """Every value in range, or one SettingError naming the first that is not."""
        require(finite(self.budget_ms) and self.budget_ms > 0, "{} must be a positive latency, got "
                + literal(repr(self.budget_ms)), "budget_ms")
        for name in ("short_steps", "long_epochs", "pretrain_steps"):
            require(isinstance(getattr(self, name), int) and getattr(self, name) >= 0, "{} must be 0 or more", name)
        for name in ("input_size", "train_size", "batch", "workers", "unit", "min_proposals", "batch_size",
                     "runs", "max_iterations"):
            require(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, "{} must be at least 1",
                    name)
        require(self.layer_costs in LAYER_COSTS, "{} must be one of " + ", ".join(LAYER_COSTS), "layer_costs")
        require(self.long_steps is None or (isinstance(self.long_steps, int) and self.long_steps >= 0),
                "{} must be 0 or more", "long_steps")
        require(self.max_proposals is None or (isinstance(self.max_proposals, int) and self.max_proposals >= 1),
                "{} must be at least 1", "max_proposals")
        require(self.max_proposals is None or self.max_proposals >= self.min_proposals,
                "{} must be at least {}", "max_proposals", "min_proposals")
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
        """The data NetAdapt fine-tunes and evaluates on: at the training size, not the deployment size."""
        return {"spec": self.data, "image_size": self.train_size, "channels": 3, "seed": self.seed}


def saved_record(saved: dict) -> dict:
    """A run state's recorded settings under today's names; a setting an earlier version did not record reads
    as its default then (what that version used)."""
    from dataclasses import fields
    out = {RENAMED.get(k, k): v for k, v in saved.items()}
    # before train_size, a run trained and measured at its one input_size; before max_proposals, every proposal
    # was fine-tuned; before distill, none was distilled
    out.setdefault("input_size", 32)  # the default while one size served both
    out.setdefault("train_size", out["input_size"])
    out.setdefault("max_proposals", None)
    out.setdefault("distill", False)
    for f in fields(AdaptConfig):
        if f.name not in out and f.name not in NOT_RECORDED and f.name not in ("model", "budget_ms"):
            out[f.name] = f.default
    return out
