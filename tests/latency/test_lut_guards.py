"""What a latency table may never do: be used before its build finished, predict a latency that is not
positive, or take in impossible numbers from an import."""
import json
import shutil

import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.latency.devices import get_device
from hwnas.latency.lut import LutStore, build_lut
from hwnas.latency.lut.build import fit_archs, time_ops
from hwnas.latency.lut.store import space_id
from hwnas.latency.predict import LatencyPredictor
from hwnas.latency.validate import positive_predictions, validate
from tests.cli_helpers import assert_one_line_error, hwnas
from tests.latency.lut_helpers import fast_build, fast_protocol, micro_space
from tests.latency.test_lut import fake_fp, lat

FAST = fast_build(rounds=2, warmup=0, runs=2, show_progress=False)
RESUME = "`hwnas lut build --device cpu --space micro --input-size 16`"


@pytest.fixture(scope="module")
def timed_ops(tmp_path_factory):
    """Every op of micro_space timed on cpu, no whole network, no correction: what a build killed after its
    op rounds leaves behind."""
    db = tmp_path_factory.mktemp("ops") / "ops.db"
    store = LutStore(db)
    time_ops(get_device("cpu"), micro_space().all_ops(), store, protocol=fast_protocol(2, 2, 0), show_progress=False)
    store.close()
    return db


@pytest.fixture
def ops_db(timed_ops, tmp_path):
    db = tmp_path / "t.db"
    shutil.copy(timed_ops, db)
    return db


# -- an unfinished table ------------------------------------------------------------------------------------
def test_an_unfinished_table_is_refused_until_its_build_is_resumed(ops_db):
    space, dev = micro_space(), get_device("cpu")
    n = len(space.all_ops())
    with pytest.raises(HwnasError, match=rf"space 'micro' on device 'cpu' .* is unfinished: its {n} ops have 2 rounds "
                                         rf"each but no correction is fitted \(0 whole networks timed for it so far\); "
                                         rf"resume it with {RESUME}"):
        LatencyPredictor.for_space(space, dev, db_path=ops_db)
    with pytest.raises(HwnasError, match="is unfinished"):
        validate(space, dev, ops_db, samples=2, protocol=fast_protocol(2, 2, 0), show_progress=False)
    assert LutStore(ops_db).networks(dev.fingerprint_key(), space_id(space), "validate") == {}  # refused up front
    rep = build_lut(space, dev, ops_db, fit_networks=5, log=lambda m: None, **FAST)  # the resume
    assert rep.measured == 0 and rep.skipped == n and rep.networks == 5
    p = LatencyPredictor.for_space(space, dev, db_path=ops_db)
    assert p.correction == rep.correction and p.min_latency() > 0


# -- corrections that predict impossible latencies ----------------------------------------------------------
def test_fit_correction_falls_back_when_the_best_fit_predicts_a_non_positive_fastest_network():
    rng = np.random.default_rng(0)
    s, n = rng.uniform(5, 10, 12), rng.integers(10, 30, 12)
    y = 2.0 * s - 0.02 * n - 3.0                        # exactly affine, positive on every fitted network

    def fastest(c):                                     # the space's fastest network: 1 ms of ops, 10 ops
        return c["a"] * 1.0 + c["b"] * 10 + c["c"]     # affine: 2 - 0.2 - 3 = -1.2 ms
    assert LatencyPredictor.fit_correction(s, n, y)["model"] == "affine"
    c = LatencyPredictor.fit_correction(s, n, y, fastest=fastest)
    assert c["rejected"] == {"affine": "predicts -1.2 ms for the fastest network"}
    assert c["model"] == "scale" and c["fastest_ms"] == pytest.approx(c["a"]) and c["fastest_ms"] > 0
    assert c["loo_mean_abs_pct"]["scale"] < c["loo_mean_abs_pct"]["identity"]   # it beats the bare sum


