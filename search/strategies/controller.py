"""The RNN controller of NAS-RL / MnasNet: an LSTM that emits one categorical per decision of the
factorized space, in order, each step fed the embedding of the previous step's choice."""
from __future__ import annotations

import torch
from torch import nn


class Controller(nn.Module):
    def __init__(self, num_choices: list[int], hidden: int = 64, tanh_constant: float = 2.5,
                 temperature: float = 1.0):
        super().__init__()
        self.num_choices = list(num_choices)
        self.hidden = hidden
        self.tanh_constant = tanh_constant
        self.temperature = temperature
        self.start = nn.Parameter(torch.zeros(1, hidden))
        # one embedding table / head per decision (decisions differ in meaning and arity)
        self.embed = nn.ModuleList(nn.Embedding(n, hidden) for n in self.num_choices)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.num_choices)
        self.cell = nn.LSTMCell(hidden, hidden)
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)

    def _logits(self, h: torch.Tensor, i: int) -> torch.Tensor:
        logits = self.heads[i](h) / self.temperature
        if self.tanh_constant:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    @torch.no_grad()
    def _decode(self, pick) -> tuple[int, ...]:
        """One architecture, decision by decision: pick(logits [1, n]) chooses, its embedding feeds the next."""
        x = self.start
        state = None
        arch = []
        for i in range(len(self.num_choices)):
            h, c = self.cell(x, state)
            state = (h, c)
            choice = pick(self._logits(h, i))
            arch.append(choice)
            x = self.embed[i](torch.tensor([choice]))
        return tuple(arch)

    def sample(self, generator: torch.Generator) -> tuple[int, ...]:
        return self._decode(lambda logits: int(torch.multinomial(torch.softmax(logits, dim=-1)[0], 1,
                                                                 generator=generator)))

    def log_prob(self, archs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """archs: int tensor [B, D]. Returns (sum of log-probabilities [B], sum of entropies [B])."""
        b = archs.shape[0]
        x = self.start.expand(b, -1)
        state = None
        logp = torch.zeros(b)
        ent = torch.zeros(b)
        for i in range(len(self.num_choices)):
            h, c = self.cell(x, state)
            state = (h, c)
            lsm = torch.log_softmax(self._logits(h, i), dim=-1)
            logp = logp + lsm.gather(1, archs[:, i:i + 1]).squeeze(1)
            ent = ent - (lsm.exp() * lsm).sum(-1)
            x = self.embed[i](archs[:, i])
        return logp, ent

    def best(self) -> tuple[int, ...]:
        """The most likely architecture, choosing greedily step by step."""
        return self._decode(lambda logits: int(logits.argmax()))
