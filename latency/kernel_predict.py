"""Predict the latency of any network from its kernels (nn-Meter's idea, on the kernels this runtime really runs).

    from hwnas.latency.kernel_predict import predict_latency
    p = predict_latency("cpu", "resnet50")                 # a zoo name, an .onnx file, an nn.Module, pkg.mod:f
    p.ms, p.complete, p.unpredictable                      # every op that could not be predicted, by name
    for row in p.rows: print(row["name"], row["key"], row["ms"], row["source"])

The network is decomposed on the device (hwnas.latency.kernels: the runtime's own optimised graph, so fusions are
the runtime's), each kernel's latency comes from the regressor of its kind, and the runtime's cost per run and per
node is added: sum = a + b * nodes + sum(kernel predictions). The sum is corrected as a space's table is
(measured ≈ A · sum + B · nodes + C, the form chosen by leave-one-out error), fitted on a few whole networks of a
search space measured with the protocol at build time, never a network a benchmark predicts: the calibrated
protocol reads artifacts of different lengths on slightly different scales, and kernels in small models are
timed in conditions not quite a network's.

The regressors are fitted when a table is loaded, from the samples the kernel table stores (hwnas.latency.lut.
kernel_table), never unpickled: a table built with one scikit-learn still loads after an upgrade, and the same
samples give the same predictions. Per kernel kind, a least-squares line of log latency on log MACs (log input
elements for kinds without MACs), which carries a kernel's cost beyond the largest sampled ones, and a random
forest (nn-Meter's choice) on what the line leaves, over the kernel's configuration plus derived sizes (log MACs,
input, output and weight elements, channel alignment) and the runtime op that ran it (blocked NCHWc, fused or plain: onnxruntime's blocked depthwise conv is several times
faster than its plain one for the same shape). A sample's latency is its share of its model's measured latency
(the profiler's split of the model's nodes) after the per-run and per-node cost, which is fitted on chains of
1-128 tiny nodes measured the same way. The models are bundles of kernel configurations of about a network's
duration (hwnas.latency.kernel_models.bundles): the calibrated protocol reads short and long artifacts on slightly
different scales (its reference runs slower after a long artifact), so kernels are timed the way networks are.
"""
from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from hwnas.errors import HwnasError

MIN_SAMPLES = 5           # a kind with fewer samples has no regressor: its kernels are listed as unpredictable
CONV_KINDS = ("conv", "dwconv", "gconv")
FOREST = {"n_estimators": 160, "min_samples_leaf": 1, "max_features": 0.6, "random_state": 0}
_CACHE: dict = {}


