"""Kernel tables: kernel configurations timed on a device, the samples behind hwnas.latency.kernel_predict.

    rep = build_kernels(get_device("cpu"), db_path, samples=1200, adaptive_rounds=2)

A build is rounds of kernel configurations (hwnas.latency.kernel_models). Round 0 is the initial plan: chains of
tiny nodes (the runtime's cost per run and per node) and `samples` configurations spread over the target kinds by
SHARES. Each later round is planned from the regressors fitted on what is stored: where their out-of-bag error
is above `error_bound`, new configurations near the worst ones (adaptive sampling, as nn-Meter does). A round's
plan is stored before any of it is measured, so a rerun measures the same models.

A round's configurations are measured in bundles (kernel_models.bundles: consecutive configurations, each in a
branch of one model, about 8 ms of work, as long as a network's run), each bundle with the one protocol
(hwnas.latency.protocol, op settings: interleaved, calibrated rounds, in chunks), then run a few times under the
runtime's profiler, which tells the kernels it really ran (fusions and layout decided by the runtime:
hwnas.latency.kernels) and each one's share of the time. The bundle's measured latency, its profiled node times
and every kernel found are committed in one transaction keyed (fingerprint, bundle): a kill loses at most the
unsettled bundles of the chunk in flight, and a rerun skips every stored bundle and never stores one twice. What
the runtime fused is recorded as the table's rules.

On a LiteRT device (no per-node profiler here) each model is instead identical copies of one configuration's
TFLite operator (hwnas.latency.tflite_kernels), so a kernel's share of its model is exactly one over the copies.

Stored raw, turned into kernel latencies when a predictor is fitted (hwnas.latency.kernel_predict): a kernel's
latency is its share of its bundle's measured latency after the runtime's per-run and per-node cost.

Tables (in the latency-table database, beside the op rows)
  kernel_plan     (fingerprint, round, spec): the configurations a round measures, planned before it starts
  kernel_models   (fingerprint, spec = the bundle's key): a measured bundle: its specs, latency (statistic,
                  rounds), node count, the profiled sum of its nodes and profiled run time
  kernel_samples  (fingerprint, spec, node): each kernel the runtime ran in it: kind, op, key, configuration and
                  profiled time
  kernel_rules    (fingerprint, rule): fusions the runtime showed
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency.kernel_models import OVERHEAD_NODES, SHARES, build_bundle, bundle_key, bundles, near, \
    overhead_spec, sample_spec, spec_key
from hwnas.latency.lut.store import LutStore, _now
from hwnas.latency.protocol import OP, Protocol
from hwnas.progress import log as _log
from hwnas.progress import progress

SCHEMA = """
CREATE TABLE IF NOT EXISTS kernel_plan (
    fingerprint TEXT NOT NULL, round INTEGER NOT NULL, spec TEXT NOT NULL, json TEXT NOT NULL,
    PRIMARY KEY (fingerprint, round, spec));
CREATE TABLE IF NOT EXISTS kernel_models (
    fingerprint TEXT NOT NULL, spec TEXT NOT NULL, round INTEGER NOT NULL, kind TEXT NOT NULL, json TEXT NOT NULL,
    ms REAL NOT NULL, statistic TEXT NOT NULL, rounds INTEGER NOT NULL, nodes INTEGER NOT NULL,
    nodes_ms REAL NOT NULL, run_ms REAL NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (fingerprint, spec));
CREATE TABLE IF NOT EXISTS kernel_samples (
    fingerprint TEXT NOT NULL, spec TEXT NOT NULL, node TEXT NOT NULL, kind TEXT NOT NULL, op TEXT NOT NULL,
    key TEXT NOT NULL, config TEXT NOT NULL, node_ms REAL NOT NULL,
    PRIMARY KEY (fingerprint, spec, node));
CREATE TABLE IF NOT EXISTS kernel_rules (
    fingerprint TEXT NOT NULL, rule TEXT NOT NULL, PRIMARY KEY (fingerprint, rule));
CREATE TABLE IF NOT EXISTS kernel_networks (
    fingerprint TEXT NOT NULL, space TEXT NOT NULL, arch TEXT NOT NULL, json TEXT NOT NULL, ms REAL,
    PRIMARY KEY (fingerprint, space, arch));