def _table_whose_fastest_network_is_predicted_negative(db, space, dev) -> float:
    """Op rows and fit-network timings, stored as a build stores them, that an exact affine fit explains as
    3 * op sum + c, with c negative enough that the space's fastest network (built of the cheap ops no fit network
    uses) is predicted below 0 ms while every fit network stays positive. Returns c."""
    store = LutStore(db)
    fit = fit_archs(space, 8)
    used = {op.key for a in fit for op in space.ops(a)}
    for i, op in enumerate(space.all_ops()):
        v = 1.0 + 0.05 * i if op.key in used else 0.1   # unequal, so that op sums and op counts are not collinear
        store.put_latency(dev.fingerprint(), "test", op.key, lat(v, v))
    bare = LatencyPredictor.for_space(space, dev, store=store, finished=False)
    s, n = bare.features(fit)
    fastest = bare.min_latency()
    assert fastest < s.min() and np.ptp(n) > 0
    c = -1.5 * (fastest + s.min())   # 3 * s + c > 0 on every fit network, 3 * fastest + c < 0
    for a, v in zip(fit, 3 * s + c):
        store.put_network_latency(dev.fingerprint_key(), space_id(space), a, "fit", lat(v, v))
    return c


def test_a_build_rejects_a_correction_predicting_a_negative_fastest_network_and_says_so(tmp_path):
    space, dev, db = micro_space(), get_device("cpu"), tmp_path / "t.db"
    _table_whose_fastest_network_is_predicted_negative(db, space, dev)
    logs = []
    rep = build_lut(space, dev, db, fit_networks=8, log=logs.append, **FAST)
    assert rep.measured == rep.networks == 0             # the stored rows and timings were used, nothing measured
    corr = rep.correction
    assert corr["model"] in ("scale", "identity") and corr["rejected"]["affine"].startswith("predicts -")
    assert corr["loo_mean_abs_pct"]["affine"] < corr["loo_mean_abs_pct"][corr["model"]]  # it was the best fit
    assert any(m.startswith("affine rejected: predicts -") and m.endswith(f"ms for the fastest network; using "
                                                                          f"{corr['model']}") for m in logs), logs
    p = LatencyPredictor.for_space(space, dev, db_path=db)
    assert p.correction == corr and p.min_latency() == pytest.approx(corr["fastest_ms"]) and p.min_latency() > 0


def test_a_stored_correction_predicting_a_negative_fastest_network_is_refused_until_refitted(tmp_path):
    space, dev, db = micro_space(), get_device("cpu"), tmp_path / "t.db"
    c = _table_whose_fastest_network_is_predicted_negative(db, space, dev)
    store = LutStore(db)
    store.put_correction(dev.fingerprint_key(), space_id(space), {"a": 3.0, "b": 0.0, "c": c, "model": "affine",
                                                                  "n_networks": 8})
    refusal = (rf"has an unusable correction \(affine: 3 \* op sum \+ 0 ms \* ops - {abs(c):.4g} ms\): it predicts "
               rf"-[\d.]+ ms for the fastest network; refit it with {RESUME}")
    with pytest.raises(HwnasError, match=refusal):
        LatencyPredictor.for_space(space, dev, store=store)
    with pytest.raises(HwnasError, match="unusable correction"):
        validate(space, dev, store=store, samples=2, protocol=fast_protocol(2, 2, 0), show_progress=False)
    store.put_correction(dev.fingerprint_key(), space_id(space), {"a": 1.0, "b": 0.0, "c": float("nan")})
    with pytest.raises(HwnasError, match=r"has an unusable correction: its c is nan, not a finite number"):
        LatencyPredictor.for_space(space, dev, store=store)
    build_lut(space, dev, db, fit_networks=8, log=lambda m: None, **FAST)    # the refit the message asks for
    assert LatencyPredictor.for_space(space, dev, store=store).min_latency() > 0


@pytest.mark.slow
def test_search_refuses_the_probes_correction_on_a_cell_space(tmp_path):
    """The probe: pnas (no exact minimum: sampled) with the correction 2.017 * sum - 0.0205 * ops - 1.976 ms made
    `hwnas search --strategy progressive` crash on "latency must be positive"; now the table is refused up front."""
    from hwnas.search.spaces import get_space
    space, dev, db = get_space("pnas"), get_device("cpu"), tmp_path / "t.db"
    store = LutStore(db)
    for op in space.all_ops():
        store.put_latency(dev.fingerprint(), "test", op.key, lat(0.01, 0.01))
    store.put_correction(dev.fingerprint_key(), space_id(space), {"a": 2.017, "b": -0.0205, "c": -1.976,
                                                                  "model": "affine", "n_networks": 24})
    r = hwnas("search", "--space", "pnas", "--strategy", "progressive", "--target", "1ms", "--db", str(db),
              "--no-build", "--out", str(tmp_path / "run"))
    assert_one_line_error(r, "has an unusable correction (affine: 2.017 * op sum - 0.0205 ms * ops - 1.976 ms): it "
                             "predicts -2.024 ms for the fastest network; refit it with `hwnas lut build --device cpu "
                             "--space pnas --input-size 32`")


