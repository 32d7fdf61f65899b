"""A `benchmark_model` stand-in for the emulated phone: REALLY times the .tflite with the local LiteRT
interpreter through hwnas.latency.measure.measure and prints TFLite benchmark_model's output format
(INFO: prefixes, p5/median/p95 fields, "Inference timings in us", op profiling tables).

LiteRT's Python API has no per-op timer, so with --enable_op_profiling=true the per-op table is an
APPROXIMATION, and says so: the measured whole-model average split over the ops in proportion to an
estimate of their work (output elements x weights per output channel).
"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from hwnas.latency.measure import Measurement, measure


def flags(argv):
    out = {}
    for a in argv:
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            out[k] = v
        elif a.startswith("--"):
            out[a[2:]] = "true"
    return out


def us(ms):
    return int(round(ms * 1000))


def stats_line(m):
    s = np.asarray(m.samples_ms) * 1000.0
    p5, med, p95 = np.percentile(s, [5, 50, 95])
    std = float(s.std()) if s.size > 1 else 0.0
    return (f"count={s.size} first={int(s[0])} curr={int(s[-1])} min={int(s.min())} max={int(s.max())} "
            f"avg={float(s.mean()):g} std={int(round(std))} p5={int(p5)} median={int(med)} p95={int(p95)}")


def op_costs(it):
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in it.get_tensor_details()}
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    rows = []
    for op in it._get_ops_details():
        outs = [i for i in op["outputs"] if i >= 0]
        ins = [i for i in op["inputs"] if i >= 0]
        out_elems = sum(int(np.prod(shapes.get(i, (1,)))) for i in outs)
        work = out_elems
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV") and len(ins) > 1:
            w = shapes.get(ins[1], (1,))
            per_out = int(np.prod(w)) // max(w[0] if op["op_name"] != "DEPTHWISE_CONV_2D" else w[-1], 1)
            work = out_elems * max(per_out, 1)
        else:
            work += sum(int(np.prod(shapes.get(i, (1,)))) for i in ins)
        label = names.get(outs[0], "") if outs else ""
        rows.append((op["op_name"], f"[{label}]:{op['index']}", max(work, 1)))
    return rows


def main(argv):
    f = flags(argv)
    root = Path(os.environ["HWNAS_FAKE_PHONE"])
    cfg = json.loads((root / "phone.json").read_text())
    graph = f.get("graph", "")
    threads = int(f.get("num_threads", "1"))
    warmup = max(int(f.get("warmup_runs", "1")), 1)
    runs = max(int(f.get("num_runs", "50")), 1)
    profiling = f.get("enable_op_profiling", "false") in ("true", "1")
    print("INFO: STARTING!")
    print("INFO: Log parameter values verbosely: [0]")
    print(f"INFO: Min num runs: [{runs}]")
    print(f"INFO: Num threads: [{threads}]")
    print(f"INFO: Min warmup runs: [{warmup}]")
    print(f"INFO: Graph: [{graph}]")
    print(f"INFO: Enable op profiling: [{int(profiling)}]")
    print(f"INFO: #threads used for CPU inference: [{threads}]")
    if not os.path.isfile(graph):
        print(f"ERROR: Could not open '{graph}'.")
        print("ERROR: Failed to mmap model " + graph)
        return 1
    if f.get("use_gpu") == "true" or f.get("use_nnapi") == "true":
        print("ERROR: Failed to apply GPU/NNAPI delegate: the emulated phone has no accelerator.")
        print("ERROR: Benchmarking failed.")
        return 1
    if cfg.get("reject_model"):
        print("ERROR: Didn't find op for builtin opcode 'CONV_2D' version '6'. An older version of this builtin "
              "might be supported. Are you using an old TFLite binary with a newer model?")
        print("ERROR: Registration failed.")
        print("ERROR: Failed to construct interpreter")
        print("ERROR: Benchmarking failed.")
        return 1
    print(f"INFO: Loaded model {graph}")
    print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    print(f"INFO: The input model file size (MB): {os.path.getsize(graph) / 2**20:g}")
    from ai_edge_litert.interpreter import Interpreter
    made = []

    def build():
        it = Interpreter(model_path=graph, num_threads=threads)
        if f.get("input_layer") and f.get("input_layer_shape"):
            by_name = {d["name"]: d["index"] for d in it.get_input_details()}
            for name, shape in zip(f["input_layer"].split(","), f["input_layer_shape"].split(":")):
                if name in by_name:
                    it.resize_tensor_input(by_name[name], [int(x) for x in shape.split(",")])
        it.allocate_tensors()
        made.append(it)

    try:
        init = measure(build, warmup=0, runs=1)  # Init: interpreter construction + allocation
    except Exception as e:  # what LiteRT says about a model it cannot run
        print(f"ERROR: {str(e).splitlines()[0]}")
        print("ERROR: Failed to construct interpreter")
        return 1
    it = made[0]
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        it.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(d["dtype"])
                      if np.issubdtype(d["dtype"], np.floating) else np.zeros(d["shape"], d["dtype"]))
    print(f"INFO: Initialized session in {init.median:.3f}ms.")
    print(f"INFO: Running benchmark for at least {warmup} iterations and at least 0 seconds but terminate if "
          f"exceeding 150 seconds.")
    w = measure(it.invoke, warmup=0, runs=warmup)
    print("INFO: " + stats_line(w))
    print()
    min_secs, max_secs = float(f.get("min_secs", "1")), float(f.get("max_secs", "150"))
    print(f"INFO: Running benchmark for at least {runs} iterations and at least {min_secs:g} seconds but terminate "
          f"if exceeding {max_secs:g} seconds.")
    # benchmark_model's rule: at least --num_runs runs and at least --min_secs, never beyond --max_secs
    samples, start = [], time.monotonic()
    while len(samples) < runs or time.monotonic() - start < min_secs:
        samples += measure(it.invoke, warmup=0, runs=1).samples_ms
        if time.monotonic() - start > max_secs:
            break
    m = Measurement.from_samples(samples)
    print("INFO: " + stats_line(m))
    print()
    print(f"INFO: Inference timings in us: Init: {us(init.median)}, First inference: {us(w.samples_ms[0])}, "
          f"Warmup (avg): {w.mean * 1000:g}, Inference (avg): {m.mean * 1000:g}")
    print("INFO: Memory footprint delta from the start of the tool (MB): init=0 overall=0 (not measured: emulated phone)")
    if profiling:
        rows = op_costs(it)
        total = sum(r[2] for r in rows)
        print("INFO: hwnas emulated phone: per-op times are APPROXIMATED (measured whole-model average split by "
              "estimated op work); LiteRT's Python API has no per-op timer.")
        print("INFO: Operator-wise Profiling Info for Regular Benchmark Runs:")
        print("============================== Run Order ==============================")
        print("\t                         [node type]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t"
              "[times called]\t[Name]")
        cdf = 0.0
        by_type = {}
        for op_type, name, work in rows:
            share = work / total
            cdf += 100 * share
            avg = m.mean * share
            by_type.setdefault(op_type, [0, 0.0])
            by_type[op_type][0] += 1
            by_type[op_type][1] += avg
            print(f"\t{op_type:>36}\t{w.samples_ms[0] * share:9.3f}\t{avg:9.3f}\t{100 * share:7.3f}%\t"
                  f"{min(cdf, 100):7.3f}%\t{0:10.3f}\t{1:9d}\t{name}")
        print()
        print(f"Number of nodes executed: {len(rows)}")
        print("============================== Summary by node type ==============================")
        print("\t                         [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t"
              "[times called]")
        cdf = 0.0
        for op_type, (n, avg) in sorted(by_type.items(), key=lambda kv: -kv[1][1]):
            pct = 100 * avg / m.mean if m.mean else 0.0
            cdf += pct
            print(f"\t{op_type:>36}\t{n:9d}\t{avg:10.3f}\t{pct:10.3f}%\t{min(cdf, 100):10.3f}%\t{0:10.3f}\t{n:9d}")
        print()
        print(f"Timings (microseconds): {stats_line(m)}")
        print("Memory (bytes): count=0")
        print(f"{len(rows)} nodes observed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
