"""Prunable groups from Torch-Pruning on a network with a residual add, a depthwise conv, an SE block and a
concatenation: the couplings are respected, the weakest (L2) filters go, and the network still runs."""
import copy

import pytest
import torch

from hwnas.adapt.groups import (build_graph, candidate_counts, channel_order, conv_changes, prunable_groups,
                                prune_group, scale_width)
from hwnas.errors import HwnasError
from tinynet import TinyNet

SHAPE = (1, 3, 32, 32)


def test_groups_named_by_root_conv_and_classifier_excluded():
    m = TinyNet()
    groups = prunable_groups(m, build_graph(m, SHAPE))
    assert groups["head.0"] == 128 and groups["se.fc1"] == 16
    assert "fc" not in groups
    # expand/dw/SE-gate/project-input are one group; stem and project share the residual: one root each
    assert not ({"expand.0", "dw.0", "se.fc2"} <= set(groups))
    assert not ({"stem.0", "project.0"} <= set(groups))


def test_inverted_residual_group_changes_depthwise_and_se_together():
    m = TinyNet()
    g = build_graph(m, SHAPE)
    root = next(r for r in prunable_groups(m, g) if r in ("expand.0", "dw.0", "se.fc2"))
    ch = {c.name: c for c in conv_changes(m, g, root, 16)}
    assert set(ch) == {"expand.0", "dw.0", "se.fc1", "se.fc2", "project.0"}
    assert (ch["dw.0"].new_cin, ch["dw.0"].new_cout) == (48, 48)
    assert (ch["expand.0"].cout, ch["expand.0"].new_cout) == (64, 48)
    assert (ch["se.fc1"].new_cin, ch["se.fc2"].new_cout) == (48, 48)
    assert (ch["project.0"].new_cin, ch["project.0"].new_cout) == (48, 32)


def test_residual_group_spans_the_addition_and_the_concat_consumers():
    m = TinyNet()
    g = build_graph(m, SHAPE)
    root = next(r for r in prunable_groups(m, g) if r in ("stem.0", "project.0"))
    names = {c.name for c in conv_changes(m, g, root, 8)}
    assert {"stem.0", "project.0", "expand.0", "branch_a.0", "branch_b.0"} <= names
    # a concat branch: head loses exactly those input channels
    ch = {c.name: c for c in conv_changes(m, g, "branch_b.0", 8)}
    assert (ch["head.0"].cin, ch["head.0"].new_cin) == (64, 56)


def test_prune_removes_weakest_l2_filters_and_network_still_runs():
    torch.manual_seed(0)
    m = TinyNet().eval()
    w = m.head[0].weight.data
    weak = [3, 17, 40, 99, 100, 101, 120, 127]
    w[weak] *= 1e-3
    g = build_graph(m, SHAPE)
    assert sorted(channel_order(g, m.head[0])[:8]) == weak
    keep = [i for i in range(128) if i not in weak]
    before = w[keep].clone()
    prune_group(m, g, "head.0", 8)
    assert m.head[0].out_channels == 120 and m.head[1].num_features == 120 and m.fc.in_features == 120
    assert torch.equal(m.head[0].weight.data, before)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_every_group_pruned_keeps_the_network_consistent():
    m = TinyNet().eval()
    g = build_graph(m, SHAPE)
    for root, ch in prunable_groups(m, g).items():
        prune_group(m, g, root, ch - candidate_counts(ch, 8)[0])
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert m.dw[0].groups == m.dw[0].in_channels == m.dw[0].out_channels


def test_scale_width_matches_multiplier_and_minimum():
    m = scale_width(TinyNet(), SHAPE, 0.5).eval()
    assert m.head[0].out_channels == 64 and m.fc.in_features == 64
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    narrow = scale_width(TinyNet(), SHAPE, 1e-9).eval()
    assert all(c == 8 for c in prunable_groups(narrow, build_graph(narrow, SHAPE)).values())
    with pytest.raises(HwnasError):
        scale_width(TinyNet(), SHAPE, 1.5)


def test_candidate_counts():
    assert candidate_counts(64, 8) == [56, 48, 40, 32, 24, 16, 8]
    assert candidate_counts(20, 8) == [16, 8]
    assert candidate_counts(8, 8) == [] and candidate_counts(5, 8) == []


def test_bad_prune_is_a_clear_error():
    m = TinyNet()
    g = build_graph(m, SHAPE)
    with pytest.raises(HwnasError, match="cannot remove"):
        prune_group(m, g, "head.0", 128)
    with pytest.raises(HwnasError, match="no layer"):
        prune_group(copy.deepcopy(m), g, "nope", 8)