def test_validation_never_reports_or_plots_a_non_positive_prediction():
    space, dev = micro_space(), get_device("cpu")
    archs = [space.sample(np.random.default_rng(i)) for i in range(4)]
    table = np.ones(len(space.all_ops()))
    bad = LatencyPredictor(space, table, "f1", {"a": 1.0, "b": 0.0, "c": -1000.0, "model": "affine"})
    with pytest.raises(HwnasError, match=r"the correction of space 'micro' on device 'cpu' \(affine: 1 \* op sum "
                                         r"\+ 0 ms \* ops - 1000 ms\) predicts -99\d ms for network \[.*\(4 of 4 "
                                         rf"predictions are not positive\); refit it with {RESUME}"):
        positive_predictions(bad, archs, dev)
    good = positive_predictions(LatencyPredictor(space, table, "f1"), archs, dev)
    assert good.shape == (4,) and np.all(good > 0)


# -- imports ------------------------------------------------------------------------------------------------
def _export(tmp_path) -> tuple:
    """A JSON export of 10 ops x 2 rounds (row 17 is op-08's first round) with one correction."""
    src = LutStore(tmp_path / "src.db")
    for i in range(10):
        src.put_latency(fake_fp(), "ort", f"op-{i:02d}", lat(1.0 + i, 1.1 + i))
    src.put_correction("f1", "micro", {"a": 0.9, "b": 0.01, "c": 0.1, "n_networks": 3})
    path = tmp_path / "table.json"
    src.export(path)
    return path, json.loads(path.read_text())


def _set(field, value):
    def change(data):
        data["rows"][16][field] = value
    return change


def _drop(field):
    def change(data):
        del data["rows"][16][field]
    return change


def _correction(**coefficients):
    def change(data):
        data["corrections"][0]["correction"] = {"a": 0.9, "b": 0.01, "c": 0.1, **coefficients}
    return change


def _old_correction(text):
    """The format before schemas: no "schema", the correction a string of JSON under "json"."""
    def change(data):
        del data["schema"]
        c = data["corrections"][0]
        del c["correction"]
        c["json"] = text
    return change


def _correction_as(value):
    def change(data):
        data["corrections"][0]["correction"] = value
    return change


ROW17 = "row 17 (op 'op-08'): "


@pytest.mark.parametrize("change,message", [
    (_set("median_ms", -1), ROW17 + "median_ms is -1; latencies must be finite and positive"),
    (_set("median_ms", 0), ROW17 + "median_ms is 0; latencies must be finite and positive"),
    (_set("median_ms", "inf"), ROW17 + "median_ms is inf; latencies must be finite and positive"),
    (_set("median_ms", 10 ** 400), ROW17 + f"median_ms is 1{'0' * 36}...; latencies must be finite and positive"),
    (_set("median_ms", "fast"), ROW17 + "median_ms is 'fast', not a number"),
    (_set("p90_ms", -3.5), ROW17 + "p90_ms is -3.5; latencies must be finite and not negative"),
    (_set("round", 10 ** 30), ROW17 + f"round is {10 ** 30}; it must be a whole number from 0 to 999"),
    (_set("n", "many"), ROW17 + "n is 'many', not a whole number"),
    (_drop("median_ms"), ROW17 + "median_ms is missing"),
    (_set("colour", "red"), ROW17 + "has the unknown column 'colour'"),
    (_correction(a="x"), "correction 1 (space 'micro'): not usable: its a is 'x', not a number"),
    (_correction(c=float("nan")), "correction 1 (space 'micro'): not usable: its c is nan"),
    (_correction_as('{"a": 0.9}'), "correction 1 (space 'micro'): correction is str, not an object (a correction)"),
    (_old_correction(json.dumps({"a": "x", "b": 0.01, "c": 0.1})),
     "correction 1 (space 'micro'): json is not a usable correction: its a is 'x', not a number"),
    (_old_correction("{not json"), "correction 1 (space 'micro'): json is not valid JSON"),
])
def test_a_bad_import_is_refused_whole_naming_its_first_bad_entry(tmp_path, change, message):
    path, data = _export(tmp_path)
    change(data)
    path.write_text(json.dumps(data))
    dst = LutStore(tmp_path / "dst.db")
    with pytest.raises(HwnasError) as e:
        dst.import_(path)
    assert str(e.value).startswith(f"{path}: {message}") and str(e.value).endswith("; nothing was imported")
    assert dst.count() == 0 and dst.fingerprints() == {} and dst.get_correction("f1", "micro") is None


