"""Kernel decomposition: a network as the kernels the runtime really runs, each with its configuration.

    dec = decompose(get_device("cpu"), "resnet50")                  # a zoo name, .onnx file, module or pkg.mod:f
    for k in dec.kernels: print(k.kind, k.key, k.ms)                 # conv-hw:56x56-cin:64-cout:64-k:3x3-s:1-...
    dec.unsupported                                                  # nodes no kernel type covers, by name
    dec.rules                                                        # what this runtime fused, as observed

On LiteRT devices the kernels are the operators of the .tflite file, which the converter has already fused and
XNNPACK runs one by one (hwnas.latency.tflite_graph; LiteRT shows no optimised graph and no per-node times).

Which ops fuse is not assumed: the device's runtime optimises the graph itself (onnxruntime at its
graph_optimization level: batch norms folded into convs, activations and residual adds fused into them, convs in
the blocked NCHWc layout with reorders around them on a CPU at level "all"), and the decomposition reads that
optimised graph and the shapes each node ran with (the backend's `runtime_nodes`). A fused conv+bn+relu+add is
one kernel here because it is one kernel there. `rules` records what was observed (the fused activations, fused
adds, the original op types that vanished into other kernels), to be stored beside a kernel table.

Kernel kinds: conv, dwconv, gconv (fused activation in `act`, a fused residual add in `add`), fc, maxpool,
avgpool, gap, add, mul (broadcast in `bcast`: an SE scale), act (a standalone activation: relu, sigmoid,
hardswish, pow, ...), concat, bn (a batch norm left unfolded), reorder (layout changes), reshape (data-free shape
ops: flatten, reshape, squeeze), transpose, softmax, resize, pad, slice, split. Anything else is listed in
`unsupported` by node name and op, never counted as 0 ms.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hwnas.errors import HwnasError

CONV_OPS = {"Conv", "FusedConv"}
POOLS = {"MaxPool": "maxpool", "AveragePool": "avgpool"}
GLOBAL_POOLS = {"GlobalAveragePool", "GlobalMaxPool"}
ELEMENTWISE = {"Add": "add", "Sum": "add", "Sub": "add", "Mul": "mul", "Div": "mul"}
ACTIVATIONS = {"Relu": "relu", "Clip": "relu6", "Sigmoid": "sigmoid", "HardSigmoid": "hardsigmoid",
               "HardSwish": "hardswish", "Tanh": "tanh", "LeakyRelu": "leakyrelu", "Gelu": "gelu", "Erf": "erf",
               "Elu": "elu", "Softplus": "softplus", "QuickGelu": "gelu", "Pow": "pow", "Neg": "neg",
               "Sqrt": "sqrt", "Exp": "exp"}
SHAPE_ONLY = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout"}
SIMPLE = {"ReorderInput": "reorder", "ReorderOutput": "reorder", "Transpose": "transpose", "Softmax": "softmax",
          "BatchNormalization": "bn", "Resize": "resize", "Upsample": "resize", "Pad": "pad", "Slice": "slice",
          "Split": "split"}
FC_OPS = {"Gemm", "MatMul", "FusedGemm", "FusedMatMul"}


@dataclass(frozen=True)
class Kernel:
    """One kernel the runtime runs: `kind` (see the module docstring), `config` its fields in a fixed order,
    `op` the runtime's node type ("com.microsoft.nchwc:Conv"), `name` the runtime's node name, `ms` its median
    time in the profiled runs that found it (a reference, not a prediction)."""
    name: str
    op: str
    kind: str
    config: tuple = ()
    ms: float = 0.0

    @property
    def key(self) -> str:
        """Canonical key of the kernel's configuration (what a kernel table stores and a regressor reads)."""
        return "-".join([self.kind] + [f"{k}:{_text(v)}" for k, v in self.config])

    def features(self) -> dict:
        return dict(self.config)


