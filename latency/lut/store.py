"""The latency table store: SQLite in WAL mode, safe for several processes writing at once.

Tables
  measurements  one row per (device fingerprint, op key, counted round of the measurement protocol): the
                round's value (`median_ms`: calibrated where the device pairs runs with the reference),
                the raw p10/p90/std ms, runs, time. An op's table value is the protocol's statistic over
                its rounds (hwnas.latency.protocol.combine: their median); an op's rounds are committed
                together, when it has settled.
  networks      whole-network measurements per (fingerprint, space, arch, round), used to fit and validate
                the predictor's correction.
  corrections   the fitted per-(fingerprint, space) correction of the op sum.
  layer_tables  per-layer (NetAdapt) tables: the convs' geometry and grid step per (fingerprint, model).
  fingerprints  the full fingerprint JSON behind each key.
Rows are inserted with INSERT OR IGNORE on their primary key: a rerun or a second writer never
duplicates a row, and a row is committed the moment it is measured.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import sqlite3
import time
from pathlib import Path

from hwnas.errors import HwnasError
from hwnas.latency.protocol import LIMITS

SCHEMA = """
CREATE TABLE IF NOT EXISTS fingerprints (key TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS measurements (
    fingerprint TEXT NOT NULL, runtime TEXT NOT NULL, key TEXT NOT NULL, round INTEGER NOT NULL,
    median_ms REAL NOT NULL, p10_ms REAL, p90_ms REAL, std_ms REAL, n INTEGER NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (fingerprint, key, round));
CREATE TABLE IF NOT EXISTS networks (
    fingerprint TEXT NOT NULL, space TEXT NOT NULL, arch TEXT NOT NULL, purpose TEXT NOT NULL,
    round INTEGER NOT NULL, median_ms REAL NOT NULL, n INTEGER NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (fingerprint, space, arch, purpose, round));
CREATE TABLE IF NOT EXISTS corrections (
    fingerprint TEXT NOT NULL, space TEXT NOT NULL, json TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (fingerprint, space));
CREATE TABLE IF NOT EXISTS layer_tables (
    fingerprint TEXT NOT NULL, model_id TEXT NOT NULL, json TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (fingerprint, model_id));
"""
COLUMNS = ("fingerprint", "runtime", "key", "round", "median_ms", "p10_ms", "p90_ms", "std_ms", "n", "created_at")


def default_db_path() -> Path:
    home = os.environ.get("HWNAS_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "hwnas") / "lut.db"


def space_id(space) -> str:
    """The id under which a space's whole-network timings and fitted correction are stored: its name, input
    size and a digest of its decisions and op keys. Two configurations of one space name (`--input-size` 160
    and 224, other width choices, another class count) never share a network timing or a correction; op
    rows need no such id, their keys already carry every shape."""
    h = hashlib.sha1(repr([(d.name, tuple(d.choices)) for d in space.decisions()]).encode())
    for op in space.all_ops():
        h.update(op.key.encode() + b"\n")
    return f"{space.name}@{space.input_size}-{h.hexdigest()[:10]}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class LutStore:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else default_db_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a parent that is a file, or a folder we may not write
            raise HwnasError(f"cannot create the folder of the latency-table database {self.path}: "
                             f"{e.strerror}") from None
        if self.path.is_dir():
            raise HwnasError(f"the latency-table database {self.path} is a folder; give a file path (--db)")
        try:
            self.db = sqlite3.connect(self.path, timeout=120, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            check = self.db.execute("PRAGMA quick_check(1)").fetchone()[0]  # damaged pages: found now, not mid-build
            if check != "ok":
                raise sqlite3.DatabaseError(check)
        except sqlite3.OperationalError as e:
            if "unable to open" in str(e) or "readonly" in str(e):
                raise HwnasError(f"cannot open the latency-table database {self.path} for writing ({e}); check the "
                                 f"folder's permissions or give another --db") from None
            raise HwnasError(f"{self.path} is not a usable latency-table database ({e})") from None
        except sqlite3.DatabaseError as e:
            raise HwnasError(f"{self.path} is damaged or not a latency-table database (sqlite: {e}); move it aside "
                             f"(a new one is started in its place) or restore a copy (`hwnas lut import` reloads an "
                             f"export)") from None

    def close(self) -> None:
        self.db.close()

    # -- fingerprints -------------------------------------------------------------------------------
    def add_fingerprint(self, fingerprint: dict) -> str:
        key = fingerprint["key"]
        self.db.execute("INSERT OR IGNORE INTO fingerprints VALUES (?, ?)", (key, json.dumps(fingerprint, sort_keys=True)))
        return key

    def fingerprints(self) -> dict[str, dict]:
        return {k: json.loads(j) for k, j in self.db.execute("SELECT key, json FROM fingerprints")}

    # -- op rows ------------------------------------------------------------------------------------
    def put_latency(self, fingerprint: dict, runtime: str, key: str, lat) -> int:
        """Store every counted round of a settled measurement (hwnas.latency.protocol.Latency) of op `key`, in
        one transaction; returns the rows inserted (0 if the op was stored already)."""
        fp = self.add_fingerprint(fingerprint)
        raw, now, per = lat.raw, _now(), max(1, lat.raw.count // max(1, lat.rounds))
        rows = [(fp, runtime, key, r, v, raw.p10, raw.p90, raw.std, per, now) for r, v in enumerate(lat.segments_ms)]
        return self._insert_all("INSERT OR IGNORE INTO measurements VALUES (?,?,?,?,?,?,?,?,?,?)", rows)

    def _insert_all(self, sql: str, rows: list[tuple]) -> int:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            n = sum(self.db.execute(sql, r).rowcount for r in rows)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return n

    def keys(self, fp_key: str) -> set[str]:
        return {k for (k,) in self.db.execute("SELECT DISTINCT key FROM measurements WHERE fingerprint=?", (fp_key,))}

    def _rounds(self, fp_key: str, key: str | None = None) -> dict[str, list[float]]:
        q, args = "SELECT key, median_ms FROM measurements WHERE fingerprint=?", (fp_key,)
        if key is not None:
            q, args = q + " AND key=?", (fp_key, key)
        out: dict[str, list[float]] = {}
        for k, v in self.db.execute(q + " ORDER BY key, round", args):
            out.setdefault(k, []).append(v)
        return out

    def rounds(self, fp_key: str) -> dict[str, int]:
        """op key -> how many counted rounds are stored, for one fingerprint."""
        return dict(self.db.execute("SELECT key, COUNT(*) FROM measurements WHERE fingerprint=? GROUP BY key",
                                    (fp_key,)))

    def values(self, fp_key: str) -> dict[str, float]:
        """op key -> table value (the protocol's statistic over its rounds), for one fingerprint."""
        from hwnas.latency.protocol import combine
        return {k: combine(v) for k, v in self._rounds(fp_key).items()}

    def get(self, fp_key: str, key: str) -> dict | None:
        from hwnas.latency.protocol import combine
        rounds = self._rounds(fp_key, key).get(key)
        if not rounds:
            return None
        row = self.db.execute("SELECT MAX(p90_ms), SUM(n) FROM measurements WHERE fingerprint=? AND key=?",
                              (fp_key, key)).fetchone()
        return {"key": key, "value_ms": combine(rounds), "rounds": len(rounds), "p90_ms": row[0], "n": row[1]}

    def rows(self, fp_key: str | None = None) -> list[dict]:
        q = f"SELECT {', '.join(COLUMNS)} FROM measurements"
        args: tuple = ()
        if fp_key:
            q, args = q + " WHERE fingerprint=?", (fp_key,)
        return [dict(zip(COLUMNS, r)) for r in self.db.execute(q + " ORDER BY fingerprint, key, round", args)]

    def count(self, fp_key: str | None = None) -> int:
        if fp_key:
            return self.db.execute("SELECT COUNT(*) FROM measurements WHERE fingerprint=?", (fp_key,)).fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]

    # -- whole networks and corrections -------------------------------------------------------------------
    def put_network_latency(self, fp_key: str, space: str, arch, purpose: str, lat) -> int:
        """Every counted round of a settled whole-network measurement, in one transaction."""
        a, now, per = json.dumps(list(arch)), _now(), max(1, lat.raw.count // max(1, lat.rounds))
        rows = [(fp_key, space, a, purpose, r, v, per, now) for r, v in enumerate(lat.segments_ms)]
        return self._insert_all("INSERT OR IGNORE INTO networks VALUES (?,?,?,?,?,?,?,?)", rows)

    def networks(self, fp_key: str, space: str, purpose: str) -> dict[tuple, dict[int, float]]:
        out: dict[tuple, dict[int, float]] = {}
        for arch, rnd, med in self.db.execute("SELECT arch, round, median_ms FROM networks WHERE fingerprint=? AND "
                                              "space=? AND purpose=?", (fp_key, space, purpose)):
            out.setdefault(tuple(json.loads(arch)), {})[rnd] = med
        return out

    def put_correction(self, fp_key: str, space: str, correction: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO corrections VALUES (?,?,?,?)",
                        (fp_key, space, json.dumps(correction, sort_keys=True), _now()))

    def get_correction(self, fp_key: str, space: str) -> dict | None:
        row = self.db.execute("SELECT json FROM corrections WHERE fingerprint=? AND space=?", (fp_key, space)).fetchone()
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except ValueError:
            raise HwnasError(f"{self.path}: the correction of fingerprint {fp_key}, space {space!r} is not JSON; "
                             f"refit it with `hwnas lut build` for that device and space") from None

    def put_layer_table(self, fp_key: str, model_id: str, meta: dict) -> None:
        """The layer geometry and grid step of a per-layer (NetAdapt) table; its points are ordinary op rows."""
        self.db.execute("INSERT OR REPLACE INTO layer_tables VALUES (?,?,?,?)",
                        (fp_key, model_id, json.dumps(meta, sort_keys=True), _now()))

    def get_layer_table(self, fp_key: str, model_id: str) -> dict | None:
        row = self.db.execute("SELECT json FROM layer_tables WHERE fingerprint=? AND model_id=?",
                              (fp_key, model_id)).fetchone()
        return json.loads(row[0]) if row else None

    # -- sharing ------------------------------------------------------------------------------------
    def export(self, path: str | os.PathLike, fp_key: str | None = None) -> int:
        """Write op rows to .csv or .json (JSON also carries the fingerprints, corrections and layer tables)."""
        path = Path(path)
        rows = self.rows(fp_key)
        if path.suffix.lower() == ".csv":
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=COLUMNS)
                w.writeheader()
                w.writerows(rows)
        elif path.suffix.lower() == ".json":
            # schema hwnas.lut-export (docs/schemas/lut-export.schema.json): every part a JSON value, none a string
            # of JSON (exports before the schema held corrections and layer tables as text under "json")
            from hwnas.schemas import stamp
            fps = {k: v for k, v in self.fingerprints().items() if fp_key in (None, k)}
            corr = [{"fingerprint": fp, "space": sp, "correction": self._stored(text, f"the correction of {fp}/{sp}")}
                    for fp, sp, text in self.db.execute("SELECT fingerprint, space, json FROM corrections")
                    if fp_key in (None, fp)]
            layers = [{"fingerprint": fp, "model_id": m, "table": self._stored(text, f"the layer table of {fp}/{m}")}
                      for fp, m, text in self.db.execute("SELECT fingerprint, model_id, json FROM layer_tables")
                      if fp_key in (None, fp)]
            from hwnas.latency.lut.kernel_table import KernelTable
            kernels = KernelTable(self).export_part(fp_key)
            path.write_text(json.dumps(stamp("lut-export", {"fingerprints": fps, "rows": rows, "corrections": corr,
                                                            "layer_tables": layers, "kernels": kernels}), indent=1)
                            + "\n")
        else:
            raise HwnasError(f"export to .csv or .json, not {path.suffix or 'a file without extension'}")
        return len(rows)

    def _stored(self, text: str, what: str) -> dict:
        try:
            return json.loads(text)
        except ValueError:
            raise HwnasError(f"{self.path}: {what} is not JSON; nothing was exported") from None

    def import_(self, path: str | os.PathLike, expect_fingerprint: str | None = None, allow_mixed: bool = False,
                fingerprint: dict | None = None) -> int:
        """Read rows exported elsewhere. With `expect_fingerprint`, rows of another fingerprint are refused
        unless `allow_mixed` (then they are stored under `fingerprint`, the local device's, on purpose).
        Every row and correction is checked first (latencies finite and positive, known columns, corrections
        with finite a, b, c): a bad file is refused whole, naming its first bad entry, and nothing is written.
        JSON: the current format (schema hwnas.lut-export/1: corrections and layer tables as objects) and the one
        before it (no schema; each correction and layer table as a string of JSON under "json") are both read."""
        path = Path(path)
        if not path.is_file():
            raise HwnasError(f"{path} does not exist")
        fps: dict = {}
        kernels: dict = {}
        corrections: list = []
        layer_tables: list = []
        try:
            if path.suffix.lower() == ".csv":
                with open(path, newline="") as f:
                    reader = csv.DictReader(f)
                    rows = list(reader)
                missing = [c for c in REQUIRED if rows and c not in (reader.fieldnames or [])]
                if missing:
                    raise HwnasError(f"{path} is not a latency table export: columns {', '.join(missing)} are "
                                     f"missing")
            elif path.suffix.lower() == ".json":
                data = json.loads(path.read_text())
                _check_schema(path, data)
                rows, fps, corrections = data["rows"], data.get("fingerprints", {}), data.get("corrections", [])
                layer_tables = data.get("layer_tables", [])
                kernels = data.get("kernels", {})
            else:
                raise HwnasError(f"import a .csv or .json export, not {path.suffix or 'a file without extension'}")
        except (ValueError, KeyError, TypeError, AttributeError, csv.Error) as e:
            raise HwnasError(f"{path} is not a latency table export ({type(e).__name__}: {e})") from None
        for name, part in (("rows", rows), ("corrections", corrections), ("layer_tables", layer_tables)):
            if not isinstance(part, list):
                raise HwnasError(f"{path} is not a latency table export: {name} is not a list")
        if not isinstance(fps, dict) or not all(isinstance(v, dict) for v in fps.values()):
            raise HwnasError(f"{path} is not a latency table export: fingerprints is not an object of objects")
        checked = [_checked(path, f"row {i}", r, _row) for i, r in enumerate(rows, 1)]
        corrections = [_checked(path, f"correction {i}", c, _correction) for i, c in enumerate(corrections, 1)]
        layer_tables = [_checked(path, f"layer table {i}", t, _layer_table) for i, t in enumerate(layer_tables, 1)]
        foreign = sorted({r[0] for r in checked} - ({expect_fingerprint} if expect_fingerprint else set()))
        if expect_fingerprint and foreign and not allow_mixed:
            raise HwnasError(f"{path} holds rows measured on fingerprint {', '.join(foreign)}, not this device's "
                             f"{expect_fingerprint}; refusing to mix them (pass --allow-mixed to store them as this "
                             f"device's anyway)")
        from hwnas.latency.lut.kernel_table import KernelTable, import_statements
        kernel_fps = {str(m.get("fingerprint")) for m in kernels.get("models", []) if isinstance(m, dict)} \
            if isinstance(kernels, dict) else set()
        if expect_fingerprint and kernel_fps - {expect_fingerprint} and not allow_mixed:
            raise HwnasError(f"{path} holds kernel models measured on fingerprint "
                             f"{', '.join(sorted(kernel_fps - {expect_fingerprint}))}, not this device's "
                             f"{expect_fingerprint}; refusing to mix them (pass --allow-mixed to store them as this "
                             f"device's anyway)")
        mine = expect_fingerprint if (expect_fingerprint and allow_mixed) else None
        kernel_sql = import_statements(kernels, str(path), mine) if kernels else []
        if kernel_sql:
            KernelTable(self)  # its tables exist before the transaction
        inserted = 0
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for k, fp in fps.items():
                self.db.execute("INSERT OR IGNORE INTO fingerprints VALUES (?, ?)", (k, json.dumps(fp, sort_keys=True)))
            if expect_fingerprint and fingerprint:
                self.db.execute("INSERT OR IGNORE INTO fingerprints VALUES (?, ?)",
                                (expect_fingerprint, json.dumps(fingerprint, sort_keys=True)))
            for r in checked:
                cur = self.db.execute("INSERT OR IGNORE INTO measurements VALUES (?,?,?,?,?,?,?,?,?,?)",
                                      (mine or r[0], *r[1:]))
                inserted += cur.rowcount
            for fp, sp, text in corrections:
                self.db.execute("INSERT OR IGNORE INTO corrections VALUES (?,?,?,?)", (mine or fp, sp, text, _now()))
            for fp, model_id, text in layer_tables:
                self.db.execute("INSERT OR IGNORE INTO layer_tables VALUES (?,?,?,?)",
                                (mine or fp, model_id, text, _now()))
            for sql, args in kernel_sql:
                n = self.db.execute(sql, args).rowcount
                inserted += n if "kernel_models" in sql else 0  # a kernel model counts as a row; its kernels do not
            self.db.execute("COMMIT")
        except Exception:
            self.db.execute("ROLLBACK")
            raise
        return inserted


# -- checking what an import reads ----------------------------------------------------------------------------
REQUIRED = ("fingerprint", "runtime", "key", "median_ms")
MAX_RUNS = 10 ** 9  # timed runs behind one round


def _checked(path: Path, where: str, item, check):
    """`check(item)`, or the one-line refusal of the whole file naming `where` (e.g. "row 17 (op 'x')")."""
    try:
        return check(item)
    except ValueError as e:
        raise HwnasError(f"{path}: {where}{_label(item)}: {e}; nothing was imported") from None


def _label(item) -> str:
    if isinstance(item, dict):
        for k, what in (("key", "op"), ("space", "space"), ("model_id", "model")):
            if isinstance(item.get(k), str):
                return f" ({what} {item[k][:200]!r})"
    return ""


def _text(d: dict, k: str) -> str:
    v = d.get(k)
    if v is None or v == "":
        raise ValueError(f"{k} is missing")
    if not isinstance(v, str):
        raise ValueError(f"{k} is {_show(v)}, not text")
    return v


def _show(v) -> str:
    """A value as a message shows it: at most 40 characters."""
    s = str(v).strip()
    return s if len(s) <= 40 else s[:37] + "..."


def _ms(d: dict, k: str, required: bool = False) -> float | None:
    """A latency column: finite and positive (p10/p90/std: finite and not negative); absent only if optional."""
    v = d.get(k)
    if v is None or v == "":
        if required:
            raise ValueError(f"{k} is missing")
        return None
    try:
        if isinstance(v, bool):
            raise TypeError
        x = float(v)
    except OverflowError:  # an integer beyond any float
        x = math.inf
    except (TypeError, ValueError):
        raise ValueError(f"{k} is {_show(v)!r}, not a number") from None
    if not math.isfinite(x) or x < 0 or (required and x == 0):
        raise ValueError(f"{k} is {_show(v)}; latencies must be finite and "
                         f"{'positive' if required else 'not negative'}")
    return x


def _whole(d: dict, k: str, hi: int) -> int:
    """A count column (round, n): a whole number from 0 to `hi`; absent is 0."""
    v = d.get(k)
    if v is None or v == "":
        return 0
    try:
        if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
            raise ValueError
        x = int(v.strip()) if isinstance(v, str) else int(v)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{k} is {_show(v)!r}, not a whole number") from None
    if not 0 <= x <= hi:
        raise ValueError(f"{k} is {_show(v)}; it must be a whole number from 0 to {hi}")
    return x


def _row(r) -> tuple:
    """An exported op row as the measurements table's values; ValueError saying what is wrong."""
    if not isinstance(r, dict):
        raise ValueError(f"is {type(r).__name__}, not an object with {', '.join(REQUIRED)}")
    unknown = [k for k in r if k not in COLUMNS]
    if unknown:
        raise ValueError(f"has the unknown column {_show(unknown[0])!r} (known: {', '.join(COLUMNS)})")
    created = r.get("created_at") or _now()
    if not isinstance(created, str):
        raise ValueError(f"created_at is {_show(created)}, not a time stamp")
    return (_text(r, "fingerprint"), _text(r, "runtime"), _text(r, "key"), _whole(r, "round", LIMITS["rounds"] - 1),
            _ms(r, "median_ms", required=True), _ms(r, "p10_ms"), _ms(r, "p90_ms"), _ms(r, "std_ms"),
            _whole(r, "n", MAX_RUNS), created)


def _check_schema(path: Path, data) -> None:
    """A JSON export names its schema (hwnas.lut-export/<n>); one without is the format before schemas."""
    from hwnas.schemas import SCHEMA_VERSIONS, parse
    if not isinstance(data, dict) or "schema" not in data:
        return
    got, mine = parse(data["schema"]), SCHEMA_VERSIONS["lut-export"]
    if got is None or got[0] != "lut-export":
        raise HwnasError(f"{path} is not a latency table export: its schema is {_show(data['schema'])!r}, not "
                         f"hwnas.lut-export/{mine}")
    if got[1] > mine:
        raise HwnasError(f"{path} is a latency table export of a newer hwnas (schema hwnas.lut-export/{got[1]}; this "
                         f"one reads up to /{mine}); upgrade hwnas to import it")


def _part(d: dict, k: str, what: str) -> dict:
    """The object under `k` (this format), or the string of JSON under "json" (exports before schemas)."""
    if k not in d:
        return _json_object(d, "json")
    if not isinstance(d[k], dict):
        raise ValueError(f"{k} is {type(d[k]).__name__}, not an object ({what})")
    return d[k]


def _json_object(d: dict, k: str) -> dict:
    text = _text(d, k)
    try:
        v = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{k} is not valid JSON ({e})") from None
    if not isinstance(v, dict):
        raise ValueError(f"{k} is a JSON {type(v).__name__}, not an object")
    return v


def _correction(c) -> tuple[str, str, str]:
    """An exported correction as the corrections table's values (its JSON text as put_correction stores it)."""
    from hwnas.latency.predict import correction_problem
    if not isinstance(c, dict):
        raise ValueError(f"is {type(c).__name__}, not an object with fingerprint, space and correction")
    value = _part(c, "correction", "a correction")
    why = correction_problem(value)
    if why is not None:
        raise ValueError(f"not usable: {why}" if "correction" in c else f"json is not a usable correction: {why}")
    return _text(c, "fingerprint"), _text(c, "space"), json.dumps(value, sort_keys=True)


def _layer_table(t) -> tuple[str, str, str]:
    if not isinstance(t, dict):
        raise ValueError(f"is {type(t).__name__}, not an object with fingerprint, model_id and table")
    value = _part(t, "table", "a layer table")
    return _text(t, "fingerprint"), _text(t, "model_id"), json.dumps(value, sort_keys=True)
