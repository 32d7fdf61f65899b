"""Channel importance criteria for NetAdapt: which channels of a group go first.

    crit = get_importance("bn-scale")
    crit.order(graph, conv)          # channel indices of conv's group, weakest first

Every criterion scores the channels of the whole group (the root conv and every layer coupled to it, as
Torch-Pruning's dependency graph traces them) and is deterministic: the same weights give the same order.

Registered:
  l2        group L2 magnitude (Torch-Pruning's GroupMagnitudeImportance, p=2): the default
  l1        group L1 magnitude (the same, p=1)
  bn-scale  |gamma| of the BatchNorm(s) of the group, summed (Network Slimming); a group without one is an error
  random    a fixed random order, seeded by the group root's name (the baseline a criterion must beat)
"""
from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch.nn as nn
import torch_pruning as tp

from hwnas.errors import HwnasError
from hwnas.registry import Registry

IMPORTANCES = Registry("importance criterion", set_name=True)
register_importance = IMPORTANCES.register
importance_names = IMPORTANCES.names
DEFAULT = "l2"


def get_importance(name: str = DEFAULT) -> "Importance":
    return IMPORTANCES.get(name)()


class Importance(ABC):
    """Orders the output channels of a group's root conv, weakest first."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def order(self, graph: tp.DependencyGraph, conv: nn.Conv2d) -> list[int]:
        """A permutation of range(conv.out_channels): the channels to remove first come first."""

    def serves(self, graph: tp.DependencyGraph, conv: nn.Conv2d) -> bool:
        """Whether `order` can rank this group (NetAdapt leaves the groups a criterion cannot rank alone)."""
        return True


def full_group(graph: tp.DependencyGraph, conv: nn.Conv2d):
    """Every layer coupled to `conv`'s output channels, with all of its channels (the group to score)."""
    return graph.get_pruning_group(conv, tp.prune_conv_out_channels, list(range(conv.out_channels)))


def weakest_first(scores: torch.Tensor) -> list[int]:
    """Indices by ascending score; ties keep channel order."""
    return torch.argsort(scores.detach(), stable=True).tolist()


def root_name(graph: tp.DependencyGraph, conv: nn.Conv2d) -> str:
    return next(n for n, m in graph.model.named_modules() if m is conv)


class _Magnitude(Importance):
    p: ClassVar[int]

    def order(self, graph, conv):
        scores = tp.importance.GroupMagnitudeImportance(p=self.p)(full_group(graph, conv))
        if scores is None:  # no weights in the group (should not happen for a conv root)
            scores = conv.weight.detach().flatten(1).norm(p=self.p, dim=1)
        return weakest_first(scores)


@register_importance("l2")
class L2(_Magnitude):
    description = "group L2 magnitude: squared weights of every coupled layer (the default)"
    p = 2


@register_importance("l1")
class L1(_Magnitude):
    description = "group L1 magnitude: absolute weights of every coupled layer"
    p = 1


@register_importance("bn-scale")
class BNScale(Importance):
    description = "|gamma| of the group's BatchNorm layers, summed (Network Slimming)"

    def serves(self, graph, conv):
        return any(isinstance(item.dep.target.module, nn.modules.batchnorm._BatchNorm)
                   and item.dep.target.module.weight is not None for item in full_group(graph, conv))

    def order(self, graph, conv):
        scores = torch.zeros(conv.out_channels, dtype=torch.float64)
        seen: set[nn.Module] = set()
        for item in full_group(graph, conv):
            bn = item.dep.target.module
            if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn in seen or bn.weight is None:
                continue
            seen.add(bn)
            gamma = bn.weight.detach().abs().to(torch.float64)
            for idx, root_idx in zip(item.idxs, item.root_idxs):
                if root_idx is not None:
                    scores[root_idx] += gamma[idx]
        if not seen:
            raise HwnasError(f"importance bn-scale: group {root_name(graph, conv)} has no BatchNorm with a scale; "
                             f"choose another criterion ({', '.join(n for n in importance_names() if n != self.name)})")
        return weakest_first(scores)


@register_importance("random")
class Random(Importance):
    description = "a fixed random order per group, seeded by the root conv's name (a baseline)"

    def order(self, graph, conv):
        order = list(range(conv.out_channels))
        random.Random(f"hwnas-importance-random:{root_name(graph, conv)}").shuffle(order)
        return order
