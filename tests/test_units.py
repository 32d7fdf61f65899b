import pytest

from hwnas.errors import HwnasError
from hwnas.units import parse_latency_ms, parse_shape


@pytest.mark.parametrize("text,ms", [("20ms", 20.0), ("20 ms", 20.0), ("0.02s", 20.0), ("20000us", 20.0),
                                     ("1.5ms", 1.5), ("2e-3s", 2.0)])
def test_latency_units(text, ms):
    assert parse_latency_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["20", "fast", "20 m", "-5ms", "0ms", "ms", "20msec"])
def test_latency_rejects(text):
    with pytest.raises(HwnasError):
        parse_latency_ms(text)


def test_shapes():
    assert parse_shape("1x3x48x320") == (1, 3, 48, 320)
    for bad in ("1x3xAx2", "", "1x0x2", "1x-3"):
        with pytest.raises(HwnasError):
            parse_shape(bad)
