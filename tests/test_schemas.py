"""Every command's `--json` result is stamped with a versioned schema ("schema": "hwnas.<kind>/<n>") and validates
against docs/schemas/<kind>.schema.json; no result holds JSON inside a string; a search with a zero-cost proxy
names its value `score`. The commands run for real, at their smallest sizes (a two-block space of 22 ops)."""
import json
import os

import click
import pytest
from click.testing import CliRunner

from hwnas.cli import cli
from hwnas.schemas import SCHEMA_VERSIONS, parse, schema_id, stamp
from tests.cli_helpers import hwnas
from tests.schema_check import SCHEMAS, check, json_strings, load, problems

SPACE = "schema-micro"  # tests/latency/lut_helpers.micro_space, registered for this module only


@pytest.fixture(scope="module", autouse=True)
def home(tmp_path_factory):
    """HWNAS_HOME and HWNAS_CACHE in a temporary folder: nothing is written to the real home."""
    root = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HWNAS_HOME", str(root))
        mp.setenv("HWNAS_CACHE", str(root / "cache"))
        mp.setenv("HWNAS_NO_PROGRESS", "1")
        mp.delenv("HWNAS_CACHE_MAX", raising=False)
        yield root


@pytest.fixture(scope="module")
def micro():
    from hwnas.search.spaces import SPACES
    from tests.latency.lut_helpers import micro_space
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SPACES._items, SPACE, lambda **kw: micro_space(SPACE))
        yield SPACE


def run(*args) -> click.testing.Result:
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


def strict(text: str):
    """JSON as any parser reads it: NaN or Infinity (not JSON) is an error."""
    def refuse(name):
        raise AssertionError(f"{name} in the JSON output")
    return json.loads(text, parse_constant=refuse)


def valid(data, kind: str):
    """`data` is a stamped, schema-valid result of `kind` with no JSON inside its strings."""
    assert list(data)[0] == "schema" and data["schema"] == f"hwnas.{kind}/{SCHEMA_VERSIONS[kind]}"
    check(data, kind)
    assert problems(data, load(kind)) == []  # the small validator agrees (it stands in where jsonschema is absent)
    assert json_strings(data) == []
    return data


@pytest.fixture(scope="module")
def table(micro, tmp_path_factory):
    """A latency table of the micro space, built by `hwnas lut build --json -`; (db, the build's JSON)."""
    db = tmp_path_factory.mktemp("lut") / "t.db"
    r = run("lut", "build", "--space", micro, "--db", db, "--rounds", 2, "--runs", 2, "--warmup", 0,
            "--fit-networks", 3, "--json", "-")
    return db, strict(r.stdout)


# -- the registry of kinds ------------------------------------------------------------------------------
def _json_commands():
    """(kind, command) for every command of `hwnas` that has a --json option."""
    out = []

    def walk(cmd, words, ctx):
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), words + [name], ctx)
        elif any(p.name == "json_out" for p in cmd.params):
            out.append(("-".join(words), cmd))
    walk(cli, [], click.Context(cli))
    return out


def test_every_json_result_has_a_versioned_schema_document():
    kinds = {k for k, _ in _json_commands()}
    assert {"profile", "devices", "models", "lut-build", "lut-validate", "lut-list", "search", "scale", "adapt",
            "cache-info"} <= kinds
    # lut export writes a file, not --json; profile-devices is what profile writes for several devices
    assert kinds | {"lut-export", "profile-devices"} == set(SCHEMA_VERSIONS)
    assert {p.name[:-len(".schema.json")] for p in SCHEMAS.glob("*.schema.json")} == set(SCHEMA_VERSIONS)
    for kind in SCHEMA_VERSIONS:
        doc = load(kind)
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert doc["title"] == schema_id(kind) and doc["properties"]["schema"] == {"enum": [schema_id(kind)]}
        assert "schema" in doc["required"]
        assert f"({kind}.schema.json)" in (SCHEMAS / "README.md").read_text()
    try:
        import jsonschema
    except ImportError:
        return
    for kind in SCHEMA_VERSIONS:
        jsonschema.Draft202012Validator.check_schema(load(kind))


