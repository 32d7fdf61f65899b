"""A search space's latency table completed from the kernel predictor: the ops the table lacks predicted from their
kernels, each figure marked with where it came from.

    from hwnas.latency.space_fill import kernel_filled
    p = kernel_filled(space, "cpu")             # a LatencyPredictor, as LatencyPredictor.for_space gives
    p.sources                                   # {"ops_from_table": 2650, "ops_from_kernels": 34, "correction": ...,
                                                #  "calibration": ...}
    p.kernel_ops(arch)                          # how many of this network's ops were predicted, not timed

An op the table lacks (a space changed or grown since its table was built, an imported table of another space's
ops, or no table at all) is built as its own small model, decomposed on the device into the kernels the runtime runs
(hwnas.latency.kernels) and predicted by the device's kernel table (hwnas.latency.kernel_predict) as that model's
latency: the figure the table would hold had the op been timed. An op with a kernel the table cannot predict is an
error naming it, never 0 ms. Where the table has timed ops, up to 64 of them are predicted too and a line
timed ≈ a · predicted + c is fitted on them by least squares (measured on mnasnet at 224 on cpu: bare kernel
predictions of single ops run high, +59% for ops under 0.1 ms and -2% over 3 ms, as the kernel table's
correction is fitted on whole networks; the least squares line weighs the long ops that dominate a network's sum,
where a median ratio left the sums 12-15% low); the correction of the op sum is then the table's own (fitted on
measured networks). With no correction, or fewer than
8 timed ops, the correction is fitted on whole networks of the space (the table's fit-network stream) predicted
from their kernels, and says so. Nothing is timed.

Predictions are stored in the database beside the kernel table (table kernel_fills), keyed by the kernel table's
state (models, samples, fit networks): a rerun or a resumed search predicts nothing twice, a killed fill loses at
most the op in flight, and a kernel table that has grown since is predicted afresh.
"""
from __future__ import annotations

import json
from functools import partial

import numpy as np

from hwnas.errors import HwnasError
from hwnas.progress import log as _log
from hwnas.progress import progress

SCHEMA = """
CREATE TABLE IF NOT EXISTS kernel_fills (
    fingerprint TEXT NOT NULL, state TEXT NOT NULL, item TEXT NOT NULL, ms REAL NOT NULL, json TEXT NOT NULL,
    PRIMARY KEY (fingerprint, state, item));
"""
FIT_NETWORKS = 24  # whole networks predicted from kernels to fit the correction where the table has none
CALIBRATION = 64  # timed ops of the table also predicted from kernels, to put the predictions on the table's scale
MIN_CALIBRATION = 8  # fewer timed ops: no calibration, and the correction is fitted on kernel-predicted networks
FLOOR = 0.05  # a calibrated op is never below this share of its scaled prediction (the line's offset may be < 0)


def _state(table, fp: str) -> str:
    """The kernel table's state: predictions made from another state are not reused."""
    models, samples = table.count(fp)
    return f"models:{models}-samples:{samples}-networks:{len(table.networks(fp))}"


class _Fills:
    """Stored kernel predictions of ops and networks for one (fingerprint, kernel table state)."""

    def __init__(self, db, fp: str, state: str):
        self.db, self.fp, self.state = db, fp, state
        self.db.executescript(SCHEMA)
        self.have = {item: ms for item, ms in db.execute(
            "SELECT item, ms FROM kernel_fills WHERE fingerprint=? AND state=?", (fp, state))}

    def put(self, item: str, ms: float, detail: dict) -> None:
        self.db.execute("INSERT OR IGNORE INTO kernel_fills VALUES (?,?,?,?,?)",
                        (self.fp, self.state, item, float(ms), json.dumps(detail, sort_keys=True)))
        self.have[item] = float(ms)

    def predict_all(self, jobs: list[tuple], predictor, device, total: int, description: str,
                    show_progress: bool) -> None:
        """Predict and store each job = (item, make_model, input_shape, what), with a bar over `total` items."""
        with progress(total, description, enabled=None if show_progress else False,
                      completed=total - len(jobs)) as bar:
            for item, make, shape, what in jobs:
                self.put(item, *_predict(predictor, device, make(), shape, what))
                bar.advance()


def _calibration_sample(timed: list) -> list:
    """Up to CALIBRATION timed ops, a fixed spread of them (none when fewer than MIN_CALIBRATION are timed)."""
    if len(timed) < MIN_CALIBRATION:
        return []
    idx = np.random.default_rng(0).permutation(len(timed))[:CALIBRATION]
    return [timed[i] for i in sorted(idx)]


def _calibration(predicted: np.ndarray, timed: np.ndarray) -> tuple[float, float]:
    """(a, c) of timed ≈ a * predicted + c by least squares, which weighs the long ops that dominate a network's sum
    (measured: a median ratio fits the many short ops and left the sums 12-15% low); the ratio of the sums where
    the line's slope is not positive."""
    a, c = np.linalg.lstsq(np.stack([predicted, np.ones_like(predicted)], 1), timed, rcond=None)[0]
    if not (np.isfinite(a) and np.isfinite(c) and a > 0):
        return float(timed.sum() / predicted.sum()), 0.0
    return float(a), float(c)


def _calibrated(ms: float, calib: tuple[float, float]) -> float:
    """A kernel prediction on the table's scale, never below FLOOR of the prediction's own scaled value."""
    a, c = calib
    return max(a * ms + c, FLOOR * a * ms)


