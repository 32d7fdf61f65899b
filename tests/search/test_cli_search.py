"""`hwnas search` from the command line: clear one-line errors, and an end-to-end run on cpu."""
import json

import pytest

from tests.cli_helpers import assert_one_line_error, hwnas


def test_help_lists_the_contract_options():
    r = hwnas("search", "--help")
    assert r.returncode == 0
    for opt in ("--device", "--space", "--target", "--w", "--hard", "--strategy", "--samples", "--data",
                "--out", "--resume", "--estimator", "--seed", "--top-k", "--db"):
        assert opt in r.stdout


@pytest.mark.parametrize("args,match", [
    (["--target", "20"], "cannot read latency"),
    (["--target", "20ms", "--hard", "--w", "-0.1"], "--hard"),
    (["--target", "20ms", "--w", "0.5"], "<= 0"),
    (["--target", "20ms", "--strategy", "annealing"], "unknown search strategy"),
    (["--target", "20ms", "--estimator", "synflow", "--train-steps", "3"], "--train-steps"),
    (["--target", "20ms", "--space", "mnasnet-tiny", "--strategy", "progressive"], "needs a cell space"),
    (["--target", "20ms", "--space", "pnas", "--strategy", "progressive", "-S", "bem=3"], "no option bem"),
    (["--target", "20ms", "--space", "pnas", "-S", "beam"], "KEY=VALUE"),
    (["--target", "20ms", "--space", "pnas", "--estimator", "supernet"], "sequence of its ops"),
    (["--target", "20ms", "--missing-ops", "guess"], "--missing-ops"),
])
def test_bad_input_is_one_clear_line(args, match, tmp_path):
    assert_one_line_error(hwnas("search", "--out", str(tmp_path / "run"), *args), match)


def test_missing_ops_from_kernels_on_a_device_without_visible_kernels_is_one_clear_line(tmp_path):
    r = hwnas("search", "--out", str(tmp_path / "run"), "--db", str(tmp_path / "t.db"), "--target", "20ms",
              "--space", "mnasnet-tiny", "--device", "torch-cpu", "--missing-ops", "kernels")
    assert_one_line_error(r, "does not show the kernels it runs")


@pytest.mark.slow
def test_search_end_to_end_on_cpu_with_digits_and_resume(tmp_path):
    """Real space (mnasnet-tiny), real latency table for `cpu`, short training on digits, hard target
    between the fastest and the slowest network; then --resume with more samples."""
    pytest.importorskip("hwnas.search.spaces")
    pytest.importorskip("hwnas.data")
    from hwnas.latency.devices import get_device
    from hwnas.search.api import load_predictor
    from hwnas.search.spaces import get_space

    db = tmp_path / "lut.db"
    space = get_space("mnasnet-tiny")
    pred = load_predictor(space, get_device("cpu"), db)
    rng = __import__("numpy").random.default_rng(0)
    lats = sorted(pred.predict(space.sample(rng)) for _ in range(200))
    target = f"{lats[len(lats) // 2]:.4f}ms"   # the median random network: half the space is feasible
    out = tmp_path / "run"
    base = ["search", "--device", "cpu", "--space", "mnasnet-tiny", "--target", target, "--hard",
            "--strategy", "evolution", "--estimator", "short-train", "--train-steps", "8", "--top-k", "3",
            "--db", str(db), "--out", str(out)]
    r = hwnas(*base, "--samples", "12")
    assert r.returncode == 0, r.stderr
    for name in ("samples.jsonl", "pareto.json", "pareto.png", "summary.json", "best.onnx"):
        assert (out / name).exists(), name
    first = (out / "samples.jsonl").read_text().splitlines()
    assert len(first) == 12
    summary = json.loads((out / "summary.json").read_text())
    assert summary["estimator_is_accuracy"] and 0 < summary["best"]["accuracy"] <= 1
    assert all("measured_ms" in t and "predicted_ms" in t for t in summary["top_k"])
    assert "measured" in r.stdout and "predicted" in r.stdout
    assert_one_line_error(hwnas(*base, "--samples", "16"), "--resume")
    r = hwnas(*base, "--samples", "16", "--resume")
    assert r.returncode == 0, r.stderr
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert lines[:12] == first and [json.loads(x)["i"] for x in lines] == list(range(16))