def test_stamp_puts_the_schema_first_and_wraps_lists():
    assert list(stamp("profile", {"model": "x", "device": "cpu"})) == ["schema", "model", "device"]
    assert stamp("devices", [{"name": "cpu"}]) == {"schema": "hwnas.devices/1", "items": [{"name": "cpu"}]}
    assert stamp("lut-list", []) == {"schema": "hwnas.lut-list/1", "items": []}
    with pytest.raises(TypeError, match="are a list"):
        stamp("models", {"name": "x"})
    with pytest.raises(TypeError, match="are an object"):
        stamp("profile", [{"model": "x"}])
    with pytest.raises(ValueError, match="already have a 'schema' key"):
        stamp("profile", {"schema": "mine"})
    with pytest.raises(KeyError, match="no JSON schema is registered for results of kind 'bogus'"):
        stamp("bogus", {})
    assert parse("hwnas.lut-export/1") == ("lut-export", 1) and parse("hwnas.lut-export/x") is None
    assert parse({"a": 1}) is None and parse("other.lut-export/1") is None


def test_the_small_validator_finds_what_is_wrong():
    """tests/schema_check.problems, used where jsonschema is not installed, must fail on bad results."""
    schema = load("search")
    assert problems({"schema": "hwnas.search/1"}, schema)  # nearly every key missing
    good = {"i": 0, "arch": [1], "latency_ms": 1.0, "reward": 0.5, "value_kind": "score", "estimator": "naswot",
            "score": 0.3}
    rec = {**schema, "$ref": "#/$defs/record"}
    assert problems(good, rec) == []
    assert problems({**good, "value_kind": "top-1"}, rec)  # top-1 without an accuracy
    assert problems({**good, "latency_ms": "1.0"}, rec) == ["$.latency_ms: str '1.0' is not number"]
    assert problems({**good, "i": True}, rec)  # a boolean is not an integer
    assert problems({"a": {"b": 1}}, {"additionalProperties": {"type": "string"}}) == [
        "$.a: dict \"{'b': 1}\" is not string"]


# -- each command, for real -------------------------------------------------------------------------------
def test_profile_json_from_the_hwnas_command(tmp_path):
    r = hwnas("profile", "--model", "lenet5", "--runs", "3", "--per-op", "--json", "-", env={**os.environ})
    assert r.returncode == 0, r.stderr
    d = valid(strict(r.stdout), "profile")
    assert d["model"] == "lenet5" and d["measured_ms"] > 0 and d["per_op"]
    out = tmp_path / "p.json"  # a file gets the same stamped JSON
    assert hwnas("profile", "--model", "lenet5", "--runs", "3", "--json", str(out), env={**os.environ}).returncode == 0
    valid(strict(out.read_text()), "profile")


