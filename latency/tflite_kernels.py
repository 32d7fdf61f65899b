"""Small .tflite models that make LiteRT run a chosen kernel: what a kernel table times on a LiteRT device.

    spec = sample_spec("dwconv", rng)       # the configurations of hwnas.latency.kernel_models, LiteRT's kinds
    write_model(spec, "k.tflite")           # `copies(spec)` copies of one TFLite operator, on shared inputs

LiteRT has no per-node profiler here, so a model cannot be split into its kernels by their measured shares as an
onnxruntime bundle is. Instead each model holds identical copies of one operator, each with its own weights and
output, as many as make about a network's duration (8 ms by est_ms, at most 16): a copy's latency is the
model's, less the runtime's cost per run and per node, divided by the copies, exactly. The copies read the same
inputs (spec field inputs="shared"), as a network's kernel reads what the kernel before it has just written:
with an input of its own per copy, memory-bound kernels were timed on cold inputs and the bare kernel sum
over-predicted the 24 fit networks by 34% (leave-one-out, identity), against 15% with shared inputs. The
operators are written straight into the flatbuffer (ai_edge_litert's schema), so a model costs milliseconds to
make, not a converter run; what they are read back as is decided by the same reader as a network's
(hwnas.latency.tflite_graph), so a sample and a network's kernel have the same key when they are the same kernel.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from hwnas.latency import kernel_models

# the share of a build's initial samples per target kind on LiteRT (what converted zoo networks run)
SHARES = {"conv": 0.38, "dwconv": 0.13, "gconv": 0.05, "fc": 0.05, "maxpool": 0.03, "avgpool": 0.03, "gap": 0.03,
          "add": 0.04, "mul": 0.05, "act": 0.06, "concat": 0.04, "transpose": 0.05, "reshape": 0.02, "slice": 0.02,
          "pad": 0.02}
FUSABLE = {"none": 0, "relu": 1, "relu6": 3}      # activations TFLite fuses into an operator
ACT_OPS = {"relu": "RELU", "relu6": "RELU6", "sigmoid": "LOGISTIC", "hardswish": "HARD_SWISH", "tanh": "TANH",
           "pow": "POW"}
TARGET_MS = 8.0
MOST_COPIES = 16


def sample_spec(kind: str, rng) -> dict:
    """One configuration of target `kind` for LiteRT: kernel_models' prior, with LiteRT's own fields (an add's
    fused relu, a multiply's broadcast, the activations that run standalone) and kinds (transposes and reshapes
    around layout changes and channel shuffles, channel slices, pads)."""
    return dict(_sample(kind, rng), inputs="shared")


def _sample(kind: str, rng) -> dict:
    if kind in ("transpose", "reshape", "slice", "pad"):
        base = kernel_models.sample_spec("concat", rng)   # a feature map of the sizes networks have
        hw, c = base["hw"], base["c"] * base["n"]
        if kind == "transpose":
            perm = str(rng.choice(("to_nhwc", "to_nchw", "shuffle"), p=(0.3, 0.3, 0.4)))
            g = int(rng.choice((2, 3, 4, 8)))
            return {"kind": kind, "hw": hw, "c": max(g, g * round(c / g)), "g": g, "perm": perm}
        if kind == "reshape":
            g = int(rng.choice((2, 3, 4, 8)))
            return {"kind": kind, "hw": hw, "c": max(g, g * round(c / g)), "g": g}
        if kind == "slice":
            return {"kind": kind, "hw": hw, "c": 2 * max(4, c // 2)}
        return {"kind": kind, "hw": hw, "c": c, "p": int(rng.choice((1, 1, 2, 3)))}
    spec = kernel_models.sample_spec(kind, rng)
    spec.pop("stem", None)
    if kind in ("conv", "dwconv", "gconv"):
        spec["add"] = 0
        spec["act"] = spec["act"] if spec["act"] in FUSABLE else "none"
    elif kind == "fc":
        spec["act"] = spec["act"] if spec["act"] in FUSABLE else "none"
    elif kind == "add":
        spec["act"] = str(rng.choice(("relu", "none")))
    elif kind == "mul":
        spec = {"kind": kind, "hw": spec["hw"], "c": spec["c"], "bcast": int(rng.random() < 0.6)}
    elif kind == "act":
        spec["fn"] = {"swish": "sigmoid"}.get(spec["fn"], spec["fn"])
    return spec


def copies(spec: dict) -> int:
    """How many copies of `spec`'s operator its model holds (about TARGET_MS of work, 1..MOST_COPIES)."""
    if spec["kind"] == "overhead":
        return 1
    return int(np.clip(round(TARGET_MS / max(est_ms(spec), 1e-3)), 1, MOST_COPIES))


