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
    rows = {row["name"]: row for row in json.loads(r.output)}
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
    names = [row["name"] for row in json.loads((tmp_path / "zoo.json").read_text())]
    assert names == ["mobilenet_v3_large", "mobilenet_v3_small"]


def test_no_match_is_a_one_line_error():
    r = hwnas("models", "resnet9000", timeout=300)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == ["Error: no model matches resnet9000; `hwnas models` lists them all"]


@pytest.mark.slow
def test_lists_every_network():
    r = hwnas("models", "--json", "-", timeout=600)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["name"] for row in rows] == zoo.list_models()
    assert all(row["params"] > 0 and row["macs"] > 0 for row in rows)
