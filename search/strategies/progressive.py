"""Progressive search (PNAS, Liu et al., ECCV 2018): grow cells one block at a time with a learned predictor.

Stage 1 evaluates `beam` one-block cells. Each later stage expands the `beam` best architectures of the
stage before into every cell with one more block (`space.expand`), ranks the children by the reward
computed from the *predicted* accuracy and the latency table, and evaluates the top `beam`; then the
accuracy predictor is refit on everything evaluated so far. Once cells have the space's maximum number of
blocks, stages continue as predictor-ranked local search: the children of the best architectures are
their single-decision neighbours.

The accuracy predictor is an ensemble of small MLPs over a one-hot encoding of the decisions that matter
(PNAS used an ensemble of MLPs or an LSTM); it is refit from the recorded results at each stage, so the
strategy's state is its results, the queue of the current stage and its RNG. `info()` reports, per stage,
how well the predictor ranked what it chose (Spearman of predicted vs observed accuracy), PNAS's measure.

The ranking uses the search's latency predictor and reward (SearchRun binds them); without them, the
predictor learns the reward itself.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.search.strategies.base import Strategy, register_strategy


def _spearman(a, b) -> float | None:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


class AccuracyPredictor:
    """An ensemble of MLPs regressing a target (accuracy) on architecture encodings: the space's
    `features` where it has them (cell spaces: block-averaged, so they extend to larger cells), else a
    one-hot of every decision."""

    def __init__(self, space, members: int = 3, hidden: int = 64, epochs: int = 300, seed: int = 0):
        self.space, self.members, self.hidden, self.epochs, self.seed = space, members, hidden, epochs, seed
        sizes = [len(d.choices) for d in space.decisions()]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        probe = space.features(np.zeros((1, len(sizes)), dtype=np.int64))  # None: the space has no features
        self.featurize = space.features if probe is not None else None
        self.width = probe.shape[1] if probe is not None else int(sum(sizes))
        self.nets: list[nn.Module] = []
        self.mean, self.std = 0.0, 1.0

    def encode(self, archs) -> torch.Tensor:
        a = np.asarray(archs, dtype=np.int64).reshape(-1, len(self.offsets))
        if self.featurize is not None:
            return torch.from_numpy(np.ascontiguousarray(self.featurize(a), dtype=np.float32))
        mask = self.space.active_mask(a) if hasattr(self.space, "active_mask") else np.ones_like(a, dtype=bool)
        x = np.zeros((len(a), self.width), dtype=np.float32)
        rows, cols = np.nonzero(mask)
        x[rows, self.offsets[cols] + a[rows, cols]] = 1.0
        return torch.from_numpy(x)

    def fit(self, archs, targets) -> None:
        x = self.encode(archs)
        y = torch.as_tensor(np.asarray(targets, dtype=np.float32))
        self.mean, self.std = float(y.mean()), float(y.std()) if len(y) > 1 and float(y.std()) > 1e-8 else 1.0
        y = (y - self.mean) / self.std
        self.nets = []
        for m in range(self.members):
            g = torch.Generator().manual_seed(self.seed * 1000 + m)
            net = nn.Sequential(nn.Linear(self.width, self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.hidden),
                                nn.ReLU(), nn.Linear(self.hidden, 1))
            with torch.no_grad():
                for p in net.parameters():
                    p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) / np.sqrt(max(1, p.shape[-1])))
            opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=1e-3)
            for _ in range(self.epochs):
                opt.zero_grad()
                loss = ((net(x).squeeze(1) - y) ** 2).mean()
                loss.backward()
                opt.step()
            self.nets.append(net.eval())

    @torch.no_grad()
    def predict(self, archs, chunk: int = 65536) -> np.ndarray:
        a = np.asarray(archs, dtype=np.int64).reshape(-1, len(self.offsets))
        if not self.nets:
            return np.full(len(a), self.mean)
        out = []
        for i in range(0, len(a), chunk):
            x = self.encode(a[i:i + chunk])
            out.append(torch.stack([n(x).squeeze(1) for n in self.nets]).mean(0).numpy())
        return np.concatenate(out) * self.std + self.mean if out else np.zeros(0)


@register_strategy("progressive")
class ProgressiveSearch(Strategy):
    def __init__(self, space, seed: int = 0, beam: int = 8, max_candidates: int = 4096, members: int = 3,
                 epochs: int = 300):
        super().__init__(space, seed)
        if not hasattr(space, "expand") or not hasattr(space, "blocks"):
            raise HwnasError(f"strategy 'progressive' grows cells block by block and needs a cell space "
                             f"(nasnet, pnas); space {getattr(space, 'name', space)!r} is not one")
        if beam < 1 or max_candidates < beam or members < 1 or epochs < 1:
            raise HwnasError(f"progressive needs beam >= 1, max_candidates >= beam, members >= 1, epochs >= 1 "
                             f"(got {beam}, {max_candidates}, {members}, {epochs})")
        self.beam, self.max_candidates = int(beam), int(max_candidates)
        self.members, self.epochs = int(members), int(epochs)
        self.history: list[dict] = []     # every result told: arch, reward, accuracy, latency_ms
        self.queue: list[tuple] = []      # the current stage's architectures not yet asked
        self.stage = 0                    # blocks of the current stage's cells
        self.stages: list[dict] = []      # per stage: blocks, candidates, predicted accuracy of the chosen
        self.latency = None
        self.reward = None

    def bind(self, latency=None, reward=None, estimator=None) -> None:
        """The search's latency predictor (predict_batch) and reward (batch), used to rank children."""
        self.latency, self.reward = latency, reward

    # -- ask / tell ---------------------------------------------------------------------------------------
    def ask(self):
        if not self.queue:
            self._next_stage()
        return tuple(self.queue.pop(0))

    def tell(self, arch, reward: float, accuracy: float | None = None, latency_ms: float | None = None) -> None:
        super().tell(arch, reward)
        self.history.append({"arch": [int(a) for a in arch], "reward": float(reward),
                             "accuracy": None if accuracy is None else float(accuracy),
                             "latency_ms": None if latency_ms is None else float(latency_ms)})

    # -- stages -------------------------------------------------------------------------------------------
    def _targets(self) -> tuple[list, list, bool]:
        """(archs, targets, targets are accuracies?) from the history."""
        archs = [h["arch"] for h in self.history]
        if self.history and all(h["accuracy"] is not None for h in self.history):
            return archs, [h["accuracy"] for h in self.history], True
        return archs, [h["reward"] for h in self.history], False

    def _parents(self, blocks: int) -> list[tuple]:
        best: dict[tuple, float] = {}
        for h in self.history:
            a = tuple(h["arch"])
            if self.space.blocks(a) == blocks:
                best[a] = max(best.get(a, -np.inf), h["reward"])
        return [a for a, _ in sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[: self.beam]]

    def _neighbours(self, arch) -> np.ndarray:
        a = np.asarray(self.space.validate(arch), dtype=np.int64)
        out = []
        active = np.flatnonzero(self.space.active_mask([a])[0])
        for i in active[1:]:  # not the `blocks` decision: stay at full cells
            for v in range(len(self.space.decisions()[i].choices)):
                if v != a[i]:
                    b = a.copy()
                    b[i] = v
                    out.append(self.space.canonical(b))
        return np.asarray(out, dtype=np.int64).reshape(-1, len(a))

    def _next_stage(self) -> None:
        self._close_stage()
        B = self.space.max_blocks
        if self.stage == 0:
            cands, blocks = self.space.expand(None, limit=self.max_candidates, rng=self.rng), 1
        elif self.stage < B:
            parents = self._parents(self.stage) or [tuple(self.space.validate(self.space.sample(self.rng)))]
            per = max(1, self.max_candidates // len(parents))  # a parent's children, sampled when too many
            cands = np.concatenate([self.space.expand(p, limit=per, rng=self.rng) for p in parents])
            blocks = self.stage + 1
        else:
            parents = self._parents(B)
            cands = (np.concatenate([self._neighbours(p) for p in parents]) if parents
                     else np.zeros((0, len(self.space.decisions())), dtype=np.int64))
            blocks = B
        seen = {tuple(h["arch"]) for h in self.history}
        cands = np.unique(cands, axis=0) if len(cands) else cands
        cands = np.asarray([c for c in cands if tuple(int(v) for v in c) not in seen], dtype=np.int64)
        if len(cands) == 0:  # everything near the beam was evaluated: explore at random
            cands = np.asarray([self.space.sample(self.rng) for _ in range(self.beam * 4)], dtype=np.int64)
        if len(cands) > self.max_candidates:
            cands = cands[np.sort(self.rng.choice(len(cands), self.max_candidates, replace=False))]
        predicted = None
        if len(self.history) >= 2:
            archs, targets, is_acc = self._targets()
            pred = AccuracyPredictor(self.space, self.members, epochs=self.epochs, seed=self.seed + len(self.history))
            pred.fit(archs, targets)
            predicted = pred.predict(cands)
            if is_acc and self.latency is not None and self.reward is not None:
                score = self.reward.batch(predicted, self.latency.predict_batch(cands))
            else:
                score = predicted
            order = np.lexsort((np.arange(len(cands)), -score))[: self.beam]
        else:  # nothing learned yet (stage 1): a random subset, as PNAS would train all of them
            order = np.sort(self.rng.choice(len(cands), min(self.beam, len(cands)), replace=False))
        self.queue = [tuple(int(v) for v in cands[i]) for i in order]
        self.stage = blocks
        self.stages.append({"blocks": blocks, "candidates": int(len(cands)), "start": len(self.history),
                            "chosen": [list(q) for q in self.queue],
                            "predicted": None if predicted is None else [float(predicted[i]) for i in order]})

    def _close_stage(self) -> None:
        """Score the predictor on the stage just finished: Spearman of predicted vs observed."""
        if self.stages and "spearman" not in self.stages[-1]:
            self.stages[-1]["spearman"] = self._stage_spearman(self.stages[-1])

    def _stage_spearman(self, st: dict) -> float | None:
        if st["predicted"] is None:
            return None
        got = {tuple(h["arch"]): (h["accuracy"] if h["accuracy"] is not None else h["reward"])
               for h in self.history[st["start"]:]}
        pairs = [(p, got[tuple(a)]) for a, p in zip(st["chosen"], st["predicted"]) if tuple(a) in got]
        return _spearman([p for p, _ in pairs], [o for _, o in pairs]) if pairs else None

    # -- state --------------------------------------------------------------------------------------------
    def state_dict(self):
        d = super().state_dict()
        d.update(history=self.history, queue=[list(q) for q in self.queue], stage=self.stage,
                 stages=self.stages)
        return d

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.history = [dict(h) for h in state["history"]]
        self.queue = [tuple(q) for q in state["queue"]]
        self.stage = int(state["stage"])
        self.stages = [dict(s) for s in state["stages"]]

    def info(self):
        stages = [{"blocks": s["blocks"], "candidates": s["candidates"],
                   "spearman": s["spearman"] if "spearman" in s else self._stage_spearman(s)} for s in self.stages]
        return {**super().info(), "stage_blocks": self.stage, "stages": stages}