@pytest.mark.slow
def test_progressive_search_on_the_pnas_cell_space_end_to_end(tmp_path):
    """`hwnas search --space pnas --strategy progressive`: the cell space's table is built on `cpu`, cells
    grow one block per stage, the run directory is the usual one, and the best network is exported."""
    out = tmp_path / "run"
    r = hwnas("search", "--device", "cpu", "--space", "pnas", "--strategy", "progressive", "-S", "beam=3",
              "--target", "1ms", "--samples", "9", "--estimator", "naswot", "--top-k", "2",
              "--db", str(tmp_path / "lut.db"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    for name in ("samples.jsonl", "pareto.json", "pareto.png", "summary.json", "best.onnx"):
        assert (out / name).exists(), name
    recs = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [rec["describe"]["blocks"] for rec in recs] == [1] * 3 + [2] * 3 + [3] * 3
    summary = json.loads((out / "summary.json").read_text())
    assert [s["blocks"] for s in summary["strategy_info"]["stages"]] == [1, 2, 3]
    assert all(t["measured_ms"] > 0 for t in summary["top_k"])


@pytest.mark.slow
def test_supernet_estimator_end_to_end(tmp_path):
    """`hwnas search --estimator supernet`: the supernet is trained once (cached under HWNAS_CACHE), every
    sample's accuracy is read off it, and the summary carries its Spearman check against short training."""
    import os
    out = tmp_path / "run"
    env = {**os.environ, "HWNAS_CACHE": str(tmp_path / "cache")}
    r = hwnas("search", "--device", "cpu", "--space", "mnasnet-tiny",
              "--strategy", "evolution", "-S", "population=4", "-S", "sample_size=2",
              "--estimator", "supernet", "-E", "steps=30", "-E", "validate=3", "-E", "validate_steps=5",
              "--target", "1ms", "--samples", "8", "--top-k", "2", "--db", str(tmp_path / "lut.db"),
              "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["estimator"].startswith("supernet") or "supernet" in json.dumps(summary["config"])
    info = summary["estimator_info"]
    assert "spearman" in json.dumps(info).lower()
    assert all(0 <= json.loads(x)["accuracy"] <= 1 for x in (out / "samples.jsonl").read_text().splitlines())
    assert list((tmp_path / "cache" / "supernet").glob("*.safetensors"))


@pytest.mark.slow
def test_once_for_all_search_latency_at_deployment_size_accuracy_at_train_size(tmp_path):
    """`--estimator ofa-mlp --strategy predictor-evolution --train-size 16` on mnasnet-tiny (deployed at 32): the
    supernet and the MLP work at 16x16, the table and the export at 32x32, and the run says so."""
    import os
    out = tmp_path / "run"
    env = {**os.environ, "HWNAS_CACHE": str(tmp_path / "cache")}
    r = hwnas("search", "--device", "cpu", "--space", "mnasnet-tiny", "--train-size", "16",
              "--strategy", "predictor-evolution", "-S", "population=20", "-S", "generations=5",
              "--estimator", "ofa-mlp", "-E", "steps=6", "-E", "batch_size=16", "-E", "fit=12", "-E", "hidden=16",
              "--target", "1ms", "--samples", "4", "--top-k", "2", "--db", str(tmp_path / "lut.db"),
              "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input_sizes"] == {"latency": 32, "accuracy": 16}
    assert summary["config"]["train_size"] == 16 and summary["config"]["input_size"] == 32
    assert json.loads((out / "pareto.json").read_text())["input_sizes"] == summary["input_sizes"]
    info = summary["strategy_info"]
    assert info["evaluated"] == 20 + 5 * 15 and info["architectures_per_s"] > 0
    assert summary["estimator_info"]["predictor"]["fit"] == 12
    assert summary["exported"]["input_shape"] == [1, 3, 32, 32]
    assert "supernet" in summary["exported"]["weights"]
    recs = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    rewards = [rec["reward"] for rec in recs]
    assert rewards == sorted(rewards, reverse=True)  # the evolution's best first
    cached = {tuple(c["arch"]): c["value"] for c in map(json.loads, (out / "accuracy_cache.jsonl").read_text().splitlines())}
    assert len(cached) == 4 and all(cached[tuple(rec["arch"])] == rec["accuracy"] for rec in recs)
    assert "at 16x16 (latency at 32x32)" in r.stderr + r.stdout
    # then the user's last step: the found network trained stand-alone, exported and measured
    r = hwnas("train", "--run", str(out), "--steps", "6", "--batch-size", "16", "--out", str(tmp_path / "train"),
              env=env)
    assert r.returncode == 0, r.stderr
    trained = json.loads((tmp_path / "train" / "summary.json").read_text())
    assert trained["source"] == {"space": "mnasnet-tiny", "arch": summary["best"]["arch"]}
    assert trained["train_size"] == 16 and trained["input_size"] == 32 and trained["latency_ms"] > 0


@pytest.mark.slow
def test_train_mlp_search_fits_on_short_trainings_of_train_steps(tmp_path):
    """`--estimator train-mlp --train-steps 2 --strategy predictor-evolution`: the MLP is fitted on `fit`
    architectures each trained alone for 2 steps, their values kept in the cache's predictor folder; the run's
    config and estimator info say so."""
    import os
    out = tmp_path / "run"
    env = {**os.environ, "HWNAS_CACHE": str(tmp_path / "cache")}
    r = hwnas("search", "--device", "cpu", "--space", "mnasnet-tiny", "--train-size", "16",
              "--strategy", "predictor-evolution", "-S", "population=20", "-S", "generations=3",
              "--estimator", "train-mlp", "--train-steps", "2", "-E", "batch_size=16", "-E", "fit=10",
              "-E", "hidden=8", "--target", "1ms", "--samples", "3", "--top-k", "1", "--db", str(tmp_path / "lut.db"),
              "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["estimator_options"]["steps"] == 2
    predictor = summary["estimator_info"]["predictor"]
    assert predictor["fitted_on"] == "short-train" and predictor["fit"] == 10
    (evals,) = (tmp_path / "cache" / "predictor").glob("train-mlp-*.evals.jsonl")
    rows = [json.loads(x) for x in evals.read_text().splitlines()]
    assert len(rows) == 10 and all(0 <= row["value"] <= 1 for row in rows)