def test_a_bad_csv_import_is_refused_whole(tmp_path):
    _export(tmp_path)
    LutStore(tmp_path / "src.db").export(tmp_path / "table.csv")
    lines = (tmp_path / "table.csv").read_text().splitlines()
    header = lines[0].split(",")
    for value, why in (("1e999", "median_ms is 1e999; latencies must be finite and positive"),
                       ("-0.5", "median_ms is -0.5; latencies must be finite and positive")):
        cells = lines[3].split(",")
        cells[header.index("median_ms")] = value
        bad = tmp_path / "bad.csv"
        bad.write_text("\n".join(lines[:3] + [",".join(cells)] + lines[4:]) + "\n")
        dst = LutStore(tmp_path / "dst.db")
        with pytest.raises(HwnasError, match=rf"bad.csv: row 3 \(op 'op-01'\): {why}; nothing was imported"):
            dst.import_(bad)
        assert dst.count() == 0


def test_cli_import_of_a_bad_table_is_one_line(tmp_path):
    path, data = _export(tmp_path)
    _set("median_ms", -1)(data)
    path.write_text(json.dumps(data))
    r = hwnas("lut", "import", str(path), "--db", str(tmp_path / "dst.db"))
    assert_one_line_error(r, ROW17 + "median_ms is -1; latencies must be finite and positive; nothing was imported",
                          only_line=True)
    assert LutStore(tmp_path / "dst.db").count() == 0


def test_a_complete_export_imports_and_predicts(tmp_path):
    """A finished table shared as JSON (rows and correction) is usable where it is imported."""
    space, dev = micro_space(), get_device("cpu")
    src = tmp_path / "src.db"
    time_ops(dev, space.all_ops(), LutStore(src), protocol=fast_protocol(2, 2, 0), show_progress=False)
    LutStore(src).put_correction(dev.fingerprint_key(), space_id(space), {"a": 1.1, "b": 0.001, "c": 0.01,
                                                                          "model": "affine", "n_networks": 5})
    LutStore(src).export(tmp_path / "t.json")
    dst = LutStore(tmp_path / "dst.db")
    assert dst.import_(tmp_path / "t.json", expect_fingerprint=dev.fingerprint_key()) == 2 * len(space.all_ops())
    p = LatencyPredictor.for_space(space, dev, store=dst)
    assert p.correction["a"] == 1.1 and p.min_latency() > 0


def test_a_damaged_or_misplaced_database_is_one_line_with_the_way_out(tmp_path):
    import sqlite3

    import pytest

    from hwnas.errors import HwnasError
    from hwnas.latency.lut.store import LutStore
    (tmp_path / "garbage.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(HwnasError, match=r"garbage.db is damaged or not a latency-table database .*move it aside"):
        LutStore(tmp_path / "garbage.db")
    good = tmp_path / "good.db"
    store = LutStore(good)
    store.db.executescript("CREATE TABLE filler(x); " + "INSERT INTO filler VALUES (randomblob(3000)); " * 40)
    store.close()
    with sqlite3.connect(good) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = bytearray(good.read_bytes())
    page = 4096
    raw[page * 3: page * 6] = b"\xde\xad" * (page * 3 // 2)  # pages overwritten in the middle of the file
    good.write_bytes(bytes(raw))
    with pytest.raises(HwnasError, match=r"good.db is damaged or not a latency-table database"):
        LutStore(good)
    (tmp_path / "file").write_text("x")
    with pytest.raises(HwnasError, match=r"cannot create the folder of the latency-table database"):
        LutStore(tmp_path / "file" / "t.db")
    with pytest.raises(HwnasError, match=r"is a folder; give a file path"):
        LutStore(tmp_path)
