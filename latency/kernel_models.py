"""Small ONNX models that make a runtime run a chosen kernel: what a kernel table times.

    spec = sample_spec("conv", rng)       # {"kind": "conv", "hw": 28, "cin": 96, "cout": 160, "k": [3, 3], ...}
    model = build_model(spec)              # onnx.ModelProto: an input, a cheap 1x1 stem conv, the kernel, its output

Each spec is a target: a kind of hwnas.latency.kernels (conv, dwconv, gconv, fc, maxpool, avgpool, gap, add, mul,
act, concat, and the data-movement kinds) with a configuration drawn from the ranges real CNNs use. The model
around it puts the kernel where networks have it: behind a 1x1 stem conv, so that its input is in the layout the
runtime keeps between convs (onnxruntime's blocked NCHWc on a CPU), or straight on the input (a network's first
conv, ops the runtime runs in plain NCHW). Which kernels the runtime then really runs (fused or not, with which
reorders) is read from it, not assumed: every kernel of a timed model becomes a sample of its own kind.

Ranges (the prior): feature maps 3..512 pixels a side, half of them from the sizes networks reach by halving common
inputs; channels log-uniform from 8 up to what networks carry at that size (128 at 224, 2048 at 14 and below), most
rounded to 8; kernels 1/3/5/7 (and 1x7 / 7x1), strides 1/2, the activations the zoo's runtimes fuse. Samples
`near(spec)` perturb a configuration (for adaptive sampling where a regressor's error is high).
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

OPSET = 17
TARGET_KINDS = ("conv", "dwconv", "gconv", "fc", "maxpool", "avgpool", "gap", "add", "mul", "act", "concat",
                "shuffle", "split", "pad", "slice", "resize", "bn", "overhead")
# the share of a kernel build's initial samples per target kind (conv is ~85% of the zoo's time)
SHARES = {"conv": 0.40, "dwconv": 0.14, "gconv": 0.06, "fc": 0.06, "maxpool": 0.04, "avgpool": 0.04, "gap": 0.03,
          "add": 0.03, "mul": 0.05, "act": 0.06, "concat": 0.04, "shuffle": 0.02, "split": 0.01, "pad": 0.01,
          "slice": 0.01, "resize": 0.01, "bn": 0.01}
OVERHEAD_NODES = (1, 2, 4, 8, 16, 32, 64, 128)  # chains of tiny nodes: the runtime's per-run and per-node cost
TYPICAL_HW = (7, 8, 9, 10, 12, 14, 15, 17, 18, 19, 20, 24, 28, 30, 32, 35, 36, 38, 40, 48, 56, 60, 64, 71, 72, 75,
              80, 96, 112, 120, 128, 130, 144, 147, 150, 160, 192, 224, 240, 256, 260, 288, 299, 300)
ACTS = ("relu", "none", "relu6", "hardswish", "sigmoid", "hardsigmoid", "swish")
ACT_P = (0.45, 0.3, 0.07, 0.06, 0.04, 0.03, 0.05)
MAX_MACS = 2.5e9      # the largest conv a sample may be (vgg16's largest is 1.85 G)
MAX_WEIGHTS = 3e7     # weight elements of one conv kernel (vgg16's largest 3x3 is 2.4 M)
MAX_FC_WEIGHTS = 1.1e8  # of one fc (vgg16's first is 25088 x 4096 = 103 M)


def spec_key(spec: dict) -> str:
    """A spec's identity: its kind and a digest of its configuration (the kernel table's plan and done rows)."""
    text = json.dumps(spec, sort_keys=True)
    return f"{spec['kind']}-{hashlib.sha1(text.encode()).hexdigest()[:14]}"


# -- sampling configurations -----------------------------------------------------------------------------------
def _hw(rng) -> int:
    if rng.random() < 0.5:
        return int(rng.choice(TYPICAL_HW))
    return int(round(np.exp(rng.uniform(np.log(3), np.log(512)))))


def _channels(rng, hw: int, lo: int = 8, cap: int = 2048) -> int:
    hi = max(lo + 1, min(cap, int(128 * 224 / max(hw, 1))))
    c = int(round(np.exp(rng.uniform(np.log(lo), np.log(hi)))))
    if rng.random() < 0.75:
        c = max(8, 8 * round(c / 8))
    return max(1, c)


def _kernel(rng, choices=(1, 3, 5, 7), p=(0.5, 0.35, 0.07, 0.08)) -> list[int]:
    if rng.random() < 0.04:
        k = int(rng.choice((3, 7)))
        return [1, k] if rng.random() < 0.5 else [k, 1]
    k = int(rng.choice(choices, p=p))
    return [k, k]


def _stride(rng, p2: float = 0.2) -> int:
    return 2 if rng.random() < p2 else 1


def _act(rng) -> str:
    return str(rng.choice(ACTS, p=ACT_P))


def _macs(spec: dict) -> float:
    oh = -(-spec["hw"] // spec.get("s", 1))
    k = spec.get("k", [1, 1])
    return float(oh * oh * spec["cout"] * spec["cin"] / spec.get("g", 1) * k[0] * k[1])


def sample_spec(kind: str, rng) -> dict:
    """One configuration of target `kind`, drawn from the prior (re-drawn until it is within the size limits)."""
    for _ in range(200):
        spec = _draw(kind, rng)
        if _fits(spec):
            return spec
    raise RuntimeError(f"no {kind} configuration within the limits after 200 draws")  # a bug in the prior


def _fits(spec: dict) -> bool:
    kind = spec["kind"]
    if kind in ("conv", "gconv", "dwconv"):
        k = spec["k"]
        return _macs(spec) <= MAX_MACS and spec["cout"] * spec["cin"] / spec.get("g", 1) * k[0] * k[1] <= MAX_WEIGHTS
    if kind == "fc":
        return spec["cin"] * spec["cout"] <= MAX_FC_WEIGHTS
    return spec.get("hw", 1) ** 2 * spec.get("c", 1) * spec.get("n", 1) <= 4e7


def _draw(kind: str, rng) -> dict:
    hw = _hw(rng)
    if kind == "conv":
        first = rng.random() < 0.06
        cin = int(rng.choice((1, 3))) if first else _channels(rng, hw)
        if first:
            hw = int(rng.choice((96, 128, 160, 192, 224, 240, 256, 288, 299, 300, 320, 384, 448, 512)))
        return {"kind": kind, "hw": hw, "cin": cin, "cout": _channels(rng, hw // 2 if first else hw),
                "k": [int(rng.choice((3, 5, 7, 11)))] * 2 if first else _kernel(rng),
                "s": int(rng.choice((2, 2, 4))) if first else _stride(rng),
                "act": _act(rng), "add": int(rng.random() < 0.25), "stem": int(not first)}
    if kind == "dwconv":
        c = _channels(rng, hw, lo=8, cap=2048)
        return {"kind": kind, "hw": hw, "cin": c, "cout": c, "g": c, "k": [int(rng.choice((3, 5, 7), p=(.6, .3, .1)))] * 2,
                "s": _stride(rng, 0.25), "act": _act(rng), "add": 0, "stem": int(rng.random() < 0.85)}
    if kind == "gconv":
        g = int(rng.choice((2, 3, 4, 8, 16, 32)))
        cin = max(g, g * round(_channels(rng, hw) / g))
        cout = max(g, g * round(_channels(rng, hw) / g))
        return {"kind": kind, "hw": hw, "cin": cin, "cout": cout, "g": g, "k": [int(rng.choice((1, 3)))] * 2,
                "s": _stride(rng), "act": _act(rng), "add": 0, "stem": int(rng.random() < 0.85)}
    if kind == "fc":
        cin = int(round(np.exp(rng.uniform(np.log(16), np.log(25088)))))
        cout = int(rng.choice((10, 100, 1000, 1000, 4096))) if rng.random() < 0.5 else \
            int(round(np.exp(rng.uniform(np.log(8), np.log(4096)))))
        return {"kind": kind, "cin": cin, "cout": cout, "act": "relu" if rng.random() < 0.2 else "none"}
    c = _channels(rng, hw, lo=8, cap=2048)
    stem = int(rng.random() < 0.8)
    if kind in ("maxpool", "avgpool"):
        k = int(rng.choice((2, 3, 3, 5)))
        return {"kind": kind, "hw": hw, "c": c, "k": [k, k], "s": int(rng.choice((1, 2, 2))), "stem": stem}
    if kind == "gap":
        return {"kind": kind, "hw": hw, "c": c, "stem": stem}
    if kind == "add":
        return {"kind": kind, "hw": hw, "c": c, "n": 2, "bcast": 0, "stem": int(rng.random() < 0.3)}
    if kind == "mul":  # an SE block: GAP, two 1x1 convs, a gate, the broadcast multiply
        return {"kind": kind, "hw": hw, "c": c, "r": int(rng.choice((4, 4, 16))),
                "gate": str(rng.choice(("sigmoid", "hardsigmoid"))), "stem": 1}
    if kind == "act":  # behind a conv most activations fuse into it: standalone ones run on plain tensors
        fn = str(rng.choice(("relu", "swish", "hardswish", "sigmoid", "tanh", "relu6", "pow"),
                            p=(.27, .27, .14, .1, .04, .1, .08)))
        return {"kind": kind, "hw": hw, "c": c, "fn": fn, "stem": int(fn == "swish")}
    if kind == "concat":
        n = int(rng.choice((2, 2, 3, 4)))
        return {"kind": kind, "hw": hw, "c": max(8, c // n), "n": n, "stem": stem}
    if kind == "shuffle":  # shufflenet's channel shuffle: reshape, transpose, reshape
        g = int(rng.choice((2, 3, 4, 8)))
        return {"kind": kind, "hw": hw, "c": max(g, g * round(c / g)), "g": g, "stem": stem}
    if kind == "split":
        return {"kind": kind, "hw": hw, "c": 2 * max(4, c // 2), "stem": stem}
    if kind == "slice":
        return {"kind": kind, "hw": hw, "c": 2 * max(4, c // 2), "stem": stem}
    if kind == "pad":
        return {"kind": kind, "hw": hw, "c": c, "p": int(rng.choice((1, 2, 3))), "stem": stem}
    if kind == "resize":
        return {"kind": kind, "hw": max(3, hw // 2), "c": c, "scale": 2, "stem": stem}
    if kind == "bn":
        return {"kind": kind, "hw": hw, "c": c, "stem": 0}
    raise ValueError(f"unknown target kind {kind!r}")


def near(spec: dict, rng, sampler=None) -> dict:
    """A configuration close to `spec` (sizes and channels moved by up to ~40%), for adaptive sampling; after 100
    draws out of the limits, a new one from `sampler(kind, rng)` (default sample_spec)."""
    for _ in range(100):
        s = dict(spec)
        for f in ("hw", "cin", "cout", "c"):
            if f in s and s[f] > 3:
                v = int(round(s[f] * np.exp(rng.uniform(-0.35, 0.35))))
                s[f] = max(3 if f == "hw" else 1, v)
                if f != "hw" and spec[f] % 8 == 0 and rng.random() < 0.75:
                    s[f] = max(8, 8 * round(v / 8))
        if s["kind"] == "dwconv":
            s["cout"] = s["g"] = s["cin"]
        if s["kind"] == "gconv":
            s["cin"], s["cout"] = (max(s["g"], s["g"] * round(s[f] / s["g"])) for f in ("cin", "cout"))
        if s["kind"] in ("shuffle", "transpose", "reshape"):  # channels in groups
            s["c"] = max(s["g"], s["g"] * round(s["c"] / s["g"]))
        if s["kind"] in ("split", "slice"):
            s["c"] = 2 * max(4, s["c"] // 2)
        if _fits(s) and s != spec:
            return s
    return (sampler or sample_spec)(spec["kind"], rng)


def est_ms(spec: dict) -> float:
    """A rough cost of `spec`'s kernel on one CPU core, in ms: only to group specs into bundles of about a network's
    duration (the measurement, not this, is what a table stores)."""
    kind = spec["kind"]
    if kind == "overhead":
        return 0.01
    if kind in ("conv", "gconv", "dwconv"):
        hw = spec["hw"]
        return _macs(spec) / (1.5e7 if kind == "dwconv" else 1.1e8) + hw * hw * (spec["cin"] + spec["cout"]) / 2e7
    if kind == "fc":
        return spec["cin"] * spec["cout"] / 7e6
    return spec.get("hw", 1) ** 2 * spec.get("c", 1) * spec.get("n", 2) / 2e7


def bundles(specs: list[dict], target_ms: float = 8.0, most: int = 16) -> list[list[dict]]:
    """`specs` in order, grouped into bundles of about `target_ms` (at most `most` specs; one longer spec alone;
    overhead chains alone: they time the runtime itself)."""
    out, cur, cost = [], [], 0.0
    for s in specs:
        if s["kind"] == "overhead":
            if cur:
                out.append(cur)
                cur, cost = [], 0.0
            out.append([s])
            continue
        if cur and (cost + est_ms(s) > target_ms or len(cur) >= most):
            out.append(cur)
            cur, cost = [], 0.0
        cur.append(s)
        cost += est_ms(s)
    return out + ([cur] if cur else [])


def bundle_key(specs: list[dict]) -> str:
    """A bundle's identity: a one-spec bundle is its spec's key; a bundle of several, a digest of their keys."""
    if len(specs) == 1:
        return spec_key(specs[0])
    return "bundle-" + hashlib.sha1("\n".join(spec_key(s) for s in specs).encode()).hexdigest()[:14]


def overhead_spec(n: int) -> dict:
    """A chain of `n` tiny nodes: what the runtime costs per run and per node, whatever the kernels."""
    return {"kind": "overhead", "n": int(n)}


# -- building the model ----------------------------------------------------------------------------------------
class _Graph:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.inputs = [], [], []
        self.prefix = ""  # of every name a branch adds (the runtime names its nodes after their outputs)

    def input(self, shape) -> str:
        from onnx import TensorProto, helper
        name = f"{self.prefix}in{len(self.inputs)}"
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return name

    def const(self, arr) -> str:
        from onnx import numpy_helper
        name = f"w{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    def const_int(self, values) -> str:
        from onnx import numpy_helper
        name = f"w{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs):
        from onnx import helper
        i = len(self.nodes)
        outs = [f"{self.prefix}t{i}_{j}" for j in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=f"{self.prefix}{op_type.lower()}_{i}", **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x: str, cin: int, cout: int, k=(1, 1), s: int = 1, g: int = 1) -> str:
        kh, kw = k
        fan_in = max(1, cin // g * kh * kw)
        w = self.const(self.rng.standard_normal((cout, cin // g, kh, kw)) / np.sqrt(fan_in))
        b = self.const(self.rng.standard_normal(cout) * 0.01)
        return self.op("Conv", [x, w, b], kernel_shape=[kh, kw], strides=[s, s], group=g,
                       pads=[kh // 2, kw // 2, kh // 2, kw // 2])

    def act(self, x: str, fn: str) -> str:
        if fn == "none":
            return x
        if fn == "relu6":
            return self.op("Clip", [x, self.const(0.0), self.const(6.0)])
        if fn == "swish":
            return self.op("Mul", [x, self.op("Sigmoid", [x])])
        if fn == "pow":  # the power in a local response normalisation (alexnet, googlenet)
            return self.op("Pow", [self.op("Sigmoid", [x]), self.const(0.75)])  # of a positive base, as there
        ops = {"relu": "Relu", "sigmoid": "Sigmoid", "hardsigmoid": "HardSigmoid", "hardswish": "HardSwish",
               "tanh": "Tanh"}
        return self.op(ops[fn], [x])

    def model(self, outputs: list[tuple[str, int]]):
        """The model with these (tensor, rank) outputs."""
        from onnx import TensorProto, helper
        graph = helper.make_graph(self.nodes, "kernel", self.inputs,
                                  [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None] * r) for o, r in outputs],
                                  initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hwnas-kernels")
        m.ir_version = 9
        return m


def _stemmed(g: _Graph, spec: dict, c: int) -> str:
    """The kernel's input: behind a cheap 1x1 conv from 8 channels (the layout convs keep), or the model input."""
    hw = spec["hw"]
    if spec.get("stem"):
        return g.conv(g.input((1, 8, hw, hw)), 8, c)
    return g.input((1, c, hw, hw))


