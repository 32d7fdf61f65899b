"""The canonical key of one conv timed alone (NetAdapt's per-layer costs store their rows under it)."""
from hwnas.latency.lut.layers import conv_key


def test_conv_key():
    assert conv_key(8, 8, 16, 32, 3, 1, 1, 1, False) == "conv-in:8x8x16-out:32-k:3x3-s:1x1-p:1x1-d:1-g:1"
    assert conv_key(8, 8, 16, 16, (5, 5), (2, 2), (2, 2), (1, 1), True).endswith("-k:5x5-s:2x2-p:2x2-d:1-g:dw")