@dataclass
class Decomposition:
    model: str
    device: str
    input_shape: tuple
    kernels: list[Kernel]
    unsupported: list[tuple[str, str]]      # (node name, op) of nodes no kernel kind covers
    rules: list[str]                        # fusions observed in the runtime's optimised graph
    nodes_ms: float = 0.0                   # the sum of every node's median in the profiled runs

    def by_kind(self) -> Counter:
        return Counter(k.kind for k in self.kernels)

    def to_dict(self) -> dict:
        return {"model": self.model, "device": self.device, "input_shape": list(self.input_shape),
                "rules": self.rules, "unsupported": [{"name": n, "op": o} for n, o in self.unsupported],
                "kernels": [{"name": k.name, "op": k.op, "kind": k.kind, "key": k.key, "config": dict(k.config),
                             "ms": k.ms} for k in self.kernels]}


def _text(v) -> str:
    return "x".join(str(int(x)) for x in v) if isinstance(v, (tuple, list)) else str(v)


def _hw(shape: list[int]) -> tuple[int, ...]:
    return tuple(shape[2:4]) if len(shape) >= 4 else (1, 1)


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= max(int(d), 1)
    return n


def _conv(node) -> tuple[str, tuple]:
    x, w = node.inputs[0], node.inputs[1]
    groups = int(node.attrs.get("group", 1))
    cout, cin = int(w[0]), int(w[1]) * groups
    kind = "conv" if groups == 1 else ("dwconv" if groups == cin else "gconv")
    k = tuple(node.attrs.get("kernel_shape") or w[2:4])
    s = tuple(node.attrs.get("strides") or (1,) * len(k))
    act = str(node.attrs.get("activation", "none")).lower()
    act = {"clip": "relu6"}.get(act, act)
    add = int(len(node.inputs) > 3)  # FusedConv's Z / NCHWc Conv's Sum: a residual add fused into the conv
    config = (("hw", _hw(x)), ("cin", cin), ("cout", cout), ("k", k), ("s", s))
    if kind == "gconv":
        config += (("g", groups),)
    return kind, config + (("act", act), ("add", add))


def classify(node) -> tuple[str, tuple] | None:
    """(kind, config) of one RuntimeNode, or None when no kernel kind covers it."""
    if node.op.startswith("tflite:"):  # an operator of a .tflite file, NHWC (LiteRT devices)
        from hwnas.latency.tflite_graph import classify as classify_tflite
        return classify_tflite(node)
    op = node.op.split(":")[-1]
    ins, outs = node.inputs, node.outputs
    if not ins or not outs:
        return None
    x = ins[0]
    if op in CONV_OPS and len(ins) >= 2 and len(ins[1]) == 4:
        return _conv(node)
    if op in FC_OPS and len(ins) >= 2:
        return "fc", (("cin", int(x[-1])), ("cout", int(outs[0][-1])), ("rows", _numel(x[:-1])))
    if op in POOLS:
        k = tuple(node.attrs.get("kernel_shape", ()))
        s = tuple(node.attrs.get("strides") or (1,) * len(k))
        return POOLS[op], (("hw", _hw(x)), ("c", int(outs[0][1])), ("k", k), ("s", s))
    if op in GLOBAL_POOLS:
        return "gap", (("hw", _hw(x)), ("c", int(x[1])))
    if op in ELEMENTWISE and len(ins) >= 2:
        bcast = int(any(_numel(i) != _numel(outs[0]) for i in ins))
        return ELEMENTWISE[op], (("hw", _hw(outs[0])), ("c", int(outs[0][1]) if len(outs[0]) > 1 else 1),
                                 ("n", len(ins)), ("bcast", bcast))
    if op in ACTIVATIONS:
        return "act", (("fn", ACTIVATIONS[op]), ("hw", _hw(x)), ("c", int(x[1]) if len(x) > 1 else 1))
    if op == "Concat":
        return "concat", (("hw", _hw(outs[0])), ("c", int(outs[0][1]) if len(outs[0]) > 1 else 1),
                          ("n", len(ins)))
    if op in SHAPE_ONLY:
        return "reshape", (("elements", _numel(x)),)
    if op in SIMPLE:
        return SIMPLE[op], (("hw", _hw(x)), ("c", int(x[1]) if len(x) > 1 else 1),
                            ("out_hw", _hw(outs[0])))
    return None