def build_model(spec: dict):
    """The ONNX model (onnx.ModelProto) that runs `spec`'s kernel; weights drawn from a seed of the spec."""
    return build_bundle([spec])


def build_bundle(specs: list[dict]):
    """One ONNX model running the kernels of several specs, each in a branch of its own (inputs, names and outputs
    prefixed "b<i>/"): measured as one model, so that its kernels run in the conditions of a network's (one after
    another, for as long as a network runs), and split into kernels by the runtime's profiler."""
    seed = int(hashlib.sha1(json.dumps(specs, sort_keys=True).encode()).hexdigest()[:8], 16)
    g = _Graph(seed)
    outputs = []
    for i, spec in enumerate(specs):
        g.prefix = f"b{i}/" if len(specs) > 1 else ""
        outputs.append(_branch(g, spec))
    return g.model(outputs)


def branch_of(node_name: str) -> int | None:
    """The index of the bundle branch a runtime node came from (None for nodes the runtime added itself)."""
    head, sep, _ = node_name.partition("/")
    return int(head[1:]) if sep and head[:1] == "b" and head[1:].isdigit() else None


def _branch(g: _Graph, spec: dict) -> tuple[str, int]:
    """Add `spec`'s kernel to `g`: its (output, rank)."""
    kind = spec["kind"]
    if kind == "overhead":
        x = g.input((1, 8))
        for _ in range(spec["n"]):
            x = g.op("Relu", [x])
        return x, 2
    if kind in ("conv", "dwconv", "gconv"):
        x = _stemmed(g, spec, spec["cin"])
        y = g.conv(x, spec["cin"], spec["cout"], spec["k"], spec["s"], spec.get("g", 1))
        if spec.get("add"):
            oh = -(-spec["hw"] // spec["s"])
            other = g.conv(g.input((1, 8, oh, oh)), 8, spec["cout"])  # a residual branch in the same layout
            y = g.op("Add", [y, other])
        return g.act(y, spec["act"]), 4
    if kind == "fc":
        x = g.input((1, spec["cin"]))
        w = g.const(g.rng.standard_normal((spec["cout"], spec["cin"])) / np.sqrt(spec["cin"]))
        b = g.const(g.rng.standard_normal(spec["cout"]) * 0.01)
        y = g.op("Gemm", [x, w, b], transB=1)
        return g.act(y, spec["act"]), 2
    c, hw = spec["c"], spec["hw"]
    x = _stemmed(g, spec, c)
    if kind in ("maxpool", "avgpool"):
        k = spec["k"]
        y = g.op("MaxPool" if kind == "maxpool" else "AveragePool", [x], kernel_shape=k, strides=[spec["s"]] * 2,
                 pads=[k[0] // 2, k[1] // 2, k[0] // 2, k[1] // 2] if k[0] % 2 else [0, 0, 0, 0])
    elif kind == "gap":
        y = g.op("GlobalAveragePool", [x])
    elif kind == "add":
        other = g.conv(g.input((1, 8, hw, hw)), 8, c) if spec["stem"] else g.input((1, c, hw, hw))
        y = g.op("Relu", [g.op("Add", [x, other])])  # a residual add whose activation keeps it out of the conv
    elif kind == "mul":
        s = g.conv(g.op("GlobalAveragePool", [x]), c, max(8, c // spec["r"]))
        s = g.act(g.conv(g.act(s, "relu"), max(8, c // spec["r"]), c), spec["gate"])
        y = g.conv(g.op("Mul", [x, s]), c, c)
    elif kind == "act":
        y = g.act(x, spec["fn"])
    elif kind == "concat":
        branches = [x] + [g.conv(g.input((1, 8, hw, hw)), 8, c) if spec["stem"] else g.input((1, c, hw, hw))
                          for _ in range(spec["n"] - 1)]
        y = g.op("Concat", branches, axis=1)
    elif kind == "shuffle":
        gr = spec["g"]
        y = g.op("Reshape", [x, g.const_int((1, gr, c // gr, hw, hw))])
        y = g.op("Transpose", [y], perm=[0, 2, 1, 3, 4])
        y = g.op("Reshape", [y, g.const_int((1, c, hw, hw))])
    elif kind == "split":
        a, b = g.op("Split", [x, g.const_int((c // 2, c // 2))], n_out=2, axis=1)
        y = g.op("Concat", [b, a], axis=1)
    elif kind == "slice":
        y = g.op("Slice", [x, g.const_int((0,)), g.const_int((c // 2,)), g.const_int((1,))])
    elif kind == "pad":
        p = spec["p"]
        y = g.op("Pad", [x, g.const_int((0, 0, p, p, 0, 0, p, p))])
    elif kind == "resize":
        y = g.op("Resize", [x, "", g.const((1.0, 1.0, float(spec["scale"]), float(spec["scale"])))], mode="nearest")
    elif kind == "bn":
        y = g.op("BatchNormalization", [x, g.const(np.ones(c)), g.const(np.zeros(c)), g.const(np.zeros(c)),
                                        g.const(np.ones(c))])
    else:
        raise ValueError(f"unknown target kind {kind!r}")
    return y, 4