"""
NETWORK_COLUMNS = ("fingerprint", "space", "arch", "json", "ms")
FIT_PURPOSE = "kernel-fit"  # whole networks measured to fit a kernel table's correction (the networks table)
MODEL_COLUMNS = ("fingerprint", "spec", "round", "kind", "json", "ms", "statistic", "rounds", "nodes", "nodes_ms",
                 "run_ms", "created_at")
SAMPLE_COLUMNS = ("fingerprint", "spec", "node", "kind", "op", "key", "config", "node_ms")
DEFAULTS = {"samples": 1200, "adaptive_rounds": 2, "adaptive_samples": 300, "error_bound": 0.10, "seed": 0,
            "fit_networks": 24}
MIN_PER_KIND = 5    # configurations of each target kind in round 0, whatever `samples` is
PROFILED_RUNS = 5   # profiled runs per model: each kernel's share of the model's time
CHUNK = 16


@dataclass
class KernelBuildReport:
    fingerprint: str
    models: int            # models in the table after this call
    measured: int          # models measured by this call
    skipped: int           # planned models already stored
    samples: int           # kernel samples in the table
    by_kind: dict
    rules: list
    rounds: list = field(default_factory=list)  # per round: {"round", "planned", "reason"}
    seconds: float = 0.0
    statistic: str = ""
    networks: int = 0      # fit networks measured by this call
    fit_networks: int = 0  # fit networks in the table (measured)


class KernelTable:
    """The kernel tables of one latency-table database (a LutStore's SQLite file)."""

    def __init__(self, store: LutStore | str | os.PathLike | None = None):
        self.store = store if isinstance(store, LutStore) else LutStore(store)
        self.db = self.store.db
        self.db.executescript(SCHEMA)

    @property
    def path(self) -> Path:
        return self.store.path

    # -- plans ------------------------------------------------------------------------------------------
    def plan(self, fp: str, round_: int) -> list[dict]:
        rows = self.db.execute("SELECT json FROM kernel_plan WHERE fingerprint=? AND round=? ORDER BY rowid",
                               (fp, round_)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def put_plan(self, fp: str, round_: int, specs: list[dict]) -> None:
        """Store a round's plan in one transaction (all of it or none)."""
        self._write([("INSERT OR IGNORE INTO kernel_plan VALUES (?,?,?,?)",
                      (fp, round_, spec_key(s), json.dumps(s, sort_keys=True))) for s in specs])

    def planned_rounds(self, fp: str) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT round FROM kernel_plan WHERE fingerprint=? ORDER BY "
                                              "round", (fp,))]

    # -- measured models ----------------------------------------------------------------------------------
    def done(self, fp: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT spec FROM kernel_models WHERE fingerprint=?", (fp,))}

    def put_model(self, fp: str, round_: int, key: str, specs: list[dict], lat, nodes: list, kernels: list,
                  run_ms: float, rules: list[str]) -> int:
        """A measured bundle of specs (its key, its specs), its profiled nodes' kernels and the rules seen, in one
        transaction. Returns 1 if it was stored now, 0 if it was stored already."""
        nodes_ms = float(sum(n.ms for n in nodes))
        kind = "overhead" if specs[0]["kind"] == "overhead" else "bundle"
        sql = [("INSERT OR IGNORE INTO kernel_models VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (fp, key, round_, kind, json.dumps({"specs": specs}, sort_keys=True), float(lat.ms), lat.statistic,
                 int(lat.rounds), len(nodes), nodes_ms, float(run_ms), _now()))]
        sql += [("INSERT OR IGNORE INTO kernel_samples VALUES (?,?,?,?,?,?,?,?)",
                 (fp, key, k.name, k.kind, k.op, k.key, json.dumps(_plain(k.config)), float(k.ms)))
                for k in kernels]
        sql += [("INSERT OR IGNORE INTO kernel_rules VALUES (?,?)", (fp, r)) for r in rules]
        return self._write(sql)

    def _write(self, statements: list[tuple]) -> int:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            first = 0
            for i, (sql, args) in enumerate(statements):
                n = self.db.execute(sql, args).rowcount
                first = n if i == 0 else first
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return first

    def models(self, fp: str | None = None) -> list[dict]:
        q = "SELECT * FROM kernel_models" + (" WHERE fingerprint=?" if fp else "") + " ORDER BY rowid"
        return [dict(zip(MODEL_COLUMNS, r)) for r in self.db.execute(q, (fp,) if fp else ())]

    def samples(self, fp: str | None = None) -> list[dict]:
        q = "SELECT * FROM kernel_samples" + (" WHERE fingerprint=?" if fp else "") + " ORDER BY rowid"
        return [dict(zip(SAMPLE_COLUMNS, r)) for r in self.db.execute(q, (fp,) if fp else ())]

    def rules(self, fp: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT rule FROM kernel_rules WHERE fingerprint=? ORDER BY rule", (fp,))]

    def fingerprints(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT fingerprint FROM kernel_models")]

    def count(self, fp: str) -> tuple[int, int]:
        m = self.db.execute("SELECT COUNT(*) FROM kernel_models WHERE fingerprint=?", (fp,)).fetchone()[0]
        s = self.db.execute("SELECT COUNT(*) FROM kernel_samples WHERE fingerprint=?", (fp,)).fetchone()[0]
        return m, s

    # -- fit networks -------------------------------------------------------------------------------------
    def put_network(self, fp: str, space: str, arch, decomposition: dict) -> None:
        self._write([("INSERT OR IGNORE INTO kernel_networks VALUES (?,?,?,?,NULL)",
                      (fp, space, repr(tuple(arch)), json.dumps(decomposition, sort_keys=True)))])

    def set_network_ms(self, fp: str, space: str, arch, ms: float) -> None:
        self._write([("UPDATE kernel_networks SET ms=? WHERE fingerprint=? AND space=? AND arch=?",
                      (float(ms), fp, space, repr(tuple(arch))))])

    def networks(self, fp: str | None = None, measured: bool = True) -> list[dict]:
        """The fit networks: their decomposition (kernels, unsupported ops, node count) and measured ms."""
        q = "SELECT * FROM kernel_networks" + (" WHERE fingerprint=?" if fp else "") + " ORDER BY rowid"
        rows = [dict(zip(NETWORK_COLUMNS, r)) for r in self.db.execute(q, (fp,) if fp else ())]
        return [r for r in rows if r["ms"] is not None or not measured]

    # -- sharing ------------------------------------------------------------------------------------------
    def export_part(self, fp: str | None = None) -> dict:
        """The kernel tables as a part of a JSON export (hwnas lut export)."""
        models = [{**m, "json": json.loads(m["json"])} for m in self.models(fp)]
        samples = [{**s, "config": json.loads(s["config"])} for s in self.samples(fp)]
        rules = [{"fingerprint": f, "rule": r} for f, r in self.db.execute("SELECT fingerprint, rule FROM kernel_rules")
                 if fp in (None, f)]
        networks = [{**n, "json": json.loads(n["json"])} for n in self.networks(fp)]
        return {"models": models, "samples": samples, "rules": rules, "networks": networks}


def import_statements(part, where: str, rename: str | None = None) -> list[tuple[str, tuple]]:
    """The inserts that store a JSON export's kernel part (every entry checked first: a bad one refuses the whole
    file). `rename` stores every row under that fingerprint instead (--allow-mixed). The caller runs them in its
    import's one transaction, after creating the tables (KernelTable)."""
    if not isinstance(part, dict):
        raise HwnasError(f"{where}: kernels is not an object; nothing was imported")
    models = [_checked_model(m, f"{where}: kernel model {i}") for i, m in enumerate(part.get("models", []), 1)]
    samples = [_checked_sample(s, f"{where}: kernel sample {i}") for i, s in enumerate(part.get("samples", []), 1)]
    rules = [(str(r["fingerprint"]), str(r["rule"])) for r in part.get("rules", [])
             if isinstance(r, dict) and "fingerprint" in r and "rule" in r]
    sql = [("INSERT OR IGNORE INTO kernel_models VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (rename or m[0], *m[1:]))
           for m in models]
    sql += [("INSERT OR IGNORE INTO kernel_samples VALUES (?,?,?,?,?,?,?,?)", (rename or s[0], *s[1:]))
            for s in samples]
    networks = [_checked_network(n, f"{where}: kernel fit network {i}") for i, n in enumerate(part.get("networks", []), 1)]
    sql += [("INSERT OR IGNORE INTO kernel_networks VALUES (?,?,?,?,?)", (rename or n[0], *n[1:])) for n in networks]
    return sql + [("INSERT OR IGNORE INTO kernel_rules VALUES (?,?)", (rename or f, r)) for f, r in rules]


def _plain(config) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config}


def _positive(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
        raise HwnasError(f"{what} is {v!r}, not a finite time >= 0; nothing was imported")
    return float(v)


def _checked_model(m, where: str) -> tuple:
    if not isinstance(m, dict) or not isinstance(m.get("json"), dict):
        raise HwnasError(f"{where} is not a kernel model with its spec under json; nothing was imported")
    try:
        return (str(m["fingerprint"]), str(m["spec"]), int(m["round"]), str(m["kind"]),
                json.dumps(m["json"], sort_keys=True), _positive(m["ms"], f"{where}: ms"), str(m["statistic"]),
                int(m["rounds"]), int(m["nodes"]), _positive(m["nodes_ms"], f"{where}: nodes_ms"),
                _positive(m["run_ms"], f"{where}: run_ms"), str(m.get("created_at") or _now()))
    except (KeyError, TypeError, ValueError) as e:
        raise HwnasError(f"{where}: {type(e).__name__} {e}; nothing was imported") from None


def _checked_network(n, where: str) -> tuple:
    if not isinstance(n, dict) or not isinstance(n.get("json"), dict) or not isinstance(n["json"].get("kernels"), list):
        raise HwnasError(f"{where} is not a fit network with its kernels under json; nothing was imported")
    try:
        ms = _positive(n["ms"], f"{where}: ms")
        if ms <= 0:
            raise HwnasError(f"{where}: ms is {ms}, not a positive time; nothing was imported")
        return (str(n["fingerprint"]), str(n["space"]), str(n["arch"]), json.dumps(n["json"], sort_keys=True), ms)
    except (KeyError, TypeError, ValueError) as e:
        raise HwnasError(f"{where}: {type(e).__name__} {e}; nothing was imported") from None


def _checked_sample(s, where: str) -> tuple:
    if not isinstance(s, dict) or not isinstance(s.get("config"), dict):
        raise HwnasError(f"{where} is not a kernel sample with a config object; nothing was imported")
    try:
        return (str(s["fingerprint"]), str(s["spec"]), str(s["node"]), str(s["kind"]), str(s["op"]), str(s["key"]),
                json.dumps(s["config"]), _positive(s["node_ms"], f"{where}: node_ms"))
    except (KeyError, TypeError, ValueError) as e:
        raise HwnasError(f"{where}: {type(e).__name__} {e}; nothing was imported") from None


# -- planning -----------------------------------------------------------------------------------------------
def initial_plan(samples: int, seed: int, fmt: str = "onnx") -> list[dict]:
    """Round 0: the overhead chains and `samples` configurations spread over the target kinds by the shares of the
    artifact format's models (kernel_models for onnx, tflite_kernels for tflite)."""
    rng = np.random.default_rng([seed, 0])
    shares, sampler = _sampling(fmt)
    specs = [overhead_spec(n) for n in OVERHEAD_NODES]
    total = sum(shares.values())
    for kind, share in shares.items():
        specs += [sampler(kind, rng) for _ in range(max(MIN_PER_KIND, round(samples * share / total)))]
    return _unique(specs)


def _sampling(fmt: str):
    """(shares per target kind, sampler) of the kernel models of an artifact format."""
    if fmt == "tflite":
        from hwnas.latency import tflite_kernels
        return tflite_kernels.SHARES, tflite_kernels.sample_spec
    return SHARES, sample_spec


def adaptive_plan(errors: dict[str, list[tuple[float, dict]]], n: int, seed: int, round_: int,
                  bound: float, fmt: str = "onnx") -> list[dict]:
    """Configurations near the specs whose kernels a regressor got wrong by more than `bound` (relative,
    out-of-bag), spread over kinds in proportion to their count of such specs."""
    rng = np.random.default_rng([seed, round_])
    bad = {kind: [spec for err, spec in sorted(rows, key=lambda r: -r[0]) if err > bound and spec is not None]
           for kind, rows in errors.items()}
    bad = {k: v for k, v in bad.items() if v}
    total = sum(len(v) for v in bad.values())
    specs, sampler = [], _sampling(fmt)[1]
    for kind, worst in sorted(bad.items()):
        for i in range(max(1, round(n * len(worst) / total))):
            specs.append(near(worst[i % len(worst)], rng, sampler))
    return _unique(specs)


def _unique(specs: list[dict]) -> list[dict]:
    seen, out = set(), []
    for s in specs:
        k = spec_key(s)
        if k not in seen:
            seen.add(k)
            out.append(s)
    return out


# -- building -----------------------------------------------------------------------------------------------
def model_groups(specs: list[dict], fmt: str) -> list[list[dict]]:
    """The specs of each model a round times: bundles of several on onnxruntime, one spec each on LiteRT."""
    return bundles(specs) if fmt == "onnx" else [[s] for s in specs]


def model_file(specs: list[dict], folder: Path, fmt: str = "onnx") -> Path:
    """The bundle's model file in `folder` (written once, atomically): ONNX, or for tflite the copies of its one
    spec's operator (hwnas.latency.tflite_kernels)."""
    import onnx
    if fmt == "tflite":
        from hwnas.latency.tflite_kernels import write_model
        path = folder / f"{bundle_key(specs)}.tflite"
        return path if path.exists() else write_model(specs[0], path)
    path = folder / f"{bundle_key(specs)}.onnx"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        os.close(fd)
        onnx.save(build_bundle(specs), tmp)
        os.replace(tmp, path)
    return path


def measure_round(device, table: KernelTable, round_: int, specs: list[dict], protocol: Protocol, folder: Path, *,
                  show_progress: bool = True, chunk: int = CHUNK) -> int:
    """Measure every bundle of a round's specs not yet stored; returns how many bundles were measured.

    On a LiteRT device (no per-node profiler) each model is one spec's copies (tflite_kernels): its kernels get
    equal shares, exact because they are identical; the overhead chains get none (nothing to take off per node)."""
    from hwnas.latency.kernels import runtime_kernels
    from hwnas.latency.protocol import measure_latency
    fp = device.fingerprint()["key"]
    fmt = device.artifact_format
    stored = table.done(fp)
    groups = model_groups(specs, fmt)
    todo = [b for b in groups if bundle_key(b) not in stored]
    measured = 0
    with progress(len(groups), f"kernel models, round {round_}", enabled=None if show_progress else False,
                  completed=len(groups) - len(todo)) as bar:
        for i in range(0, len(todo), chunk):
            part = {bundle_key(b): b for b in todo[i:i + chunk]}
            arts = {k: device.prepare(str(model_file(b, folder, fmt))) for k, b in part.items()}

            def settled(key, lat):
                nonlocal measured
                chain = part[key][0]["kind"] == "overhead"  # the chains time the runtime, not kernels
                nodes, kernels, _, rules = runtime_kernels(device, arts[key], PROFILED_RUNS)
                if fmt == "tflite":   # identical copies: equal shares, one sample (copies are not evidence)
                    nodes = [replace(n, ms=0.0 if chain else 1.0) for n in nodes]
                    kernels = [replace(k, ms=1.0) for k in kernels[:1]]
                run_ms = device.backend.last_profiled_run_ms or lat.ms
                kernels = [] if chain else kernels
                rules = [r for r in rules if " of " not in r]
                measured += table.put_model(fp, round_, key, part[key], lat, nodes, kernels, run_ms, rules)
                bar.advance()

            measure_latency(device, arts, protocol, on_done=settled)
    return measured


def fit_networks_step(device, table: KernelTable, space, n: int, protocol: Protocol, *, show_progress: bool = True,
                      log=_log) -> int:
    """Measure `n` networks of `space` (its own seed stream, as a table's fit networks) for the kernel table's
    correction: each decomposed on the device (its kernels stored) and measured with the protocol (exactly once,
    resumable: the networks table). Returns how many were measured now."""
    from hwnas.latency.kernels import decompose
    from hwnas.latency.lut.build import fit_archs, network_values, seeded_network, time_networks
    from hwnas.latency.lut.store import space_id
    fp, sid = device.fingerprint()["key"], space_id(space)
    archs = fit_archs(space, n)
    have = {r["arch"] for r in table.networks(fp, measured=False) if r["space"] == sid}
    shape = (1, 3, space.input_size, space.input_size)
    for arch in archs:
        if repr(tuple(arch)) not in have:
            dec = decompose(device, seeded_network(space, arch), shape, runs=1)
            d = dec.to_dict()
            table.put_network(fp, sid, arch, {"kernels": d["kernels"], "unsupported": d["unsupported"],
                                              "nodes": len(dec.kernels) + len(dec.unsupported)})
    measured = time_networks(device, space, archs, table.store, FIT_PURPOSE, protocol=protocol,
                             show_progress=show_progress, description="networks for the kernel correction")
    for arch, ms in zip(archs, network_values(table.store, device, space, archs, FIT_PURPOSE)):
        table.set_network_ms(fp, sid, arch, ms)
    return measured


def build_kernels(device, db_path=None, *, samples: int = DEFAULTS["samples"],
                  adaptive_rounds: int = DEFAULTS["adaptive_rounds"],
                  adaptive_samples: int = DEFAULTS["adaptive_samples"], error_bound: float = DEFAULTS["error_bound"],
                  seed: int = DEFAULTS["seed"], protocol: Protocol = OP, store: LutStore | None = None,
                  show_progress: bool = True, log=_log, chunk: int = CHUNK, fit_space=None,
                  fit_networks: int = DEFAULTS["fit_networks"],
                  network_protocol: Protocol | None = None) -> KernelBuildReport:
    """Build (or continue) the kernel table of `device`: round 0, then `adaptive_rounds` adaptive rounds, then
    (with `fit_space`, a search space: its own seed stream, never a network a benchmark predicts) `fit_networks`
    whole networks for the correction of the kernel sum."""
    from hwnas.cache import cache_dir
    from hwnas.latency.kernel_predict import KernelPredictor
    from hwnas.latency.protocol import statistic_of
    if isinstance(device, str):
        from hwnas.latency.devices import get_device
        device = get_device(device)
    from hwnas.latency.kernels import require_kernels
    require_kernels(device, "a kernel table")
    t0 = time.perf_counter()
    table = KernelTable(store or db_path)
    fp = table.store.add_fingerprint(device.fingerprint())  # `lut list` and exports show what measured it
    folder = cache_dir("kernels")
    statistic = statistic_of(device, protocol)
    log(f"kernel table on device {device.name!r} (fingerprint {fp}): {samples} initial configurations, "
        f"{adaptive_rounds} adaptive rounds of {adaptive_samples}, {statistic} of {protocol.min_rounds}-"
        f"{protocol.max_rounds} rounds per model, into {table.path}")
    measured = skipped = 0
    rounds = []
    for r in range(adaptive_rounds + 1):
        specs = table.plan(fp, r)
        reason = "stored plan"
        if not specs:
            if r == 0:
                specs, reason = initial_plan(samples, seed, device.artifact_format), "initial"
            else:
                fitted = KernelPredictor.fit(table, fp)
                specs = adaptive_plan(fitted.oob_errors(), adaptive_samples, seed, r, error_bound,
                                      device.artifact_format)
                reason = f"adaptive: {fitted.describe_errors(error_bound)}"
                if not specs:
                    log(f"round {r}: every kind's out-of-bag error is within ±{error_bound:.0%}; no more samples")
                    break
            table.put_plan(fp, r, specs)
        have = table.done(fp)
        groups = model_groups(specs, device.artifact_format)
        skipped += sum(bundle_key(b) in have for b in groups)
        log(f"round {r}: {len(specs)} kernel configurations in {len(groups)} models ({reason})")
        measured += measure_round(device, table, r, specs, protocol, folder, show_progress=show_progress,
                                  chunk=chunk)
        rounds.append({"round": r, "planned": len(specs), "reason": reason})
    networks = 0
    if fit_space is not None and fit_networks > 0:
        from hwnas.latency.protocol import NETWORK
        log(f"{fit_networks} networks of space {fit_space.name!r} at {fit_space.input_size}x{fit_space.input_size} "
            f"for the correction of the kernel sum")
        networks = fit_networks_step(device, table, fit_space, fit_networks, network_protocol or NETWORK,
                                     show_progress=show_progress, log=log)
    models, n_samples = table.count(fp)
    by_kind = dict(Counter(s["kind"] for s in table.samples(fp)))
    return KernelBuildReport(fp, models, measured, skipped, n_samples, by_kind, table.rules(fp), rounds,
                             time.perf_counter() - t0, statistic, networks, len(table.networks(fp)))
