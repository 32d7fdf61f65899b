"""Parse the output of TFLite's `benchmark_model` (the tool that times a .tflite on a phone or board).

Handles the formats seen in the wild (times are microseconds unless a column says ms):
- summary lines `count=50 first=.. curr=.. min=.. max=.. avg=.. std=..`, newer builds add
  `p5=.. median=.. p95=..`; values may be e-notation (`avg=2.95034e+06`);
- `Inference timings in us: Init: X, First inference: Y, Warmup (avg): Z, Inference (avg): W`;
- any line prefix: `INFO: `, logcat's `I tflite  : `, glog's `2018-09-10 ..: I file.cc:361] `, indentation;
- op profiling (`--enable_op_profiling=true`): "Run Order" and "Summary by node type" tables, with or
  without the `[start]` column, for the initialization block and the regular runs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from hwnas.latency.measure import Measurement

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_KV = re.compile(rf"\b(count|first|curr|min|max|avg|std|p5|median|p95)=({_NUM})")
_TIMINGS = re.compile(rf"Inference timings in us:\s*Init:\s*({_NUM}),\s*First inference:\s*({_NUM}),\s*"
                      rf"Warmup \(avg\):\s*({_NUM}),\s*Inference \(avg\):\s*({_NUM})")
_INIT_SESSION = re.compile(rf"Initialized session in\s*({_NUM})\s*ms")
_SECTION = re.compile(r"=+\s*(Run Order|Top by Computation Time|Summary by node type)\s*=+", re.I)
_HEADER_CELL = re.compile(r"\[([^\]]+)\]")


@dataclass
class RunStats:
    """One `count=...` line (µs)."""
    count: int
    first: float | None = None
    curr: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    std: float | None = None
    p5: float | None = None
    median: float | None = None
    p95: float | None = None


@dataclass
class OpRow:
    """A row of a "Run Order" table (times in ms as printed)."""
    node_type: str
    name: str
    avg_ms: float
    first_ms: float | None = None
    start_ms: float | None = None
    percent: float | None = None
    mem_kb: float | None = None
    times_called: int | None = None


@dataclass
class NodeTypeRow:
    """A row of a "Summary by node type" table."""
    node_type: str
    count: int
    avg_ms: float
    percent: float | None = None
    times_called: int | None = None


@dataclass
class BenchmarkOutput:
    runs: list[RunStats] = field(default_factory=list)  # every summary line, in order (warm-up first)
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    init_session_ms: float | None = None
    run_order: list[OpRow] = field(default_factory=list)        # regular runs
    by_node_type: list[NodeTypeRow] = field(default_factory=list)  # regular runs
    init_run_order: list[OpRow] = field(default_factory=list)   # "Profiling Info for Benchmark Initialization"

    @property
    def inference(self) -> RunStats | None:
        """The regular runs' summary: the last summary line carrying an average."""
        with_avg = [r for r in self.runs if r.avg is not None]
        return with_avg[-1] if with_avg else None

    @property
    def warmup(self) -> RunStats | None:
        with_avg = [r for r in self.runs if r.avg is not None]
        if len(with_avg) >= 2:
            return with_avg[-2]
        return self.runs[0] if self.runs and self.runs[0] is not self.inference else None

    def median_source(self) -> str:
        r = self.inference
        if r is not None and r.median is not None:
            return "median"
        return "avg"

    def to_measurement(self, warmup: int = 0) -> Measurement:
        """A Measurement in ms from the printed summary (no raw samples exist). The median is the
        printed median when the build prints one, else the average; percentiles benchmark_model does
        not print are bounded: p10 by p5 (or min), p90/p95 by p95 (or max), p99 by max."""
        r = self.inference
        if r is None:
            if self.inference_avg_us is None:
                raise ValueError("no benchmark_model timings found in the output")
            r = RunStats(count=0, avg=self.inference_avg_us)
        avg = r.avg if r.avg is not None else self.inference_avg_us
        ms = 1e-3
        med = r.median if r.median is not None else avg
        lo = r.min if r.min is not None else avg
        hi = r.max if r.max is not None else avg
        return Measurement(
            median=med * ms, mean=avg * ms, std=(r.std or 0.0) * ms, min=lo * ms, max=hi * ms,
            p10=(r.p5 if r.p5 is not None else lo) * ms,
            p90=(r.p95 if r.p95 is not None else hi) * ms,
            p95=(r.p95 if r.p95 is not None else hi) * ms,
            p99=hi * ms, count=int(r.count), warmup=warmup, samples_ms=[], stopped_by="runs")


