"""`hwnas models`: the zoo listed with measured params/MACs next to the paper figures."""
import json

import pytest
from click.testing import CliRunner

import hwnas.models as zoo
from hwnas.cli import cli
from tests.cli_helpers import hwnas


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_json_rows_are_measured():
    r = run("models", "resnet18", "mobilenet_v2", "lenet5", "--json", "-")
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.output)["items"]}
    assert set(rows) == {"resnet18", "mobilenet_v2", "lenet5"}
    for name, row in rows.items():
        assert {"name", "params", "macs", "input_size", "paper_params", "paper_macs"} <= set(row)
        info = zoo.get_info(name)
        s = zoo.stats(zoo.create(name), (1, 3, info.input_size, info.input_size))
        assert (row["params"], row["macs"], row["input_size"]) == (s["params"], s["macs"], info.input_size)
    assert rows["mobilenet_v2"]["paper_macs"] == 300e6 and rows["lenet5"]["paper_params"] is None


def test_table_and_json_file(tmp_path):
    r = run("models", "mobilenet_v3*", "--json", str(tmp_path / "zoo.json"))
    assert r.exit_code == 0
    assert "mobilenet_v3_large" in r.output and "mobilenet_v3_small" in r.output
    names = [row["name"] for row in json.loads((tmp_path / "zoo.json").read_text())["items"]]
    assert names == ["mobilenet_v3_large", "mobilenet_v3_small"]


def test_no_match_is_a_one_line_error():
    r = hwnas("models", "resnet9000", timeout=300)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == ["Error: no model matches resnet9000; `hwnas models` lists them all"]


@pytest.mark.slow
def test_lists_every_network():
    r = hwnas("models", "--json", "-", timeout=600)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["items"]
    assert [row["name"] for row in rows] == zoo.list_models()
    assert all(row["params"] > 0 and row["macs"] > 0 for row in rows)


def _rows(output):
    data = json.loads(output)
    if isinstance(data, dict):  # stamped with a schema: the list is its items
        data = data["items"]
    return {row["name"]: row for row in data}


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HWNAS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_counts_are_cached_and_served_from_the_cache(cache_root):
    from hwnas import counts
    true = zoo.stats(zoo.create("lenet5"), (1, 3, 32, 32))
    assert _rows(run("models", "lenet5", "--json", "-").output)["lenet5"]["params"] == true["params"]
    path = cache_root / "counts" / "lenet5-3x32x32.json"
    assert path == counts.entry_path("lenet5", (1, 3, 32, 32)) and path.is_file()
    saved = json.loads(path.read_text())
    assert saved["key"]["source_hash"] == counts.source_hash("lenet5") and saved["counts"] == true
    # the second call reads the entry: a figure planted in it (under the right key) is what it shows
    saved["counts"]["params"] = 7
    path.write_text(json.dumps(saved))
    assert _rows(run("models", "lenet5", "--json", "-").output)["lenet5"]["params"] == 7


def test_a_stale_entry_is_recomputed_never_shown(cache_root, monkeypatch):
    from hwnas import counts
    true = zoo.stats(zoo.create("lenet5"), (1, 3, 32, 32))
    run("models", "lenet5", "--json", "-")
    path = counts.entry_path("lenet5", (1, 3, 32, 32))
    saved = json.loads(path.read_text())
    saved["counts"]["params"] = 7
    path.write_text(json.dumps(saved))
    # the model's source changed since the entry was written
    monkeypatch.setattr(counts, "source_hash", lambda name: "changed-source")
    assert _rows(run("models", "lenet5", "--json", "-").output)["lenet5"]["params"] == true["params"]
    saved = json.loads(path.read_text())
    assert saved["key"]["source_hash"] == "changed-source" and saved["counts"] == true


def test_the_source_hash_follows_the_files(tmp_path, monkeypatch):
    """A model module's hash covers its own file and the hwnas.models modules it imports; editing it changes."""
    from hwnas import counts
    mod = tmp_path / "my_models_for_hash.py"
    mod.write_text("from hwnas.models.layers import conv_bn\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    files = {p.name for p in counts.source_files("my_models_for_hash")}
    assert files == {"my_models_for_hash.py", "layers.py", "stats.py"}
    before = counts.module_hash("my_models_for_hash")
    mod.write_text("from hwnas.models.layers import conv_bn  # edited\n")
    assert counts.module_hash("my_models_for_hash") != before
    assert counts.module_hash("no_such_module_anywhere") is None
    assert {p.name for p in counts.source_files("hwnas.models.senet")} >= {"senet.py", "resnet.py", "layers.py"}
