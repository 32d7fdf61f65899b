"""The small models a kernel table times: each target kind makes onnxruntime run a kernel of that kind (read back
through the decomposition, not assumed), every model passes onnx.checker, and sampling is deterministic, within
its size limits, and `near` stays close to the configuration it starts from."""
import numpy as np
import onnx
import pytest

from hwnas.latency.kernel_models import SHARES, _fits, branch_of, build_bundle, build_model, bundle_key, bundles, \
    est_ms, near, overhead_spec, sample_spec, spec_key
from hwnas.latency.kernels import decompose

SPECS = {
    "conv": {"kind": "conv", "hw": 12, "cin": 16, "cout": 24, "k": [3, 3], "s": 1, "act": "relu", "add": 1, "stem": 1},
    "dwconv": {"kind": "dwconv", "hw": 12, "cin": 32, "cout": 32, "g": 32, "k": [5, 5], "s": 2, "act": "relu6",
               "add": 0, "stem": 1},
    "gconv": {"kind": "gconv", "hw": 12, "cin": 24, "cout": 48, "g": 3, "k": [1, 1], "s": 1, "act": "none", "add": 0,
              "stem": 1},
    "fc": {"kind": "fc", "cin": 64, "cout": 10, "act": "none"},
    "maxpool": {"kind": "maxpool", "hw": 12, "c": 16, "k": [3, 3], "s": 2, "stem": 1},
    "avgpool": {"kind": "avgpool", "hw": 12, "c": 16, "k": [2, 2], "s": 2, "stem": 0},
    "gap": {"kind": "gap", "hw": 7, "c": 32, "stem": 1},
    "add": {"kind": "add", "hw": 10, "c": 16, "n": 2, "bcast": 0, "stem": 0},
    "mul": {"kind": "mul", "hw": 10, "c": 32, "r": 4, "gate": "hardsigmoid", "stem": 1},
    "act": {"kind": "act", "hw": 10, "c": 16, "fn": "swish", "stem": 1},
    "concat": {"kind": "concat", "hw": 10, "c": 8, "n": 3, "stem": 1},
    "shuffle": {"kind": "shuffle", "hw": 10, "c": 24, "g": 3, "stem": 1},
    "split": {"kind": "split", "hw": 10, "c": 32, "stem": 1},
    "pad": {"kind": "pad", "hw": 10, "c": 16, "p": 1, "stem": 0},
    "slice": {"kind": "slice", "hw": 10, "c": 16, "stem": 0},
    "resize": {"kind": "resize", "hw": 6, "c": 16, "scale": 2, "stem": 1},
    "bn": {"kind": "bn", "hw": 10, "c": 16, "stem": 0},
}
# the kernel kind a target shows up as, where it is not its own name
SHOWS_AS = {"shuffle": "transpose"}


def test_every_target_kind_has_a_model_here():
    assert set(SPECS) == set(SHARES)


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_each_target_makes_the_runtime_run_a_kernel_of_its_kind(kind, tmp_path):
    spec = SPECS[kind]
    model = build_model(spec)
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / f"{spec_key(spec)}.onnx"
    onnx.save(model, path)
    dec = decompose("cpu", str(path))
    assert not dec.unsupported
    assert SHOWS_AS.get(kind, kind) in dec.by_kind(), [k.key for k in dec.kernels]
    if kind == "conv":  # the residual add and the relu run inside the conv, as in a resnet
        target = [k for k in dec.kernels if k.kind == "conv" and k.features()["cin"] == 16]
        assert [(k.features()["act"], k.features()["add"]) for k in target] == [("relu", 1)]


def test_overhead_chains_are_n_tiny_nodes(tmp_path):
    path = tmp_path / "chain.onnx"
    onnx.save(build_model(overhead_spec(16)), path)
    dec = decompose("cpu", str(path))
    assert len(dec.kernels) == 16 and {k.kind for k in dec.kernels} == {"act"}


def test_sampling_is_deterministic_and_within_its_limits():
    for kind in SHARES:
        a = [sample_spec(kind, np.random.default_rng(3)) for _ in range(20)]
        b = [sample_spec(kind, np.random.default_rng(3)) for _ in range(20)]
        assert [spec_key(s) for s in a] == [spec_key(s) for s in b]
        assert all(s["kind"] == kind and _fits(s) for s in a)


def test_near_moves_a_configuration_a_little_and_keeps_its_kind():
    rng = np.random.default_rng(0)
    for spec in SPECS.values():
        moved = [near(spec, rng) for _ in range(10)]
        assert all(m["kind"] == spec["kind"] and m != spec and _fits(m) for m in moved)
        for f in ("hw", "cin", "cout", "c"):
            if f in spec and spec[f] > 3:
                assert all(0.5 * spec[f] <= m[f] <= 1.6 * spec[f] + 8 for m in moved), f
        if spec["kind"] == "dwconv":
            assert all(m["cin"] == m["cout"] == m["g"] for m in moved)
        if spec["kind"] == "gconv":
            assert all(m["cin"] % m["g"] == 0 and m["cout"] % m["g"] == 0 for m in moved)


def test_a_bundle_runs_each_spec_in_a_branch_the_runtime_s_node_names_lead_back_to(tmp_path):
    specs = [SPECS["conv"], SPECS["dwconv"], SPECS["gap"], SPECS["fc"]]
    model = build_bundle(specs)
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / f"{bundle_key(specs)}.onnx"
    onnx.save(model, path)
    dec = decompose("cpu", str(path))
    branches = {}
    for k in dec.kernels:
        b = branch_of(k.name)
        if b is not None:
            branches.setdefault(b, set()).add(k.kind)
    assert branches[0] >= {"conv"} and branches[1] >= {"dwconv"} and branches[2] >= {"gap"} and branches[3] == {"fc"}
    assert bundle_key(specs) != bundle_key(specs[::-1]) and bundle_key([specs[0]]) == spec_key(specs[0])


def test_bundles_keep_the_plan_order_about_a_network_s_duration_and_chains_alone():
    rng = np.random.default_rng(1)
    specs = [overhead_spec(4)] + [sample_spec(k, rng) for k in SHARES for _ in range(4)] + [overhead_spec(8)]
    groups = bundles(specs, target_ms=8.0, most=16)
    assert [s for b in groups for s in b] == specs
    assert groups[0] == [specs[0]] and groups[-1] == [specs[-1]]
    for b in groups:
        assert len(b) <= 16
        assert len(b) == 1 or sum(est_ms(s) for s in b) <= 8.0
        assert len(b) == 1 or all(s["kind"] != "overhead" for s in b)