_PREFIX = re.compile(r"^\s*(?:INFO:|WARNING:|ERROR:|[IWEV] tflite\s*:|[IWE]\d{4} [\d:.]+\s+\d+ [^\]]+\]|"
                     r"\d{4}-\d\d-\d\d [\d:.]+: [IWE] [^\]]+\])?\s*")


def _strip(line: str) -> str:
    return _PREFIX.sub("", line, count=1).rstrip()


def _float(text: str) -> float | None:
    text = text.strip().rstrip("%")
    try:
        return float(text)
    except ValueError:
        return None


def _parse_table(header: str, rows: list[str]):
    cols = [c.strip().lower() for c in _HEADER_CELL.findall(header)]
    out = []
    for row in rows:
        cells = [c.strip() for c in row.split("\t") if c.strip()]
        if len(cells) != len(cols):
            continue
        out.append(dict(zip(cols, cells)))
    return out


def parse(text: str) -> BenchmarkOutput:
    """Parse one benchmark_model run's stdout+stderr."""
    res = BenchmarkOutput()
    lines = text.replace("\r\n", "\n").split("\n")
    regular = False   # inside "Operator-wise Profiling Info for Regular Benchmark Runs"
    seen_init_block = False
    i = 0
    while i < len(lines):
        raw = lines[i]
        line = _strip(raw)
        i += 1
        if "Profiling Info for Benchmark Initialization" in line:
            seen_init_block, regular = True, False
            continue
        if "Profiling Info for Regular Benchmark Runs" in line:
            regular = True
            continue
        m = _SECTION.search(line)
        if m:
            # header on the next non-empty line, rows until a blank line
            while i < len(lines) and not _strip(lines[i]).strip():
                i += 1
            if i >= len(lines):
                break
            header = lines[i]
            i += 1
            body = []
            while i < len(lines) and _strip(lines[i]).strip():
                body.append(lines[i].split(":", 1)[1] if re.match(r"^\s*[IWE] tflite\s*:", lines[i]) else lines[i])
                i += 1
            table = _parse_table(header, body)
            kind = m.group(1).lower()
            in_regular = regular or not seen_init_block
            if kind == "run order":
                ops = [OpRow(node_type=r["node type"], name=r.get("name", ""), avg_ms=_float(r["avg ms"]) or 0.0,
                             first_ms=_float(r.get("first", "")), start_ms=_float(r.get("start", "")),
                             percent=_float(r.get("%", "")), mem_kb=_float(r.get("mem kb", "")),
                             times_called=int(_float(r.get("times called", "")) or 0))
                       for r in table if "avg ms" in r and "node type" in r]
                if in_regular:
                    res.run_order = ops
                else:
                    res.init_run_order = ops
            elif kind == "summary by node type" and in_regular:
                res.by_node_type = [NodeTypeRow(node_type=r["node type"], count=int(_float(r["count"]) or 0),
                                                avg_ms=_float(r["avg ms"]) or 0.0, percent=_float(r.get("avg %", "")),
                                                times_called=int(_float(r.get("times called", "")) or 0))
                                    for r in table if "avg ms" in r and "count" in r]
            continue
        t = _TIMINGS.search(line)
        if t:
            res.init_us, res.first_inference_us, res.warmup_avg_us, res.inference_avg_us = map(float, t.groups())
            continue
        s = _INIT_SESSION.search(line)
        if s:
            res.init_session_ms = float(s.group(1))
            continue
        if "Timings (microseconds)" in line or "Memory (bytes)" in line:
            continue  # the profiler's own summary, not the benchmark's
        kv = dict(_KV.findall(line))
        if "count" in kv and line.lstrip().startswith("count="):
            res.runs.append(RunStats(count=int(float(kv.pop("count"))), **{k: float(v) for k, v in kv.items()}))
    return res
