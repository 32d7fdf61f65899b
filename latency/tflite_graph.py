""".tflite models read as the kernels LiteRT runs: the graph side of kernel tables on LiteRT devices.

    nodes = read_nodes("mobilenetv2.tflite")       # RuntimeNode per operator, NHWC shapes, options, constants
    classify(nodes[3])                             # ("dwconv", (("hw", (113, 113)), ("cin", 32), ...))

LiteRT shows no optimised graph and no per-node times: with XNNPACK (the default CPU delegate) a CNN runs as one
or a few DELEGATE nodes. What it runs is nonetheless close to the flatbuffer's operators: the converter has
already folded batch norms into convs and fused relu/relu6 into convs, fcs and adds (the `fusedActivationFunction`
of each operator, recorded as rules), and XNNPACK runs one operator per TFLite operator, except that a constant PAD
whose only reader is a conv becomes that conv's padding (XNNPACK's subgraph fusion; such pads are folded here,
rule "PAD into the following conv"). Data-free RESHAPEs are copies in XNNPACK and are kept as kernels.

Kernel kinds and configuration fields are those of hwnas.latency.kernels (conv, dwconv, gconv, fc, pools, gap,
add, mul, act, concat, reshape, transpose, slice, pad, softmax, resize, split), read from NHWC shapes; an operator
no kind covers (STABLEHLO_REDUCE_WINDOW, a reduction other than a spatial mean, ...) is unsupported.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency.devices.base import RuntimeNode
from hwnas.latency.kernels import _numel

ACTIVATION = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh", 5: "sign_bit"}
ACT_OPS = {"RELU": "relu", "RELU6": "relu6", "LOGISTIC": "sigmoid", "HARD_SWISH": "hardswish", "TANH": "tanh",
           "POW": "pow", "LEAKY_RELU": "leakyrelu", "GELU": "gelu", "ELU": "elu", "EXP": "exp", "SQRT": "sqrt",
           "RSQRT": "rsqrt", "NEG": "neg", "ABS": "abs", "SQUARE": "square"}
BINARY = {"ADD": "add", "SUB": "add", "MUL": "mul", "DIV": "mul", "MAXIMUM": "add", "MINIMUM": "add",
          "SQUARED_DIFFERENCE": "mul"}
POOLS = {"MAX_POOL_2D": "maxpool", "AVERAGE_POOL_2D": "avgpool"}
CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")
# operands read as constants (a MEAN's axes, a TRANSPOSE's permutation, a PAD's paddings)
CONST_INPUT = {"MEAN": "axes", "SUM": "axes", "TRANSPOSE": "perm", "PAD": "paddings", "PADV2": "paddings"}


@lru_cache(maxsize=1)
def op_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _buffer(model, raw: bytes | None, index: int) -> bytes | None:
    b = model.buffers[index] if 0 < index < len(model.buffers) else None
    if b is None:
        return None
    if b.data is not None and len(b.data):
        return bytes(np.asarray(b.data, dtype=np.uint8))
    if getattr(b, "offset", 0) > 1 and raw is not None:   # large models keep buffers after the flatbuffer
        return raw[b.offset:b.offset + b.size]
    return None


def _const(model, sg, raw, tensor: int) -> list[int] | None:
    data = _buffer(model, raw, sg.tensors[tensor].buffer)
    if data is None:
        return None
    dtype = np.int64 if sg.tensors[tensor].type == 4 else np.int32
    return np.frombuffer(data, dtype=dtype).astype(int).tolist()


def _options(opts) -> dict:
    if opts is None:
        return {}
    return {k: (int(v) if isinstance(v, (bool, np.integer)) else v) for k, v in vars(opts).items()
            if isinstance(v, (int, float, bool, np.integer))}


def read_nodes(path) -> list[RuntimeNode]:
    """The operators of a .tflite file's main subgraph in execution order, as RuntimeNodes (op "tflite:CONV_2D",
    NHWC shapes of every operand, the operator's options and constant operands as attributes; no times)."""
    from ai_edge_litert.tools import flatbuffer_utils
    path = Path(path)
    try:
        model = flatbuffer_utils.read_model(str(path))
    except Exception as e:  # a damaged or foreign file
        raise HwnasError(f"cannot read {path.name} as a .tflite model: {type(e).__name__} {e}") from None
    sg = model.subgraphs[0]
    raw = None
    if any(getattr(b, "offset", 0) > 1 for b in model.buffers):
        raw = path.read_bytes()
    names = op_names()
    nodes = []
    for i, op in enumerate(sg.operators):
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) or f"CUSTOM:{code.customCode}"
        attrs = _options(op.builtinOptions)
        ins = [int(t) for t in op.inputs if t >= 0]
        if name in CONST_INPUT and len(ins) > 1:
            attrs[CONST_INPUT[name]] = _const(model, sg, raw, ins[1])
        attrs["input_tensors"] = ins
        attrs["output_tensors"] = [int(t) for t in op.outputs]
        nodes.append(RuntimeNode(name=f"{name.lower()}_{i}", op=f"tflite:{name}",
                                 inputs=[[int(d) for d in sg.tensors[t].shape] for t in ins],
                                 outputs=[[int(d) for d in sg.tensors[t].shape] for t in op.outputs], attrs=attrs))
    return nodes


def _hw(shape) -> tuple[int, int]:
    return (int(shape[1]), int(shape[2])) if len(shape) == 4 else (1, 1)


