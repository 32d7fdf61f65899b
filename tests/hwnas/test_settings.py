"""One config object per command: its fields are the command's option names, a bad value is named as the
caller knows it (the flag in the CLI, the field in Python), and a run records the fields under those names."""
from dataclasses import fields

import pytest

from hwnas.adapt.config import AdaptConfig, saved_record
from hwnas.errors import HwnasError
from hwnas.search.config import ScaleConfig, SearchConfig
from hwnas.settings import SettingError, flag_namer
from tests.cli_helpers import assert_one_line_error, hwnas

# options a command has that are not settings of the library (they shape the command's own output or input)
CLI_ONLY = {"search": {"train_steps", "json_out"}, "scale": {"json_out"}, "adapt": {"json_out"}}
CONFIGS = {"search": SearchConfig, "scale": ScaleConfig, "adapt": AdaptConfig}


def _command(name):
    import importlib
    return importlib.import_module(f"hwnas.commands.{name}").command


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_option_is_a_setting_of_the_same_name(name):
    params = {p.name for p in _command(name).params} - {"help"} - CLI_ONLY[name]
    settings = {f.name for f in fields(CONFIGS[name])}
    assert params <= settings, f"options without a setting of their name: {sorted(params - settings)}"
    # settings without an option are the Python API's alone (objects, or the explicit grid)
    api_only = {"search": set(), "scale": {"grid"}, "adapt": {"pretrain_lr", "max_iterations"}}[name]
    assert settings - params == api_only


def test_a_bad_setting_names_the_field_in_python_and_the_flag_in_the_cli():
    with pytest.raises(SettingError) as e:
        SearchConfig(target="5ms", hard=True, w=-0.1)
    assert str(e.value).startswith("hard sets alpha=0, beta=-1: do not combine it with w, alpha or beta")
    assert e.value.named(flag_namer(_command("search"))).startswith("--hard sets alpha=0, beta=-1: do not "
                                                                      "combine it with --reward-exponent, --alpha "
                                                                      "or --beta")
    with pytest.raises(SettingError, match="^initial_step must be in"):
        AdaptConfig("tinynet", budget_ms=1.0, initial_step=1.5).check()
    with pytest.raises(SettingError, match="^budget_ms must be a positive latency"):
        AdaptConfig("tinynet", budget_ms=-1.0).check()
    with pytest.raises(SettingError, match="^phi_min must be below phi_max"):
        ScaleConfig(target=5.0, phi_min=3.0, phi_max=1.0)


def test_flag_namer_spells_options_arguments_and_negated_flags():
    name_of = flag_namer(_command("search"))
    assert name_of("top_k") == "--top-k"
    assert name_of("strategy_options") == "--strategy-option"
    assert name_of("build") == "--no-build"
    assert name_of("devices_file") == "--devices"
    assert name_of("target_ms") == "target_ms"  # not an option: left as it is
    adapt = flag_namer(_command("adapt"))
    assert adapt("model") == "MODEL" and adapt("budget_ms") == "--budget" and adapt("initial_step") == "--initial-step"


def test_the_cli_shows_flags(tmp_path):
    r = hwnas("search", "--target", "5ms", "--hard", "--w", "0.1", "--out", str(tmp_path / "s"), timeout=300)
    assert_one_line_error(r, "--hard sets alpha=0, beta=-1: do not combine it with --reward-exponent, --alpha or "
                             "--beta")  # asked as --w, the old name: told the current one
    assert not (tmp_path / "s").exists()
    r = hwnas("adapt", "mobilenet_v2", "--budget", "1ms", "--importance", "nope", "--out", str(tmp_path / "a"),
              timeout=300)
    assert_one_line_error(r, "nope")
    assert not (tmp_path / "a").exists()


def test_unknown_settings_in_python_are_refused_not_dropped():
    from hwnas.search.api import search
    with pytest.raises(HwnasError, match="search has no setting sampels"):
        search(target="5ms", sampels=3)
    with pytest.raises(HwnasError, match="not both"):
        search(SearchConfig(target="5ms"), samples=3)