def kernels_of(nodes) -> tuple[list[Kernel], list[tuple[str, str]]]:
    """The runtime's nodes as kernels, and (node name, op) of those no kernel kind covers."""
    kernels, unsupported = [], []
    for n in nodes:
        found = classify(n)
        if found is None:
            unsupported.append((n.name, n.op))
        else:
            kernels.append(Kernel(name=n.name, op=n.op, kind=found[0], config=found[1], ms=n.ms))
    return kernels, unsupported


def fusion_rules(original_ops: Counter, nodes: list) -> list[str]:
    """What the runtime fused, observed: activations and residual adds inside its convs, and the original op types
    that no longer run as nodes of their own (folded into others, or optimised away)."""
    rules = set()
    for n in nodes:
        op = n.op.split(":")[-1]
        if op in CONV_OPS:
            act = n.attrs.get("activation")
            if act:
                rules.add(f"Conv+{act}")
            if len(n.inputs) > 3:
                rules.add("Conv+Add")
    running = Counter(n.op.split(":")[-1] for n in nodes)
    for op in sorted(original_ops):
        if running.get(op, 0) == 0:
            rules.add(f"{op} fused into other kernels")
        elif running[op] < original_ops[op]:
            rules.add(f"{op}: {original_ops[op] - running[op]} of {original_ops[op]} fused into other kernels")
    if any("nchwc" in n.op for n in nodes):
        rules.add("NCHWc blocked layout (reorders at its edges)")
    return sorted(rules)


def _original_ops(artifact) -> Counter:
    import onnx
    graph = onnx.load(str(artifact.path), load_external_data=False).graph
    return Counter(n.op_type for n in graph.node)


def require_kernels(device, what: str = "kernel decomposition") -> None:
    """One clear line where `device`'s runtime does not show the kernels it runs: onnxruntime's (its optimised
    graph) and LiteRT's on this machine (the .tflite operators XNNPACK runs) do."""
    if device.artifact_format not in ("onnx", "tflite") or device.backend.name not in ("onnxruntime", "litert"):
        raise HwnasError(f"device {device.name!r} ({device.backend.name}) does not show the kernels it runs: {what} "
                         f"reads onnxruntime's optimised graph or a .tflite file run by LiteRT (use cpu or litert-cpu)")


def runtime_kernels(device, artifact, runs: int = 3) -> tuple[list, list[Kernel], list[tuple[str, str]], list[str]]:
    """(nodes, kernels, unsupported, rules) of `artifact` on `device`: onnxruntime's optimised graph with each node's
    profiled time; or, on LiteRT, the .tflite operators (the pads XNNPACK folds into convs left out) without times."""
    if artifact.format == "tflite":
        from hwnas.latency.tflite_graph import fold_pads, fusion_rules as tflite_rules
        nodes = device.backend.runtime_nodes(artifact, runs=runs)
        folded, xnnpack = 0, bool(getattr(device.backend.options, "xnnpack", True))
        if xnnpack:
            nodes, folded = fold_pads(nodes)
        kernels, unsupported = kernels_of(nodes)
        return nodes, kernels, unsupported, tflite_rules(nodes, folded, xnnpack)
    nodes = device.backend.runtime_nodes(artifact, runs=runs)
    kernels, unsupported = kernels_of(nodes)
    return nodes, kernels, unsupported, fusion_rules(_original_ops(artifact), nodes)


def decompose(device, model, input_shape=None, runs: int = 3) -> Decomposition:
    """`model` (a zoo name, an .onnx file, a torch module or `package.module:factory`) on `device` (a Device or a
    device name): the kernels its runtime runs, in execution order (shapes and times from `runs` profiled runs
    after one untimed run)."""
    if isinstance(device, str):
        from hwnas.latency.devices import get_device
        device = get_device(device)
    require_kernels(device)
    artifact = device.prepare(model, input_shape)
    nodes, kernels, unsupported, rules = runtime_kernels(device, artifact, runs)
    shape = next(iter(artifact.input_shapes.values()), ())
    return Decomposition(model=artifact.name, device=device.name, input_shape=tuple(shape), kernels=kernels,
                         unsupported=unsupported, rules=rules, nodes_ms=sum(n.ms for n in nodes))