def est_ms(spec: dict) -> float:
    """A rough cost of one copy on one core, in ms, only to size a model: convs and fcs as onnxruntime's
    (kernel_models.est_ms), data movement and elementwise kinds at 1.5 M elements per ms (XNNPACK, measured here)."""
    if spec["kind"] in ("conv", "dwconv", "gconv", "fc", "overhead"):
        return kernel_models.est_ms(spec)
    return spec.get("hw", 1) ** 2 * spec.get("c", 1) * spec.get("n", 1) / 1.5e6


class _Flatbuffer:
    """A TFLite model under construction (main subgraph only, float32)."""

    def __init__(self, seed: int):
        from ai_edge_litert import schema_py_generated as schema
        self.s = schema
        self.rng = np.random.default_rng(seed)
        self.tensors, self.buffers, self.operators = [], [schema.BufferT()], []
        self.codes: dict[int, int] = {}
        self.inputs, self.outputs = [], []
        self.shared, self.memo, self.ordinal = False, {}, 0

    def tensor(self, shape, data=None, dtype=np.float32) -> int:
        t = self.s.TensorT(shape=np.asarray(shape, dtype=np.int32), name=f"t{len(self.tensors)}",
                           type=self.s.TensorType.INT32 if dtype == np.int32 else self.s.TensorType.FLOAT32)
        if data is not None:
            self.buffers.append(self.s.BufferT(data=np.ascontiguousarray(data, dtype=dtype).view(np.uint8).ravel()))
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def input(self, shape) -> int:
        """A model input; with `shared` set, the copies read the same ones (the n-th input of every copy is one
        tensor), as a network's kernel reads what the kernel before it has just written."""
        key = (tuple(int(d) for d in shape), self.ordinal)
        self.ordinal += 1
        if self.shared and key in self.memo:
            return self.memo[key]
        i = self.tensor(shape)
        self.inputs.append(i)
        self.memo[key] = i
        return i

    def next_copy(self) -> None:
        self.ordinal = 0

    def weights(self, shape, fan_in: int) -> int:
        return self.tensor(shape, self.rng.standard_normal(shape).astype(np.float32) / np.sqrt(max(fan_in, 1)))

    def ints(self, values) -> int:
        values = np.asarray(values, dtype=np.int32)
        return self.tensor(values.shape, values, np.int32)

    def op(self, name: str, inputs: list[int], out_shape, options=None) -> int:
        code = getattr(self.s.BuiltinOperator, name)
        if code not in self.codes:
            self.codes[code] = len(self.codes)
        out = self.tensor(out_shape)
        o = self.s.OperatorT(opcodeIndex=self.codes[code], inputs=inputs, outputs=[out])
        if options is not None:
            o.builtinOptionsType = getattr(self.s.BuiltinOptions, type(options).__name__[:-1])
            o.builtinOptions = options
        self.operators.append(o)
        return out

    def write(self, path: Path) -> None:
        from ai_edge_litert.tools import flatbuffer_utils
        s = self.s
        codes = [s.OperatorCodeT(builtinCode=c, deprecatedBuiltinCode=min(c, 127), version=1)
                 for c, _ in sorted(self.codes.items(), key=lambda kv: kv[1])]
        sg = s.SubGraphT(tensors=self.tensors, inputs=self.inputs, outputs=self.outputs, operators=self.operators,
                         name="main")
        model = s.ModelT(version=3, operatorCodes=codes, subgraphs=[sg], buffers=self.buffers,
                         description="hwnas kernel model")
        flatbuffer_utils.write_model(model, str(path))