def classify(node) -> tuple[str, tuple] | None:
    """(kind, config) of one TFLite operator (a RuntimeNode of read_nodes), or None when no kind covers it."""
    op = node.op.split(":")[-1]
    ins, outs, a = node.inputs, node.outputs, node.attrs
    if not ins or not outs:
        return None
    x, y = ins[0], outs[0]
    act = ACTIVATION.get(a.get("fusedActivationFunction", 0), "other")
    if op in CONVS and len(ins) >= 2 and len(x) == 4 and len(ins[1]) == 4:
        w, cin = ins[1], int(x[3])
        k, s = (int(w[1]), int(w[2])), (int(a.get("strideH", 1)), int(a.get("strideW", 1)))
        if op == "CONV_2D":
            cout, g = int(w[0]), max(1, cin // max(1, int(w[3])))
        else:
            cout, g = int(w[3]), cin
        kind = "conv" if g == 1 else ("dwconv" if g == cin and cout == cin else "gconv")
        config = (("hw", _hw(x)), ("cin", cin), ("cout", cout), ("k", k), ("s", s))
        return kind, config + ((("g", g),) if kind == "gconv" else ()) + (("act", act), ("add", 0))
    if op == "FULLY_CONNECTED" and len(ins) >= 2:
        cin, cout = int(ins[1][-1]), int(ins[1][0])
        return "fc", (("cin", cin), ("cout", cout), ("rows", max(1, _numel(x) // max(cin, 1))), ("act", act))
    if op in POOLS and len(x) == 4:
        k = (int(a.get("filterHeight", 1)), int(a.get("filterWidth", 1)))
        return POOLS[op], (("hw", _hw(x)), ("c", int(y[-1])), ("k", k),
                           ("s", (int(a.get("strideH", 1)), int(a.get("strideW", 1)))))
    if op in ("MEAN", "SUM") and len(x) == 4 and sorted(int(v) % 4 for v in (a.get("axes") or [])) == [1, 2]:
        return "gap", (("hw", _hw(x)), ("c", int(x[3])))
    if op in BINARY and len(ins) >= 2:
        bcast = int(any(_numel(i) != _numel(y) for i in ins))
        return BINARY[op], (("hw", _hw(y)), ("c", int(y[-1]) if y else 1), ("n", len(ins)), ("bcast", bcast),
                            ("act", act))
    if op in ACT_OPS:
        return "act", (("fn", ACT_OPS[op]), ("hw", _hw(x)), ("c", int(x[-1]) if x else 1))
    if op == "CONCATENATION":
        return "concat", (("hw", _hw(y)), ("c", int(y[-1])), ("n", len(ins)),
                          ("axis", int(a.get("axis", -1)) % max(len(y), 1)))
    if op in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"):
        return "reshape", (("elements", _numel(x)),)
    if op == "TRANSPOSE":
        perm = tuple(int(v) for v in (a.get("perm") or range(len(x))[::-1]))
        return "transpose", (("elements", _numel(x)), ("rank", len(x)), ("perm", perm))
    if op in ("SLICE", "STRIDED_SLICE", "SPLIT", "SPLIT_V"):
        kind = "slice" if "SLICE" in op else "split"
        return kind, (("elements", _numel(x)), ("out_elements", _numel(y)), ("n", len(outs)))
    if op in ("PAD", "PADV2", "MIRROR_PAD"):
        return "pad", (("hw", _hw(x)), ("c", int(x[-1])), ("out_hw", _hw(y)))
    if op in ("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"):
        return "resize", (("hw", _hw(x)), ("c", int(x[-1])), ("out_hw", _hw(y)))
    if op in ("SOFTMAX", "LOG_SOFTMAX"):
        return "softmax", (("elements", _numel(x)),)
    return None


def fold_pads(nodes: list[RuntimeNode]) -> tuple[list[RuntimeNode], int]:
    """The nodes without the constant pads XNNPACK folds into the conv that reads them (a PAD/PADV2 whose output
    only a CONV_2D or DEPTHWISE_CONV_2D reads, as its input), and how many were folded."""
    readers: dict[int, list[RuntimeNode]] = {}
    for n in nodes:
        for t in n.attrs.get("input_tensors", []):
            readers.setdefault(t, []).append(n)
    kept, folded = [], 0
    for n in nodes:
        op = n.op.split(":")[-1]
        if op in ("PAD", "PADV2") and len(n.attrs.get("output_tensors", [])) == 1:
            r = readers.get(n.attrs["output_tensors"][0], [])
            if len(r) == 1 and r[0].op.split(":")[-1] in CONVS and \
                    r[0].attrs["input_tensors"][0] == n.attrs["output_tensors"][0]:
                folded += 1
                continue
        kept.append(n)
    return kept, folded


def fusion_rules(nodes: list[RuntimeNode], folded_pads: int = 0, xnnpack: bool = True) -> list[str]:
    """What runs fused, as the file shows it: activations the converter fused into operators, pads folded into
    convs (XNNPACK), and which kernels run the operators (the XNNPACK delegate, or TFLite's builtin ones)."""
    rules = {"XNNPACK delegate: one XNNPACK operator per TFLite operator (batch norms folded by the converter)"
             if xnnpack else "TFLite builtin kernels, one per operator (batch norms folded by the converter)"}
    for n in nodes:
        act = ACTIVATION.get(n.attrs.get("fusedActivationFunction", 0))
        if act not in (None, "none"):
            rules.add(f"{n.op.split(':')[-1]}+{act.upper()}")
    if folded_pads:
        rules.add("PAD into the following conv (XNNPACK folds constant pads into convolutions)")
    return sorted(rules)