def test_profile_on_several_devices_is_one_result_each(tmp_path):
    r = hwnas("profile", "--model", "lenet5", "--device", "cpu,torch-cpu", "--runs", "3", "--no-memory", "--json", "-",
              env={**os.environ})
    assert r.returncode == 0, r.stderr
    d = valid(strict(r.stdout), "profile-devices")
    assert [x["device"] for x in d["items"]] == ["cpu", "torch-cpu"] and all(x["measured_ms"] > 0 for x in d["items"])
    assert d["items"][0]["fingerprint"]["key"] != d["items"][1]["fingerprint"]["key"]
    r = hwnas("profile", "--model", "lenet5", "--device", "cpu,torch-cpu", "--runs", "3", "--no-memory",
              env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0 and "lenet5 on 2 devices" in r.stdout and "vs cpu" in r.stdout, r.stdout
    for bad, words in ((["--device", "cpu,cpu"], "several different ones"), (["--device", "cpu,nope"], "nope"),
                       (["--device", "cpu,torch-cpu", "--csv", str(tmp_path / "x.csv")], "give one --device")):
        r = hwnas("profile", "--model", "lenet5", *bad, env={**os.environ})
        assert r.returncode != 0 and words in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.stderr


def test_devices_json():
    d = valid(strict(run("devices", "--check", "--json", "-").stdout), "devices")
    rows = {row["name"]: row for row in d["items"]}
    assert rows["cpu"]["usable"] is True and rows["cpu"]["fingerprint"]["key"]


def test_models_json():
    d = valid(strict(run("models", "lenet5", "mobilenet_v2", "--json", "-").stdout), "models")
    assert [row["name"] for row in d["items"]] == ["lenet5", "mobilenet_v2"]


def test_cache_info_json(home, tmp_path):
    d = valid(strict(run("cache", "info", "--json", "-").stdout), "cache-info")
    assert d["root"] == str(home / "cache") and d["data"]["lut_db"] == str(home / "lut.db")
    run("cache", "info", "--json", tmp_path / "c.json")
    assert valid(strict((tmp_path / "c.json").read_text()), "cache-info")["root"] == d["root"]


def test_lut_build_validate_and_list_json(table, micro, tmp_path):
    db, built = table
    valid(built, "lut-build")
    assert built["ops"] == built["measured"] == 22 and built["correction"]["a"] > 0
    r = run("lut", "validate", "--space", micro, "--db", db, "--samples", 2, "--rounds", 2, "--runs", 2,
            "--plot", tmp_path / "v.png", "--json", "-")
    rep = valid(strict(r.stdout), "lut-validate")  # no table printed: stdout is the JSON alone
    assert rep["predictor"]["n"] == 2 and len(rep["networks"]) == 2
    assert rep["predictor"]["spearman"] is None  # NaN (two networks) is written as null, not as NaN
    listed = valid(strict(run("lut", "list", "--db", db, "--json", "-").stdout), "lut-list")
    assert [row["fingerprint"] for row in listed["items"]] == [built["fingerprint"]]


def test_lut_export_holds_no_json_in_strings_and_imports(table, tmp_path):
    from hwnas.latency.lut import LutStore
    db, built = table
    src = LutStore(db)
    src.put_layer_table(built["fingerprint"], "tinynet@32", {"layers": [{"name": "conv1", "out": 16}], "step": 4})
    out = tmp_path / "t.json"
    run("lut", "export", out, "--db", db)
    data = valid(json.loads(out.read_text()), "lut-export")
    assert data["corrections"] and isinstance(data["corrections"][0]["correction"], dict)
    assert data["layer_tables"][0]["table"] == {"layers": [{"name": "conv1", "out": 16}], "step": 4}
    assert isinstance(data["fingerprints"][built["fingerprint"]], dict)
    dst = LutStore(tmp_path / "new.db")
    assert dst.import_(out) == src.count()
    space = next(s for f, s in src.db.execute("SELECT fingerprint, space FROM corrections"))
    assert dst.get_correction(built["fingerprint"], space) == src.get_correction(built["fingerprint"], space)
    assert dst.get_layer_table(built["fingerprint"], "tinynet@32")["step"] == 4


def test_an_export_of_the_format_before_schemas_still_imports(table, tmp_path):
    """Old exports: no "schema", each correction and layer table a string of JSON under "json"."""
    from hwnas.latency.lut import LutStore
    db, built = table
    src, fp = LutStore(db), built["fingerprint"]
    src.export(tmp_path / "new.json")
    new = json.loads((tmp_path / "new.json").read_text())
    old = {"fingerprints": new["fingerprints"], "rows": new["rows"],
           "corrections": [{"fingerprint": c["fingerprint"], "space": c["space"], "json": json.dumps(c["correction"])}
                           for c in new["corrections"]],
           "layer_tables": [{"fingerprint": fp, "model_id": "old-net", "json": json.dumps({"step": 8})}]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    dst = LutStore(tmp_path / "dst.db")
    assert dst.import_(tmp_path / "old.json") == src.count()
    for c in new["corrections"]:
        assert dst.get_correction(c["fingerprint"], c["space"]) == c["correction"]
    assert dst.get_layer_table(fp, "old-net") == {"step": 8}
    assert dst.values(fp) == src.values(fp)


def test_lut_import_refuses_another_kind_or_a_newer_version(table, tmp_path):
    from hwnas.errors import HwnasError
    from hwnas.latency.lut import LutStore
    db, _ = table
    LutStore(db).export(tmp_path / "t.json")
    data = json.loads((tmp_path / "t.json").read_text())
    for schema, message in (("hwnas.profile/1", "its schema is 'hwnas.profile/1', not hwnas.lut-export/1"),
                            ("hwnas.lut-export/99", "of a newer hwnas (schema hwnas.lut-export/99")):
        (tmp_path / "x.json").write_text(json.dumps({**data, "schema": schema}))
        with pytest.raises(HwnasError, match=message.replace("(", r"\(")):
            LutStore(tmp_path / "dst.db").import_(tmp_path / "x.json")
    assert LutStore(tmp_path / "dst.db").count() == 0


def _records(summary: dict) -> list[dict]:
    return summary["top_k"] + [summary["best"], summary["best_by_reward_predicted"]]


def test_search_json_names_a_proxy_score_a_score_and_resumes(table, micro, tmp_path):
    db, _ = table
    out = tmp_path / "run"
    args = ["search", "--space", micro, "--db", db, "--no-build", "--target", "10ms", "--top-k", 1, "--out", out]
    r = run(*args, "--samples", 3, "--json", "-")
    s = valid(strict(r.stdout), "search")  # the table is not printed: stdout is the JSON alone
    assert (s["estimator"], s["estimator_is_accuracy"], s["value_kind"]) == ("naswot", False, "score")
    assert s["out"] == str(out) and s["samples"] == 3
    on_disk = json.loads((out / "summary.json").read_text())
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["value_kind"] == "score" and "score" in pareto["hypervolume_reference"]
    for rec in _records(s) + _records(on_disk) + pareto["front"]:
        assert "accuracy" not in rec and 0 <= rec["score"] and (rec["value_kind"], rec["estimator"]) == ("score",
                                                                                                        "naswot")
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert all("accuracy" in rec and "score" not in rec for rec in samples)  # the run's own records, as before
    # --resume reads those samples (they say "accuracy") and continues
    r = run(*args, "--samples", 4, "--resume")
    assert "naswot score" in r.stdout and "resumed" in r.output
    again = json.loads((out / "summary.json").read_text())
    assert again["samples"] == 4 and all("score" in rec for rec in _records(again))


def test_search_json_keeps_accuracy_for_an_accuracy_estimator(table, micro, tmp_path):
    db, _ = table
    r = run("search", "--space", micro, "--db", db, "--no-build", "--target", "10ms", "--samples", 2, "--top-k", 1,
            "--estimator", "short-train", "--train-steps", 2, "--out", tmp_path / "run", "--json", tmp_path / "s.json")
    assert "accuracy" in r.stdout  # with --json FILE, the table is printed too
    s = valid(strict((tmp_path / "s.json").read_text()), "search")
    assert (s["estimator_is_accuracy"], s["value_kind"]) == (True, "top-1")
    for rec in _records(s):
        assert "score" not in rec and 0 <= rec["accuracy"] <= 1 and rec["value_kind"] == "top-1"


@pytest.mark.slow
def test_scale_json(tmp_path):
    r = run("scale", "--base", "efficientnet_b0", "--target", "1000ms", "--resolution", 16, "--steps", 2,
            "--final-steps", 1, "--batch-size", 16, "--max-candidates", 2, "--phi-min", -1, "--phi-max", 1,
            "--bisect-steps", 1, "--runs", 3, "--out", tmp_path / "run", "--json", "-")
    s = valid(strict(r.stdout), "scale")
    assert s["chosen"]["phi"] == 1.0 and s["meets_target"] and s["out"] == str(tmp_path / "run")


def test_adapt_json(tmp_path):
    """A budget the start already meets: no pruning iteration, the long-term fine-tune, the summary."""
    r = run("adapt", "lenet5", "--budget", "1000ms", "--input-size", 32, "--pretrain-steps", 5, "--short-steps", 1,
            "--long-epochs", 1, "--out", tmp_path / "run", "--json", "-")
    s = valid(strict(r.stdout), "adapt")
    assert s["budget_met"] and s["iterations"] == 0 and s["model"] == "lenet5"
