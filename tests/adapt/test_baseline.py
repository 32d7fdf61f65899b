"""The uniform-width baseline's bisection: the widest multiplier whose measured latency meets a target."""
from hwnas.adapt.baseline import widest_within


def stepwise(mult):  # latency rises with width in steps of 8 channels, as a real network's does
    return 1.0 + 0.5 * int(mult * 64 / 8)


def test_the_widest_multiplier_within_the_target():
    mult, ms = widest_within(stepwise, 3.0, 0.1, 1.5, iterations=12)
    assert ms <= 3.0 and ms == stepwise(mult)
    assert stepwise(mult + 0.01) > 3.0  # one step wider is over the target


def test_the_ends():
    calls = []

    def counted(mult):
        calls.append(mult)
        return stepwise(mult)

    assert widest_within(counted, 100.0, 0.1, 1.5) == (1.5, stepwise(1.5)) and calls == [1.5]  # hi already meets it
    assert widest_within(stepwise, 0.5, 0.1, 1.5) == (0.1, stepwise(0.1))  # nothing does: the narrowest, flagged
    # by its latency over the target