def _same(hw: int, s: int) -> int:
    return -(-hw // s)


def _copy(fb: _Flatbuffer, spec: dict) -> int:
    """Add one copy of `spec`'s operator (its inputs shared with the other copies when fb.shared); returns its
    output tensor."""
    s = fb.s
    kind = spec["kind"]
    if kind == "overhead":
        x = fb.input((1, 8))
        for _ in range(spec["n"]):
            x = fb.op("RELU", [x], (1, 8))
        return x
    if kind in ("conv", "dwconv", "gconv"):
        hw, cin, cout, (kh, kw), st = spec["hw"], spec["cin"], spec["cout"], spec["k"], spec["s"]
        g = spec.get("g", 1)
        x = fb.input((1, hw, hw, cin))
        out = (1, _same(hw, st), _same(hw, st), cout)
        act = FUSABLE.get(spec.get("act", "none"), 0)
        b = fb.tensor((cout,), fb.rng.standard_normal(cout).astype(np.float32) * 0.01)
        if kind == "dwconv":
            w = fb.weights((1, kh, kw, cout), kh * kw)
            opts = s.DepthwiseConv2DOptionsT(padding=s.Padding.SAME, strideH=st, strideW=st, depthMultiplier=1,
                                             fusedActivationFunction=act, dilationHFactor=1, dilationWFactor=1)
            return fb.op("DEPTHWISE_CONV_2D", [x, w, b], out, opts)
        w = fb.weights((cout, kh, kw, cin // g), cin // g * kh * kw)
        opts = s.Conv2DOptionsT(padding=s.Padding.SAME, strideH=st, strideW=st, fusedActivationFunction=act,
                                dilationHFactor=1, dilationWFactor=1)
        return fb.op("CONV_2D", [x, w, b], out, opts)
    if kind == "fc":
        x = fb.input((1, spec["cin"]))
        w = fb.weights((spec["cout"], spec["cin"]), spec["cin"])
        b = fb.tensor((spec["cout"],), np.zeros(spec["cout"], np.float32))
        opts = s.FullyConnectedOptionsT(fusedActivationFunction=FUSABLE.get(spec.get("act", "none"), 0))
        return fb.op("FULLY_CONNECTED", [x, w, b], (1, spec["cout"]), opts)
    hw, c = spec["hw"], spec["c"]
    if kind in ("maxpool", "avgpool"):
        (kh, kw), st = spec["k"], spec["s"]
        pad = s.Padding.SAME if kh % 2 else s.Padding.VALID
        oh = _same(hw, st) if kh % 2 else max(1, (hw - kh) // st + 1)
        x = fb.input((1, hw, hw, c))
        opts = s.Pool2DOptionsT(padding=pad, strideH=st, strideW=st, filterHeight=kh, filterWidth=kw)
        return fb.op("MAX_POOL_2D" if kind == "maxpool" else "AVERAGE_POOL_2D", [x], (1, oh, oh, c), opts)
    if kind == "gap":
        return fb.op("MEAN", [fb.input((1, hw, hw, c)), fb.ints([1, 2])], (1, 1, 1, c),
                     s.ReducerOptionsT(keepDims=True))
    if kind == "add":
        opts = s.AddOptionsT(fusedActivationFunction=FUSABLE.get(spec.get("act", "none"), 0))
        return fb.op("ADD", [fb.input((1, hw, hw, c)), fb.input((1, hw, hw, c))], (1, hw, hw, c), opts)
    if kind == "mul":
        other = fb.input((1, 1, 1, c) if spec.get("bcast", 1) else (1, hw, hw, c))
        return fb.op("MUL", [fb.input((1, hw, hw, c)), other], (1, hw, hw, c), s.MulOptionsT())
    if kind == "act":
        x = fb.input((1, hw, hw, c))
        if spec["fn"] == "pow":
            return fb.op("POW", [x, fb.tensor((), np.float32(0.75))], (1, hw, hw, c))
        return fb.op(ACT_OPS.get(spec["fn"], "RELU"), [x], (1, hw, hw, c))
    if kind == "concat":
        xs = [fb.input((1, hw, hw, c)) for _ in range(spec["n"])]
        return fb.op("CONCATENATION", xs, (1, hw, hw, c * spec["n"]), s.ConcatenationOptionsT(axis=3))
    if kind == "transpose":
        g = spec["g"]
        if spec["perm"] == "shuffle":   # a channel shuffle in NCHW, as converted networks run it
            shape, perm = (1, g, c // g, hw, hw), (0, 2, 1, 3, 4)
        elif spec["perm"] == "to_nchw":
            shape, perm = (1, hw, hw, c), (0, 3, 1, 2)
        else:
            shape, perm = (1, c, hw, hw), (0, 2, 3, 1)
        out = tuple(shape[p] for p in perm)
        return fb.op("TRANSPOSE", [fb.input(shape), fb.ints(perm)], out, s.TransposeOptionsT())
    if kind == "reshape":
        new = (1, spec["g"], c // spec["g"], hw, hw)
        return fb.op("RESHAPE", [fb.input((1, c, hw, hw)), fb.ints(new)], new, s.ReshapeOptionsT(newShape=list(new)))
    if kind == "slice":
        return fb.op("SLICE", [fb.input((1, hw, hw, c)), fb.ints([0, 0, 0, c // 2]), fb.ints([1, hw, hw, c // 2])],
                     (1, hw, hw, c // 2), s.SliceOptionsT())
    if kind == "pad":
        p = spec["p"]
        return fb.op("PAD", [fb.input((1, hw, hw, c)), fb.ints([[0, 0], [p, p], [p, p], [0, 0]])],
                     (1, hw + 2 * p, hw + 2 * p, c), s.PadOptionsT())
    raise ValueError(f"unknown target kind {kind!r} for LiteRT")


def write_model(spec: dict, path) -> Path:
    """The .tflite model of `spec` (copies(spec) copies of its operator), written atomically to `path`."""
    path = Path(path)
    seed = int(hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8], 16)
    fb = _Flatbuffer(seed)
    fb.shared = spec.get("inputs") == "shared"
    for _ in range(copies(spec)):
        fb.next_copy()
        fb.outputs.append(_copy(fb, spec))
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        fb.write(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
