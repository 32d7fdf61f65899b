"""Two configurations of one space name (e.g. `hwnas lut build --input-size 160` and the default 224) keep
their own whole-network timings and corrections: a network timed at one resolution never fits or
validates the table of another."""
import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.latency.devices import get_device
from hwnas.latency.lut import LutStore, build_lut
from hwnas.latency.lut.store import space_id
from hwnas.latency.predict import LatencyPredictor
from hwnas.latency.validate import validate
from hwnas.search.spaces import get_space
from hwnas.search.spaces.mnasnet import MnasNetSpace
from tests.latency.lut_helpers import fast_build, fast_protocol, micro_space

FAST = fast_build(rounds=2, warmup=0, runs=2, show_progress=False, log=lambda m: None)


def test_space_id_separates_configurations_of_one_name():
    assert space_id(get_space("mnasnet")) == space_id(get_space("mnasnet"))
    ids = {space_id(get_space("mnasnet", input_size=s)) for s in (160, 192, 224)}
    assert len(ids) == 3 and all(i.startswith("mnasnet@") for i in ids)
    assert space_id(get_space("mnasnet-tiny")) != space_id(get_space("mnasnet-tiny", num_classes=4))
    assert space_id(get_space("mnasnet-tiny")) != space_id(get_space("mnasnet-tiny", width_mults=(0.5, 1.0)))


@pytest.mark.slow
def test_builds_at_two_input_sizes_keep_their_own_networks_and_corrections(tmp_path):
    dev, db = get_device("cpu"), tmp_path / "t.db"
    small = micro_space()
    large = MnasNetSpace(small.config, name=small.name, input_size=24)
    assert small.name == large.name
    a = build_lut(small, dev, db, fit_networks=5, **FAST)
    b = build_lut(large, dev, db, fit_networks=5, **FAST)
    assert a.networks == b.networks == 5   # the 24px networks are timed, not taken from the 16px ones
    store = LutStore(db)
    fp = dev.fingerprint_key()
    for space, rep in ((small, a), (large, b)):
        assert store.get_correction(fp, space_id(space)) == rep.correction
        assert LatencyPredictor.for_space(space, dev, store=store).correction == rep.correction
        assert len(store.networks(fp, space_id(space), "fit")) == 5


@pytest.mark.slow
def test_validation_never_reuses_the_fit_networks(tmp_path):
    """16 architectures, 10 fit the correction: validation gets exactly the other 6, and asking for 7 is a
    clear error (not an endless search for unused architectures)."""
    dev, db = get_device("cpu"), tmp_path / "t.db"
    space = MnasNetSpace(micro_space().config, name="micro16", skips=("none",), layer_deltas=(0,))
    assert np.prod([len(d.choices) for d in space.decisions()]) == 16
    build_lut(space, dev, db, fit_networks=10, **FAST)
    fit = set(LutStore(db).networks(dev.fingerprint_key(), space_id(space), "fit"))
    assert len(fit) == 10
    rep = validate(space, dev, db, samples=6, seed=0, protocol=fast_protocol(2, 2, 0), show_progress=False)
    held_out = {tuple(n["arch"]) for n in rep["networks"]}
    assert len(held_out) == 6 and not held_out & fit
    assert np.isfinite(rep["predictor"]["rmse_ms"])
    with pytest.raises(HwnasError, match="only 6"):
        validate(space, dev, db, samples=7, seed=0, protocol=fast_protocol(2, 2, 0), show_progress=False)
