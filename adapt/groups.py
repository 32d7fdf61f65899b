"""Prunable channel groups of a network, from Torch-Pruning's dependency graph.

A group is everything that must lose the same channels together: a conv's filters, the BN after it,
the next layers' input channels, and — through residual additions, depthwise convs, concatenations and
SE blocks — every other layer coupled to them. Torch-Pruning traces those couplings; this module only
names the groups (by their root conv), orders their channels with an importance criterion
(hwnas.adapt.importance: L2 by default) and reports which convs change shape.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch_pruning as tp

from hwnas.adapt.importance import DEFAULT, get_importance
from hwnas.errors import HwnasError


@dataclass(frozen=True)
class ConvChange:
    """One Conv2d whose shape a pruning step changes: (cin, cout) before and after."""
    name: str
    cin: int
    cout: int
    new_cin: int
    new_cout: int


def _example(input_shape) -> torch.Tensor:
    return torch.zeros(*input_shape)


def build_graph(model: nn.Module, input_shape) -> tp.DependencyGraph:
    was_training = model.training
    model.eval()
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=_example(input_shape))
    except Exception as e:  # tracing failures are user-facing: the model cannot be adapted
        raise HwnasError(f"cannot trace {type(model).__name__} for pruning: {e}") from None
    finally:
        model.train(was_training)


def _classifier_layers(model: nn.Module) -> list[nn.Module]:
    """The output layer(s): the last Linear, or the last Conv2d if the network has no Linear."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:
        return [linears[-1]]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1:]


def prunable_groups(model: nn.Module, graph: tp.DependencyGraph) -> dict[str, int]:
    """{root conv name: its current output channel count} for every group that may be pruned."""
    names = {m: n for n, m in model.named_modules()}
    out = {}
    for group in graph.get_all_groups(ignored_layers=_classifier_layers(model), root_module_types=[nn.Conv2d]):
        root = group[0].dep.target.module
        out[names[root]] = root.out_channels
    return out


def _module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise HwnasError(f"no layer {name!r} in {type(model).__name__}") from None


def channel_order(graph: tp.DependencyGraph, conv: nn.Conv2d, criterion: str = DEFAULT) -> list[int]:
    """Channel indices of `conv`'s group, weakest first by `criterion` (a name of hwnas.adapt.importance)."""
    return get_importance(criterion).order(graph, conv)


def conv_changes(model: nn.Module, graph: tp.DependencyGraph, root: str, n_remove: int) -> list[ConvChange]:
    """The convs whose (cin, cout) change if `n_remove` channels of group `root` are pruned."""
    conv = _module(model, root)
    names = {m: n for n, m in model.named_modules()}
    group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, list(range(n_remove)))
    lost_in: dict[nn.Module, set] = {}
    lost_out: dict[nn.Module, set] = {}
    for dep, idxs in group:
        m = dep.target.module
        if not isinstance(m, nn.Conv2d):
            continue
        side = lost_out if graph.is_out_channel_pruning_fn(dep.handler) else lost_in
        side.setdefault(m, set()).update(int(i) for i in idxs)
    changes = []
    for m in set(lost_in) | set(lost_out):
        n_out = len(lost_out.get(m, ()))
        n_in = len(lost_in.get(m, ()))
        if m.groups > 1 and m.groups == m.in_channels == m.out_channels:  # depthwise: in and out move together
            n_in = n_out = max(n_in, n_out)
        changes.append(ConvChange(names[m], m.in_channels, m.out_channels, m.in_channels - n_in,
                                  m.out_channels - n_out))
    return sorted(changes, key=lambda c: c.name)


def prune_group(model: nn.Module, graph: tp.DependencyGraph, root: str, n_remove: int,
                criterion: str = DEFAULT) -> None:
    """Remove the `n_remove` weakest channels (by `criterion`) of group `root`, in place, keeping every coupling."""
    importance = get_importance(criterion)
    conv = _module(model, root)
    if not 0 <= n_remove < conv.out_channels:
        raise HwnasError(f"cannot remove {n_remove} of {conv.out_channels} channels from {root}")
    if n_remove == 0:
        return
    idxs = importance.order(graph, conv)[:n_remove]
    group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs)
    if not graph.check_pruning_group(group):
        raise HwnasError(f"pruning {n_remove} channels from {root} would empty a layer")
    group.prune()


def candidate_counts(channels: int, unit: int) -> list[int]:
    """Channel counts below `channels`, largest first, on multiples of `unit`, down to `unit` (a layer
    at or below the unit is not pruned further — the same floor the minimum-width network uses)."""
    if channels <= unit:
        return []
    first = ((channels - 1) // unit) * unit
    return list(range(first, unit - 1, -unit))


def scale_width(model: nn.Module, input_shape, mult: float, unit: int = 8, criterion: str = DEFAULT) -> nn.Module:
    """Uniform width scaling of every prunable group (in place): channels → round(c·mult) to the unit,
    at least `unit` (or the current count if smaller), the weakest by `criterion` going. `mult` near 0 gives
    the minimum-width network."""
    if not 0 < mult <= 1:
        raise HwnasError(f"width multiplier must be in (0, 1], got {mult}")
    get_importance(criterion)  # an unknown name fails before the model is traced
    graph = build_graph(model, input_shape)
    for root, channels in prunable_groups(model, graph).items():
        keep = max(unit, int(round(channels * mult / unit)) * unit) if channels > unit else channels
        keep = min(keep, channels)
        if keep < channels:
            prune_group(model, graph, root, channels - keep, criterion)
    return model
