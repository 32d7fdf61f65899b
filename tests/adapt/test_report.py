"""NetAdapt's trajectory outputs (rewritten after every iteration, so a killed run keeps them), the plot's
content, and the progress hook of an iteration's proposals."""
import json

from hwnas.adapt.proposals import Proposal, ProposalPool, ProposalResult
from hwnas.adapt.report import plot_trajectory, point_label, short_name, update_trajectory


def _row(i, group="", channels=0, new=0, ms=0.6, acc=0.9):
    """A row shaped like NetAdapt's trajectory rows (adapt/netadapt.py)."""
    return {"iteration": i, "group": group, "channels": channels, "new_channels": new, "target_ms": None if i == 0
            else ms * 0.98, "predicted_ms": ms * 0.97, "measured_ms": ms, "accuracy": acc, "params": 1000 - i,
            "macs": 5000 - i, "seconds": 1.5 * i, "proposals": 0 if i == 0 else 4}


def _state(rows, **kw):
    return {"trajectory": rows, "budget_ms": 0.3, "model": "tinynet", "device": "cpu", "original_spread_pct": 4.0,
            "phase": "iterate", **kw}


def test_short_names_keep_the_numbers_and_the_last_word():
    assert short_name("features.3.conv.0.0") == "f3.conv.0.0"
    assert short_name("layer1.0.conv1") == "l1.0.conv1"
    assert short_name("stem.0") == "stem.0"
    assert short_name("conv") == "conv"
    long = short_name("encoder.blocks.12.stage.3.depthwise_separable.pointwise", width=18)
    assert len(long) == 18 and long.startswith("…") and long.endswith("pointwise")
    assert point_label(_row(0)) == "0  start"
    assert point_label(_row(2, "features.3.conv.0.0", 96, 80)) == "2  f3.conv.0.0 96→80"


def test_trajectory_files_are_rewritten_after_each_iteration(tmp_path):
    rows = [_row(0), _row(1, "expand.0", 64, 48, ms=0.5, acc=0.88)]
    first = update_trajectory(tmp_path, _state(rows))
    png1 = (tmp_path / "trajectory.png").read_bytes()
    assert [r["iteration"] for r in json.loads((tmp_path / "trajectory.json").read_text())] == [0, 1]
    assert len((tmp_path / "trajectory.csv").read_text().splitlines()) == 1 + 2
    assert first["ticks"] == ["0  start", "1  expand.0 64→48"]

    rows = rows + [_row(2, "branch_a.0", 32, 24, ms=0.4, acc=0.87)]
    second = update_trajectory(tmp_path, _state(rows))
    assert [r["iteration"] for r in json.loads((tmp_path / "trajectory.json").read_text())] == [0, 1, 2]
    assert (tmp_path / "trajectory.csv").read_text().splitlines()[-1].startswith("2,branch_a.0,32,24,")
    png2 = (tmp_path / "trajectory.png").read_bytes()
    assert png2[:4] == b"\x89PNG" and png2 != png1
    assert second["ticks"][-1] == "2  branch_a.0 32→24"
    assert second["error_bars"] == 1  # the start, measured with its spread; the rows record none
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left beside the outputs"


def test_the_long_term_result_is_drawn_once_the_run_is_done_and_legends_lie_right_of_the_panels(tmp_path):
    rows = [_row(0), _row(1, "expand.0", 64, 48, ms=0.25, acc=0.85)]
    final = {"accuracy": 0.9, "measured_ms": 0.26, "spread_pct": 2.0}
    early = update_trajectory(tmp_path, _state(rows, final=final))  # re-iterating: the final is stale
    assert early["ticks"][-1] == "1  expand.0 64→48"
    done = update_trajectory(tmp_path, _state(rows, final=final, phase="done"))
    assert done["ticks"][-1] == "final (long-term)" and done["error_bars"] == 2
    for legend, axes in zip(done["legend_boxes"], done["axes_boxes"]):
        assert legend[0] >= axes[2], "a legend overlaps its panel"


def test_the_comparison_with_uniform_widths_gets_its_own_panel(tmp_path):
    rows = [_row(0), _row(1, "expand.0", 64, 48, ms=0.4, acc=0.85)]
    baseline = [{"measured_ms": 0.3, "accuracy": 0.8}, {"measured_ms": 0.5, "accuracy": 0.88}]
    drawn = plot_trajectory(tmp_path / "comparison.png", rows, 0.45, "tinynet: NetAdapt vs uniform width",
                            {"measured_ms": 0.39, "accuracy": 0.87}, baseline)
    assert len(drawn["axes_boxes"]) == 3 and (tmp_path / "comparison.png").stat().st_size > 0
    for legend, axes in zip(drawn["legend_boxes"], drawn["axes_boxes"]):
        assert legend[0] >= axes[2]


def _proposal(group):
    return Proposal(group=group, channels=8, new_channels=4, predicted_ms=0.1, model_in="", model_out="",
                    input_shape=(1, 3, 8, 8), data={}, short_steps=0, batch_size=1, lr=0.0, seed=0)


def _halve(p):
    return ProposalResult(p.group, p.channels, p.new_channels, p.predicted_ms, 0.5, p.model_out)


def test_proposals_report_each_result_as_it_finishes():
    seen = []
    props = [_proposal(g) for g in "abc"]
    results = ProposalPool(1, fn=_halve).map(props, on_done=lambda r: seen.append(r.group))
    assert [r.group for r in results] == ["a", "b", "c"] and seen == ["a", "b", "c"]
    assert [r.group for r in ProposalPool(1, fn=_halve).map(props[:1])] == ["a"]  # no callback: as before


def test_proposals_on_worker_processes_report_each_result_too():
    seen = []
    with ProposalPool(2, fn=_halve) as pool:
        results = pool.map([_proposal(g) for g in "abc"], on_done=lambda r: seen.append(r.group))
    assert [r.group for r in results] == ["a", "b", "c"] and sorted(seen) == ["a", "b", "c"]
