"""Kernel models for LiteRT: every target kind written as a .tflite flatbuffer that the real interpreter (XNNPACK)
runs, read back by the network reader as copies of one kernel of that kind with the spec's configuration."""
import numpy as np
import pytest

from hwnas.latency import tflite_kernels
from hwnas.latency.devices.litert import open_interpreter
from hwnas.latency.kernels import kernels_of
from hwnas.latency.tflite_graph import read_nodes

KINDS = sorted(tflite_kernels.SHARES)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_runs_on_litert_and_reads_back_as_copies_of_one_kernel_of_its_kind(kind, tmp_path):
    rng = np.random.default_rng([7, KINDS.index(kind)])
    spec = tflite_kernels.sample_spec(kind, rng)
    path = tflite_kernels.write_model(spec, tmp_path / "k.tflite")
    kernels, unsupported = kernels_of(read_nodes(path))
    assert not unsupported and len(kernels) == tflite_kernels.copies(spec) >= 1
    assert {k.kind for k in kernels} == {kind} and len({k.key for k in kernels}) == 1
    config = dict(kernels[0].config)
    if "hw" in spec and kind != "transpose" and kind != "reshape":
        assert config.get("hw") == (spec["hw"], spec["hw"]) or config.get("elements")
    if kind in ("conv", "dwconv", "gconv"):
        assert (config["cin"], config["cout"], config["k"], config["s"]) == \
            (spec["cin"], spec["cout"], tuple(spec["k"]), (spec["s"], spec["s"]))
        assert config.get("g", spec["cin"] if kind == "dwconv" else 1) == spec.get("g", config.get("g", 1))
    it = open_interpreter(path, threads=1)
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(np.float32))
    it.invoke()
    outs = [it.get_tensor(d["index"]) for d in it.get_output_details()]
    assert len(outs) == len(kernels) and all(np.isfinite(o).all() for o in outs)


def test_copies_make_about_a_network_s_duration_and_the_same_spec_the_same_file(tmp_path):
    small = {"kind": "gap", "hw": 7, "c": 64}
    big = {"kind": "conv", "hw": 56, "cin": 256, "cout": 256, "k": [3, 3], "s": 1, "act": "relu", "add": 0}
    assert tflite_kernels.copies(small) == tflite_kernels.MOST_COPIES and tflite_kernels.copies(big) == 1
    a = tflite_kernels.write_model(big, tmp_path / "a.tflite").read_bytes()
    assert a == tflite_kernels.write_model(big, tmp_path / "b.tflite").read_bytes()  # weights seeded by the spec


def test_activations_tflite_cannot_fuse_are_not_asked_of_a_conv():
    rng = np.random.default_rng(0)
    acts = {tflite_kernels.sample_spec("conv", rng)["act"] for _ in range(200)}
    assert acts <= set(tflite_kernels.FUSABLE) and len(acts) > 1


def test_copies_read_the_same_inputs_as_a_network_s_kernel_reads_what_was_just_written(tmp_path):
    from hwnas.latency.devices.litert import open_interpreter as load
    spec = tflite_kernels.sample_spec("add", np.random.default_rng(3))
    assert spec["inputs"] == "shared"
    n = tflite_kernels.copies(spec)
    shared = load(tflite_kernels.write_model(spec, tmp_path / "s.tflite"), threads=1)
    assert n > 1 and len(shared.get_input_details()) == 2 and len(shared.get_output_details()) == n
    older = {k: v for k, v in spec.items() if k != "inputs"}  # a table's stored plan from before: its own inputs
    separate = load(tflite_kernels.write_model(older, tmp_path / "o.tflite"), threads=1)
    assert len(separate.get_input_details()) == 2 * n
