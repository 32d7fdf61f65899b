"""pareto.png: the front drawn as a step, the re-measured top-k linked to their predictions, axes that name
where each latency comes from, the legend off the data."""
import pytest

from hwnas.search.pareto import estimator_label, pareto_front, plot_pareto, step_points

LAT = [1.0, 2.0, 3.0, 2.5, 1.0, 4.0]
ACC = [0.5, 0.7, 0.9, 0.6, 0.4, 0.85]
RECORDS = [{"i": i, "latency_ms": lat, "accuracy": acc} for i, (lat, acc) in enumerate(zip(LAT, ACC))]


def _measured(records, spreads):
    """Records shaped like Results.measure_top's: the predicted latency kept, the measured one beside it."""
    return [{**r, "predicted_ms": r["latency_ms"], "measured_ms": r["latency_ms"] * 1.1,
             "measured_statistic": "calibrated median", **({"measured_spread_pct": s} if s is not None else {})}
            for r, s in zip(records, spreads)]


def test_step_points_hold_each_accuracy_until_the_next_front_point():
    front = pareto_front(RECORDS)
    assert [(r["latency_ms"], r["accuracy"]) for r in front] == [(1.0, 0.5), (2.0, 0.7), (3.0, 0.9)]
    xs, ys = step_points(front, until_ms=4.0)
    assert xs == [1.0, 2.0, 2.0, 3.0, 3.0, 4.0]
    assert ys == [0.5, 0.5, 0.7, 0.7, 0.9, 0.9]
    # no extension left of the last point, and an exact duplicate adds no vertex
    dup = front[:1] + front[:1] + front[1:]
    assert step_points(dup) == ([1.0, 2.0, 2.0, 3.0, 3.0], [0.5, 0.5, 0.7, 0.7, 0.9])
    assert step_points([]) == ([], [])


def test_search_plot_links_every_measured_point_and_keeps_the_legend_off_the_data(tmp_path):
    top = sorted(RECORDS, key=lambda r: -r["accuracy"])[:3]
    measured = _measured(top, [2.0, None, 4.0])
    drawn = plot_pareto(RECORDS, tmp_path / "pareto.png", target_ms=2.5, title="toy", measured=measured,
                        estimator="short-train", is_accuracy=True)
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert drawn["links"] == len(measured) == 3
    assert drawn["error_bars"] == 2  # only the records that carry a spread
    # the step runs to the slowest latency drawn (a measured 4.4 ms)
    assert drawn["front"] == step_points(pareto_front(RECORDS), until_ms=4.0 * 1.1)
    assert "predicted by the table" in drawn["xlabel"] and "calibrated median" in drawn["xlabel"]
    assert drawn["ylabel"] == "top-1 accuracy (short-train)"
    legend, axes = drawn["legend_box"], drawn["axes_box"]  # figure pixels (x0, y0, x1, y1), y up
    assert legend[3] <= axes[1], "the legend overlaps the axes (their labels included)"
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left beside the plot"


def test_measured_grid_and_proxy_scores_are_named_on_the_axes(tmp_path):
    drawn = plot_pareto(RECORDS, tmp_path / "grid.png", title="grid", value_label="validation top-1 (trained 5 steps)",
                        latency_source="measured", latency_statistic="calibrated median",
                        samples_label="grid candidates")
    assert drawn["xlabel"] == "latency, ms (measured on the device: calibrated median)"
    assert drawn["ylabel"] == "validation top-1 (trained 5 steps)"
    assert drawn["links"] == 0 and drawn["legend_box"][3] <= drawn["axes_box"][1]
    drawn = plot_pareto(RECORDS, tmp_path / "proxy.png", estimator="naswot", is_accuracy=False)
    assert drawn["ylabel"] == "naswot score (a proxy, not an accuracy)" == estimator_label("naswot", False)
    assert drawn["xlabel"] == "latency, ms (predicted by the table)"
    drawn = plot_pareto(RECORDS, tmp_path / "train.png", estimator="ofa-mlp", value_input_size=32)
    assert drawn["ylabel"] == "top-1 accuracy at 32x32 (ofa-mlp)" == estimator_label("ofa-mlp", True, 32)
    assert estimator_label("naswot", False, 32) == "naswot score at 32x32 (a proxy, not an accuracy)"
    with pytest.raises(ValueError, match="latency_source"):
        plot_pareto(RECORDS, tmp_path / "bad.png", latency_source="guessed")


def test_an_empty_search_still_writes_a_plot(tmp_path):
    drawn = plot_pareto([], tmp_path / "empty.png", target_ms=1.0)
    assert drawn["front"] == ([], []) and (tmp_path / "empty.png").stat().st_size > 0