def _predict(predictor, device, model, shape, what: str) -> tuple[float, dict]:
    from hwnas.latency.kernels import decompose
    pred = predictor.predict_decomposition(decompose(device, model, shape, runs=1))
    if not pred.complete:
        ops = ", ".join(sorted({f"{u['op']} ({u['why']})" for u in pred.unpredictable}))
        raise HwnasError(f"{what} cannot be predicted from the kernel table of device {device.name!r}: {ops}; time "
                         f"the space's table instead (`hwnas lut build`) or grow the kernel table")
    return pred.ms, {"kernels": len(pred.rows), "kernel_sum_ms": pred.raw_ms}


def kernel_filled(space, device, db=None, *, fit_networks: int = FIT_NETWORKS, show_progress: bool = True,
                  log=_log):
    """The LatencyPredictor of `space` on `device` (a Device or its name) from the space's table in `db` where it
    has the op and from the device's kernel table (same database) where it does not; `.sources` says how many ops
    came from each and where the correction came from, `.kernel_ops(arch)` how many of a network's ops were
    predicted from kernels."""
    from hwnas.latency.kernel_predict import KernelPredictor
    from hwnas.latency.kernels import require_kernels
    from hwnas.latency.lut.build import fit_archs, seeded_module, seeded_network
    from hwnas.latency.lut.kernel_table import KernelTable
    from hwnas.latency.predict import LatencyPredictor, correction_problem, describe_correction, fastest_problem, \
        unusable_latency
    from hwnas.latency.lut.store import LutStore, space_id
    from hwnas.search.spaces.base import batch_of
    if isinstance(device, str):
        from hwnas.latency.devices import get_device
        device = get_device(device)
    require_kernels(device, "predicting a space's missing ops from kernels")
    table = KernelTable(LutStore(db))
    store, fp = table.store, device.fingerprint_key()
    specs = space.all_ops()
    values = store.values(fp)
    bad = unusable_latency([s.key for s in specs], values)
    if bad is not None:
        raise HwnasError(f"the latency table of device {device.name!r} in {store.path} holds {values[bad]} ms for op "
                         f"{bad!r}; latencies must be finite and positive")
    todo = [s for s in specs if s.key not in values]
    timed = [s for s in specs if s.key in values]
    corr = store.get_correction(fp, space_id(space))
    if corr is not None and correction_problem(corr) is not None:
        corr = None
    # kernel predictions are put on the scale of the timed ops by ops timed in this very table: then the table's
    # correction applies to them; with too few timed ops, the correction is fitted on kernel-predicted networks
    sample = _calibration_sample(timed) if todo else []
    if todo and not sample:
        corr = None
    predictor = KernelPredictor.load(device, table.path) if todo or corr is None else None
    fills = _Fills(store.db, fp, _state(table, fp)) if predictor is not None else None
    filled, calib = {}, (1.0, 0.0)
    if todo:
        wanted = todo + sample
        left = [s for s in wanted if s.key not in fills.have]
        log(f"{len(todo)} of {len(specs)} ops of space {space.name!r} are not in the latency table of device "
            f"{device.name!r}: predicted from its kernel table"
            + (f", calibrated on {len(sample)} timed ops" if sample else "")
            + f" ({len(wanted) - len(left)} stored already)")
        fills.predict_all([(s.key, partial(seeded_module, s, s.key), s.input_shape,
                            f"op {s.key!r} of space {space.name!r}") for s in left],
                          predictor, device, len(wanted), "ops from kernels", show_progress)
        if sample:
            calib = _calibration(np.array([fills.have[s.key] for s in sample]),
                                 np.array([values[s.key] for s in sample]))
        filled = {s.key: _calibrated(fills.have[s.key], calib) for s in todo}
    keys = [s.key for s in specs]
    p = LatencyPredictor(space, np.array([values.get(k, filled.get(k)) for k in keys]), fp)
    p.from_kernels = np.append(np.array([k in filled for k in keys]), False)
    if corr is not None:
        source = f"the table's, fitted on {corr.get('n_networks', 0)} measured networks"
    else:
        archs = fit_archs(space, fit_networks)
        shape = (batch_of(space), 3, space.input_size, space.input_size)
        item = {a: f"network:{space_id(space)}:{a!r}" for a in archs}
        left = [a for a in archs if item[a] not in fills.have]
        log(f"the latency table of space {space.name!r} has no correction: fitting one on {len(archs)} of its "
            f"networks predicted from kernels ({len(archs) - len(left)} stored already)")
        fills.predict_all([(item[a], partial(seeded_network, space, a), shape, f"network {a!r}") for a in left],
                          predictor, device, len(archs), "networks from kernels", show_progress)
        s, n = p.features(archs)
        corr = LatencyPredictor.fit_correction(s, n, [fills.have[item[a]] for a in archs],
                                               fastest=lambda c: p.min_latency(correction=c))
        source = f"fitted on {len(archs)} networks of the space predicted from kernels (none measured)"
    p.correction = dict(corr)
    why = fastest_problem(p.min_latency())
    if why is not None:
        raise HwnasError(f"the latency table of space {space.name!r} completed from kernels has an unusable "
                         f"correction ({describe_correction(corr)}): it {why}")
    p.sources = {"ops_from_table": len(specs) - len(todo), "ops_from_kernels": len(todo),
                 "kernel_ops": [s.key for s in todo], "correction": source,
                 "calibration": (f"timed ≈ {calib[0]:.4g} * kernel prediction {'-' if calib[1] < 0 else '+'} "
                                 f"{abs(calib[1]):.4g} ms (least squares over {len(sample)} timed ops of the table)"
                                 if sample else "none (too few timed ops: the kernel predictions as they are)")}
    return p
