"""The validation scatter carries its own numbers: the predictor's agreement and the noise floor."""
import numpy as np

from hwnas.latency.validate import agreement, metrics_text, plot_scatter

MEASURED = np.array([0.10, 0.20, 0.30, 0.40, 0.50])
PREDICTED = np.array([0.104, 0.215, 0.29, 0.40, 0.60])   # within 5%: 3 of 5, within 10%: 4 of 5
AGAIN = np.array([0.101, 0.198, 0.303, 0.41, 0.495])


def test_the_text_names_n_the_fractions_rmse_spearman_and_the_noise_floor():
    pred, floor = agreement(PREDICTED, MEASURED), agreement(AGAIN, MEASURED)
    assert pred["within_5pct"] == 0.6 and pred["within_10pct"] == 0.8 and floor["within_5pct"] == 1.0
    text = metrics_text(pred, floor)
    head, noise = text.split("noise floor")
    assert "n = 5" in head and "within ±5%    60.0%" in head and "within ±10%   80.0%" in head
    assert f"RMSE  {pred['rmse_ms']:.3g} ms" in head and "Spearman  1.000" in head
    assert "2nd measurement" in noise and "within ±5%   100.0%" in noise
    assert f"RMSE  {floor['rmse_ms']:.3g} ms" in noise and f"Spearman  {floor['spearman']:.3f}" in noise
    assert "noise floor" not in metrics_text(pred)


def test_the_scatter_keeps_its_numbers_and_legend_beside_the_data(tmp_path):
    drawn = plot_scatter(PREDICTED, MEASURED, tmp_path / "v" / "scatter.png", "micro on cpu: predicted vs measured",
                         noise_floor=agreement(AGAIN, MEASURED), statistic="calibrated median")
    assert (tmp_path / "v" / "scatter.png").read_bytes()[:4] == b"\x89PNG"
    assert drawn["points"] == 5
    assert drawn["text"] == metrics_text(agreement(PREDICTED, MEASURED), agreement(AGAIN, MEASURED))
    axes = drawn["axes_box"]
    for box in (drawn["legend_box"], drawn["text_box"]):
        assert box[0] >= axes[2], "the legend or the numbers cover the data"
    assert not list((tmp_path / "v").glob(".*.tmp"))


def test_validate_writes_the_scatter_with_its_report(tmp_path):
    from hwnas.latency.devices import get_device
    from hwnas.latency.lut import build_lut
    from hwnas.latency.validate import validate
    from tests.latency.lut_helpers import fast_build, fast_protocol, micro_space
    space, dev, db = micro_space(), get_device("cpu"), tmp_path / "t.db"
    build_lut(space, dev, db, fit_networks=4, show_progress=False, log=lambda m: None, **fast_build())
    png = tmp_path / "scatter.png"
    rep = validate(space, dev, db, samples=4, protocol=fast_protocol(), png=png, show_progress=False)
    assert rep["plot"] == str(png) and png.read_bytes()[:4] == b"\x89PNG"
    assert rep["predictor"]["n"] == rep["noise_floor"]["n"] == 4