def features(kind: str, op: str, config: dict) -> dict[str, float]:
    """A kernel's regression features: its configuration (tuples split, strings one-hot), the runtime op that ran
    it, and derived sizes on a log scale."""
    f = {f"op={op.split(':')[0]}:{op.split(':')[-1]}": 1.0}
    for k, v in config.items():
        if isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                f[f"{k}{i}"] = float(x)
        elif isinstance(v, str):
            f[f"{k}={v}"] = 1.0
        else:
            f[k] = float(v)
    h, w = (list(config.get("hw") or (1, 1)) + [1])[:2]
    c = config.get("cin", config.get("c", 1))
    f["log_in"] = math.log(max(1, config.get("elements", h * w * c)))  # data-movement kinds: their elements
    if "out_elements" in config:
        f["log_out"] = math.log(max(1, config["out_elements"]))
    if kind in CONV_KINDS:
        (kh, kw), (sh, sw) = config["k"], config["s"]
        cin, cout = config["cin"], config["cout"]
        g = config.get("g", cin if kind == "dwconv" else 1)
        oh, ow = -(-h // sh), -(-w // sw)
        f["log_macs"] = math.log(max(1, oh * ow * cout * cin / g * kh * kw))
        f["log_out"] = math.log(max(1, oh * ow * cout))
        f["log_w"] = math.log(max(1, cin / g * cout * kh * kw))
        f["cin_aligned"], f["cout_aligned"] = float(cin % 8 == 0), float(cout % 8 == 0)
    elif kind == "fc":
        f["log_macs"] = math.log(max(1, config["cin"] * config["cout"] * config.get("rows", 1)))
    elif "out_hw" in config:
        oh, ow = config["out_hw"]
        f["log_out"] = math.log(max(1, oh * ow * c))
    if "c" in config:
        f["c_aligned"] = float(config["c"] % 8 == 0)
    return f


class KindModel:
    """The regressor of one kernel kind: a least-squares line of log latency on log MACs (log input elements for
    kinds without MACs), which carries a kernel's cost beyond the largest sampled ones, and a random forest on what
    the line leaves (the runtime's steps: layouts, alignment, fused activations). With too few samples for a line
    (4 per coefficient), the forest alone."""

    def __init__(self, kind: str, rows: list[dict], values: np.ndarray, specs: list[dict]):
        from sklearn.ensemble import RandomForestRegressor
        self.kind, self.n = kind, len(rows)
        self.columns = sorted({k for r in rows for k in r})
        main = "log_macs" if "log_macs" in self.columns else "log_in"
        self.linear = [i for i, c in enumerate(self.columns) if c == main]
        self.specs = specs
        x = self.matrix(rows)
        self.y = np.log(values)
        self.coef = np.zeros(len(self.linear) + 1)
        if self.linear and self.n >= 4 * (len(self.linear) + 1):
            a = np.column_stack([x[:, self.linear], np.ones(self.n)])
            self.coef = np.linalg.lstsq(a, self.y, rcond=None)[0]
        self.residual = self.y - self.base(x)
        self.forest = RandomForestRegressor(oob_score=self.n >= 10, **FOREST).fit(x, self.residual)

    def base(self, x: np.ndarray) -> np.ndarray:
        return x[:, self.linear] @ self.coef[:-1] + self.coef[-1]

    def matrix(self, rows: list[dict]) -> np.ndarray:
        return np.array([[r.get(c, 0.0) for c in self.columns] for r in rows], dtype=np.float64)

    def predict(self, rows: list[dict]) -> np.ndarray:
        x = self.matrix(rows)
        return np.exp(self.base(x) + self.forest.predict(x))

    def oob_errors(self) -> np.ndarray:
        """Each sample's relative out-of-bag error (predicted by the trees that did not see it)."""
        if not hasattr(self.forest, "oob_prediction_"):  # too few samples to tell: as if all were wrong
            return np.full(self.n, np.inf)
        return np.abs(np.exp(self.forest.oob_prediction_ - self.residual) - 1.0)


@dataclass
class KernelPredictor:
    fingerprint: str
    overhead: dict                      # {"a": ms per run, "b": ms per node, "profiled_node_ms": what the profiler
                                        # adds to a node, "n_models": chains they were fitted on}
    kinds: dict[str, KindModel]
    counts: dict[str, int]              # samples per kind (kinds with < MIN_SAMPLES have no model)
    rules: list[str] = field(default_factory=list)
    models: int = 0
    correction: dict = field(default_factory=lambda: {"a": 1.0, "b": 0.0, "c": 0.0, "model": "identity",
                                                      "n_networks": 0})

    @classmethod
    def fit(cls, table, fp: str) -> "KernelPredictor":
        """Fit from the kernel table `table` (hwnas.latency.lut.kernel_table.KernelTable) of fingerprint `fp`."""
        models = {m["spec"]: m for m in table.models(fp)}
        chains = [m for m in models.values() if m["kind"] == "overhead"]
        if len(chains) >= 2:
            b, a = np.polyfit([m["nodes"] for m in chains], [m["ms"] for m in chains], 1)
            a, b = max(float(a), 0.0), max(float(b), 0.0)
            # what the profiler itself adds to each node's time (a trivial node's profiled time): taken off every
            # node before the shares are computed, or small kernels would get shares their work does not have
            p0 = float(np.median([m["nodes_ms"] / m["nodes"] for m in chains]))
        else:
            a = b = p0 = 0.0
        per_kind: dict[str, tuple[list, list, list]] = defaultdict(lambda: ([], [], []))
        bundle_specs = {k: json.loads(m["json"])["specs"] for k, m in models.items() if m["kind"] != "overhead"}
        for s in table.samples(fp):
            m = models.get(s["spec"])
            if m is None or m["kind"] == "overhead" or m["nodes_ms"] <= 0:
                continue
            avail = max(m["ms"] - a - b * m["nodes"], 0.05 * m["ms"])
            work = m["nodes_ms"] - p0 * m["nodes"]
            if work <= 0:
                continue
            ms = avail * max(s["node_ms"] - p0, 0.05 * p0) / work
            if ms <= 0:
                continue
            rows, values, specs = per_kind[s["kind"]]
            rows.append(features(s["kind"], s["op"], json.loads(s["config"])))
            values.append(ms)
            specs.append(_spec_of(s["node"], bundle_specs[s["spec"]]))
        counts = {k: len(v[0]) for k, v in per_kind.items()}
        kinds = {k: KindModel(k, rows, np.array(values), specs) for k, (rows, values, specs) in per_kind.items()
                 if len(rows) >= MIN_SAMPLES}
        out = cls(fp, {"a": a, "b": b, "profiled_node_ms": p0, "n_models": len(chains)}, kinds, counts,
                  table.rules(fp), len(models))
        out.correction = out.fit_correction(table.networks(fp))
        return out

    def fit_correction(self, networks: list[dict]) -> dict:
        """measured ≈ a · (kernel sum) + b · nodes + c, fitted on the table's fit networks (whole networks of a search
        space, measured with the protocol; hwnas.latency.predict.LatencyPredictor.fit_correction chooses identity,
        scale or affine by leave-one-out error). Identity without fit networks."""
        from hwnas.latency.kernels import Kernel
        from hwnas.latency.predict import LatencyPredictor
        sums, nodes, measured = [], [], []
        for net in networks:
            d = json.loads(net["json"])
            kernels = [Kernel(k["name"], k["op"], k["kind"], tuple((f, tuple(v) if isinstance(v, list) else v)
                                                                   for f, v in k["config"].items())) for k in d["kernels"]]
            est = self.kernel_ms(kernels)
            if d["unsupported"] or any(ms is None for ms, _ in est):
                continue
            sums.append(self.overhead["a"] + self.overhead["b"] * d["nodes"] + sum(ms for ms, _ in est))
            nodes.append(d["nodes"])
            measured.append(net["ms"])
        if not measured:
            return {"a": 1.0, "b": 0.0, "c": 0.0, "model": "identity", "n_networks": 0}
        smallest = self.overhead["a"] + self.overhead["b"]  # a one-node network: the correction must keep it > 0
        return LatencyPredictor.fit_correction(sums, nodes, measured,
                                               fastest=lambda c: c["a"] * smallest + c["b"] + c["c"])

    @classmethod
    def load(cls, device, db=None) -> "KernelPredictor":
        """The predictor of `device`'s kernel table in database `db` (fitted once per process and table state)."""
        from hwnas.latency.lut.kernel_table import KernelTable
        table = KernelTable(db)
        fp = device.fingerprint()["key"]
        n_models, n_samples = table.count(fp)
        if n_models == 0:
            raise HwnasError(f"no kernel table for device {device.name!r} (fingerprint {fp}) in {table.path}; build "
                             f"one with `hwnas lut kernels --device {device.name}`")
        key = (str(table.path), fp, n_models, n_samples, len(table.networks(fp)))
        if key not in _CACHE:
            _CACHE.clear()
            _CACHE[key] = cls.fit(table, fp)
        return _CACHE[key]

    def oob_errors(self) -> dict[str, list[tuple[float, dict]]]:
        """Per kind: (relative out-of-bag error, the spec whose branch the sample ran in) for every sample that has
        one (the runtime's own reorders have none)."""
        return {k: [(e, s) for e, s in zip(m.oob_errors().tolist(), m.specs) if s is not None]
                for k, m in self.kinds.items()}

    def describe_errors(self, bound: float) -> str:
        parts = []
        for k, m in sorted(self.kinds.items()):
            e = m.oob_errors()
            parts.append(f"{k} {np.mean(e <= bound):.0%}" if np.isfinite(e).all() else f"{k} n/a ({m.n} samples)")
        return f"share of samples within ±{bound:.0%} out of bag: " + ", ".join(parts)

    def kernel_ms(self, kernels) -> list[tuple[float | None, str]]:
        """(ms, source) per kernel (hwnas.latency.kernels.Kernel); ms None where its kind has no regressor."""
        out: list = [None] * len(kernels)
        by_kind = defaultdict(list)
        for i, k in enumerate(kernels):
            by_kind[k.kind].append(i)
        for kind, idx in by_kind.items():
            m = self.kinds.get(kind)
            if m is None:
                why = f"no {kind} kernels in the table" if not self.counts.get(kind) else \
                    f"only {self.counts[kind]} {kind} samples in the table (a regressor needs {MIN_SAMPLES})"
                for i in idx:
                    out[i] = (None, why)
                continue
            preds = m.predict([features(kind, kernels[i].op, dict(kernels[i].config)) for i in idx])
            for i, v in zip(idx, preds):
                out[i] = (float(v), f"kernel table: {kind} forest on {m.n} samples")
        return out

    def predict_decomposition(self, dec, seconds: float = 0.0) -> "KernelPrediction":
        est = self.kernel_ms(dec.kernels)
        rows, missing = [], [{"name": n, "op": o, "why": "no kernel kind covers this op"} for n, o in dec.unsupported]
        for k, (ms, source) in zip(dec.kernels, est):
            rows.append({"name": k.name, "op": k.op, "kind": k.kind, "key": k.key, "ms": ms, "source": source})
            if ms is None:
                missing.append({"name": k.name, "op": k.op, "why": source})
        nodes = len(dec.kernels) + len(dec.unsupported)
        overhead = self.overhead["a"] + self.overhead["b"] * nodes
        raw = overhead + sum(r["ms"] for r in rows if r["ms"] is not None)
        c = self.correction
        return KernelPrediction(model=dec.model, device=dec.device, fingerprint=self.fingerprint,
                                input_shape=list(dec.input_shape), ms=c["a"] * raw + c["b"] * nodes + c["c"],
                                raw_ms=raw, overhead_ms=overhead, nodes=nodes, rows=rows, unpredictable=missing,
                                rules=dec.rules, correction=c, seconds=seconds)


def _spec_of(node: str, specs: list[dict]) -> dict | None:
    """The spec whose branch of a bundle a runtime node ran in (None: a node the runtime added, e.g. a reorder)."""
    from hwnas.latency.kernel_models import branch_of
    if len(specs) == 1:
        return specs[0]
    b = branch_of(node)
    return specs[b] if b is not None and b < len(specs) else None


@dataclass
class KernelPrediction:
    model: str
    device: str
    fingerprint: str
    input_shape: list
    ms: float                   # the prediction: the correction of raw_ms (a lower bound if incomplete)
    raw_ms: float               # the runtime's overhead + every predicted kernel
    overhead_ms: float
    nodes: int
    rows: list[dict]            # per kernel: name, op, kind, key, ms (None: unpredictable), source
    unpredictable: list[dict]   # name, op, why: never counted as 0 ms silently
    rules: list[str]
    correction: dict = field(default_factory=dict)
    seconds: float = 0.0        # wall time of the prediction (decomposition included)
    measured: dict | None = None

    @property
    def complete(self) -> bool:
        return not self.unpredictable

    def to_dict(self, per_kernel: bool = True) -> dict:
        d = {"model": self.model, "device": self.device, "fingerprint": self.fingerprint,
             "input_shape": self.input_shape, "predicted_ms": self.ms, "complete": self.complete,
             "kernel_sum_ms": self.raw_ms, "correction": self.correction, "overhead_ms": self.overhead_ms, "nodes": self.nodes, "unpredictable": self.unpredictable,
             "source": "kernel table (hwnas lut kernels)", "rules": self.rules, "seconds": self.seconds}
        if per_kernel:
            d["kernels"] = self.rows
        if self.measured is not None:
            d["measured"] = self.measured
        return d


def predict_latency(device, model, input_shape=None, db=None) -> KernelPrediction:
    """Predicted latency of `model` (a zoo name, .onnx file, nn.Module or `pkg.mod:factory`) on `device` (a Device
    or its name) from the device's kernel table in `db`."""
    from hwnas.latency.kernels import decompose, require_kernels
    if isinstance(device, str):
        from hwnas.latency.devices import get_device
        device = get_device(device)
    require_kernels(device, "prediction from kernels")
    t0 = time.perf_counter()
    predictor = KernelPredictor.load(device, db)
    dec = decompose(device, model, input_shape, runs=1)
    return predictor.predict_decomposition(dec, time.perf_counter() - t0)
