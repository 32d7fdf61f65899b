"""Zero-cost proxies: a score of the untrained network, from one batch, in well under a second.

- synflow (Tanaka et al. 2020, used as a NAS proxy by Abdelfattah et al. 2021): with every parameter
  replaced by its absolute value and an all-ones input, R = sum of the output; the score is
  sum(|theta * dR/dtheta|). Data-free. Reported as log(score).
- naswot (Mellor et al. 2021, "Neural Architecture Search without Training"): binary ReLU activation
  codes c_i of a batch of N images; K[i, j] = number of units where images i and j agree; the score
  is log|det K|. Networks that separate the inputs well score high.

A proxy score is not an accuracy. To use it in the MnasNet reward it is mapped to (0, 1) with a logistic
curve whose centre and scale are the median and spread of the scores of `calibration` random
architectures drawn with a fixed seed - so the mapping is fixed for a run (and across a resume).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from hwnas.search.estimators.base import Estimator, register_estimator


def synflow_score(model: nn.Module, input_shape) -> float:
    model = model.double().eval()
    with torch.no_grad():
        signs = {}
        for name, p in model.state_dict().items():
            if p.is_floating_point():
                signs[name] = torch.sign(p)
                p.abs_()
    model.zero_grad()
    out = model(torch.ones(input_shape, dtype=torch.float64))
    out.sum().backward()
    total = 0.0
    for p in model.parameters():
        if p.grad is not None:
            total += float((p * p.grad).abs().sum())
    return math.log(total) if total > 0 else -1e3


def naswot_score(model: nn.Module, x: torch.Tensor) -> float:
    n = x.shape[0]
    k = torch.zeros(n, n, dtype=torch.float64)

    def hook(_module, _inp, out):
        c = (out.detach().reshape(n, -1) > 0).double()
        k.add_(c @ c.t() + (1 - c) @ (1 - c).t())

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU))]
    try:
        with torch.no_grad():
            model.eval()
            model(x)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = torch.linalg.slogdet(k)
    return float(logdet) if float(sign) > 0 else -1e3


class _Proxy(Estimator):
    is_accuracy = False

    def __init__(self, space, data=None, seed: int = 0, batch_size: int = 32, calibration: int = 16):
        super().__init__(space, data=data, seed=seed)
        self.batch_size = int(batch_size)
        self.calibration = int(calibration)
        self._center: float | None = None
        self._scale: float | None = None
        self._batch = None

    def options(self):
        return {"batch_size": self.batch_size, "calibration": self.calibration}

    def batch(self) -> torch.Tensor:
        if self._batch is None:
            if self.data is not None:
                from hwnas.search.estimators.short_train import load_split
                split = load_split(self.space, self.data, self.seed)
                g = torch.Generator().manual_seed(self.seed)
                idx = torch.randperm(len(split.train), generator=g)[: self.batch_size]
                self._batch = torch.stack([split.train[int(i)][0] for i in idx]).float()
            else:
                g = torch.Generator().manual_seed(self.seed)
                self._batch = torch.randn(self.batch_size, 3, self.space.input_size, self.space.input_size,
                                          generator=g)
        return self._batch

    def raw_score(self, arch) -> float:
        torch.manual_seed(self.seed)
        return self._score(self.space.build(arch))

    def _score(self, model) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _calibrate(self):
        rng = np.random.default_rng(self.seed + 7919)
        scores = np.array([self.raw_score(self.space.sample(rng)) for _ in range(self.calibration)])
        self._center = float(np.median(scores))
        q75, q25 = np.percentile(scores, [75, 25])
        self._scale = float(max((q75 - q25) / 1.349, 1e-6 * max(1.0, abs(self._center)), 1e-9))

    def estimate(self, arch) -> float:
        if self._center is None:
            self._calibrate()
        z = (self.raw_score(arch) - self._center) / self._scale
        return float(1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0))))


@register_estimator("synflow")
class Synflow(_Proxy):
    def _score(self, model):
        return synflow_score(model, (1, 3, self.space.input_size, self.space.input_size))


@register_estimator("naswot")
class NASWOT(_Proxy):
    def _score(self, model):
        return naswot_score(model, self.batch())