def test_records_use_the_field_names_and_leave_out_where_output_goes():
    rec = SearchConfig(target="20ms", samples=7, out="/tmp/x", db="/tmp/y.db").record()
    assert rec["target_ms"] == 20.0 and rec["samples"] == 7 and rec["reward"]["mode"] == "soft"
    assert not {"out", "db", "resume", "executor"} & set(rec)
    a = AdaptConfig("tinynet", budget_ms=2.0, lr=0.02).record()
    assert a["lr"] == 0.02 and a["importance"] == "l2" and "out" not in a
    assert AdaptConfig("tinynet", budget_ms=2.0).out == "runs/adapt-tinynet-cpu"


def test_a_run_recorded_by_an_earlier_version_reads_under_todays_names():
    old = {"model": "tinynet", "budget_ms": 2.0, "initial_fraction": 0.05, "decay": 0.9, "phase": "iterate"}
    now = saved_record(old)
    assert now["initial_step"] == 0.05 and "initial_fraction" not in now
    assert now["lr"] == AdaptConfig.lr and now["importance"] == "l2"  # not recorded then: that version's value


def test_a_target_latency_is_spelled_the_same_in_every_command():
    def opts(command, name):
        return next(p for p in _command(command).params if p.name == name).opts
    for command, name in (("search", "target"), ("scale", "target"), ("adapt", "budget_ms")):
        assert {"--target", "--budget"} <= set(opts(command, name)), command


def test_a_value_with_braces_is_shown_as_it_is():
    from hwnas.rundir import check_same_config
    from hwnas.settings import literal
    e = SettingError(literal("runs/{x}") + " already holds a run; pass {}", "resume")
    assert str(e) == "runs/{x} already holds a run; pass resume"
    with pytest.raises(SettingError, match=r"cannot resume runs/\{a\}: .*seed: '\{1\}' -> 2.*another out") as e:
        check_same_config({"seed": "{1}"}, {"seed": 2}, "runs/{a}")
    assert e.value.named(lambda s: "--" + s).endswith("another --out")


def test_a_run_from_before_train_size_resumes_as_it_ran():
    """Before the deployment/training split a run trained and timed at its one input size, fine-tuned every
    proposal and distilled none: that is how it reads on resume."""
    old = {"model": "resnet50", "budget_ms": 20.0, "input_size": 64, "phase": "iterate"}
    now = saved_record(old)
    assert now["input_size"] == 64 and now["train_size"] == 64
    assert now["max_proposals"] is None and now["distill"] is False
    assert saved_record({"model": "x", "budget_ms": 1.0})["input_size"] == 32


def test_deployment_size_defaults_to_the_models_own_and_training_to_a_small_one():
    from hwnas.adapt.config import DEFAULT_INPUT_SIZE, TRAIN_SIZE
    r50 = AdaptConfig("resnet50", budget_ms=20.0)
    assert (r50.input_size, r50.train_size) == (224, TRAIN_SIZE)
    assert r50.data_args()["image_size"] == TRAIN_SIZE  # the data is at the training size
    assert AdaptConfig("inception_v3", budget_ms=20.0).input_size == 299
    own = AdaptConfig("mypkg.nets:build", budget_ms=5.0)
    assert own.input_size == DEFAULT_INPUT_SIZE
    small = AdaptConfig("resnet50", budget_ms=5.0, input_size=16)
    assert small.train_size == 16  # never trained above the deployment size by default
    rec = AdaptConfig("resnet50", budget_ms=20.0, train_size=48).record()
    assert rec["input_size"] == 224 and rec["train_size"] == 48 and rec["distill"] is True


def test_max_proposals_below_min_proposals_names_both():
    with pytest.raises(SettingError) as e:
        AdaptConfig("resnet50", budget_ms=20.0, min_proposals=4, max_proposals=2).check()
    assert str(e.value) == "max_proposals must be at least min_proposals"
    assert e.value.named(flag_namer(_command("adapt"))) == "--max-proposals must be at least --min-proposals"
