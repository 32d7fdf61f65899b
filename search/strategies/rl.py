"""Policy-gradient strategies with the LSTM controller.

- `rl`: REINFORCE (Williams 1992, as in Zoph & Le's NAS-RL) with an exponential moving-average baseline.
  Every `batch` results, loss = -mean((R - b) * log p(arch)) - entropy_weight * H.
- `ppo`: the same controller trained with Proximal Policy Optimization (Schulman et al. 2017), the
  optimizer MnasNet used: every `batch` results, `epochs` passes of the clipped surrogate objective
  with the moving-average baseline as advantage reference.

The log-probabilities of a batch are computed at update time from the controller as it was when the
batch was sampled (parameters change only at updates), so nothing besides the (arch, reward) pairs of
the current batch has to be stored - which keeps a resumed run identical to an uninterrupted one.
"""
from __future__ import annotations

import torch

from hwnas.errors import HwnasError
from hwnas.search.strategies.base import Strategy, register_strategy
from hwnas.search.strategies.controller import Controller


class _PolicyGradient(Strategy):
    def __init__(self, space, seed: int = 0, batch: int = 8, lr: float = 0.01, hidden: int = 64,
                 baseline_decay: float = 0.9, entropy_weight: float = 1e-3, tanh_constant: float = 2.5):
        super().__init__(space, seed)
        if batch < 1 or not 0 <= baseline_decay < 1 or lr <= 0:
            raise HwnasError(f"{self.name}: batch >= 1, 0 <= baseline_decay < 1 and lr > 0 are needed")
        self.batch = int(batch)
        self.baseline_decay = float(baseline_decay)
        self.entropy_weight = float(entropy_weight)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.controller = Controller([len(d.choices) for d in space.decisions()], hidden=hidden,
                                         tanh_constant=tanh_constant)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.baseline: float | None = None
        self.pending: list[tuple[tuple[int, ...], float]] = []
        self.updates = 0

    def ask(self):
        return self.space.validate(self.controller.sample(self.generator))

    def _tell(self, arch, reward):
        self.pending.append((arch, reward))
        if len(self.pending) >= self.batch:
            batch, self.pending = self.pending, []
            archs = torch.tensor([a for a, _ in batch], dtype=torch.long)
            rewards = torch.tensor([r for _, r in batch], dtype=torch.float32)
            baseline = self.baseline if self.baseline is not None else float(rewards.mean())
            self._update(archs, rewards, baseline)
            for r in rewards.tolist():  # the baseline tracks results in the order they came
                self.baseline = r if self.baseline is None else (
                    self.baseline_decay * self.baseline + (1 - self.baseline_decay) * r)
            self.updates += 1

    def _update(self, archs, rewards, baseline):  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self):
        d = super().state_dict()
        d.update(controller=self.controller.state_dict(), optimizer=self.optimizer.state_dict(),
                 generator=self.generator.get_state(), baseline=self.baseline,
                 pending=[[list(a), r] for a, r in self.pending], updates=self.updates)
        return d

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.baseline = state["baseline"]
        self.pending = [(tuple(a), float(r)) for a, r in state["pending"]]
        self.updates = int(state["updates"])

    def info(self):
        return {**super().info(), "updates": self.updates, "baseline": self.baseline,
                "controller_best": list(self.controller.best())}


@register_strategy("rl")
class Reinforce(_PolicyGradient):
    def _update(self, archs, rewards, baseline):
        logp, ent = self.controller.log_prob(archs)
        adv = rewards - baseline
        loss = -(adv * logp).mean() - self.entropy_weight * ent.mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


@register_strategy("ppo")
class PPO(_PolicyGradient):
    def __init__(self, space, seed: int = 0, batch: int = 16, lr: float = 0.01, hidden: int = 64,
                 baseline_decay: float = 0.9, entropy_weight: float = 1e-3, tanh_constant: float = 2.5,
                 clip: float = 0.2, epochs: int = 4):
        super().__init__(space, seed, batch=batch, lr=lr, hidden=hidden, baseline_decay=baseline_decay,
                         entropy_weight=entropy_weight, tanh_constant=tanh_constant)
        if not 0 < clip < 1 or epochs < 1:
            raise HwnasError("ppo: 0 < clip < 1 and epochs >= 1 are needed")
        self.clip = float(clip)
        self.epochs = int(epochs)

    def _update(self, archs, rewards, baseline):
        with torch.no_grad():
            old_logp, _ = self.controller.log_prob(archs)
        adv = rewards - baseline
        for _ in range(self.epochs):
            logp, ent = self.controller.log_prob(archs)
            ratio = torch.exp(logp - old_logp)
            surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - self.clip, 1 + self.clip) * adv)
            loss = -surrogate.mean() - self.entropy_weight * ent.mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
