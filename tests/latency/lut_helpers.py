"""Small real spaces for the LUT tests (real torch modules, real exports, real timing)."""
import torch
from torch import nn

from hwnas.search.spaces.base import Decision, OpSpec, Space
from hwnas.search.spaces.mnasnet import MnasNetConfig, MnasNetSpace


def micro_space(name="micro") -> MnasNetSpace:
    """16x16 input, two blocks: a dozen ops, a few seconds to build."""
    cfg = MnasNetConfig(input_size=16, num_classes=4, stem=8, head=16, blocks=((8, 1, 1), (16, 1, 2)),
                        ops=("dwconv", "mbconv3"), kernels=(3, 5), se_ratios=(0.0,), skips=("identity", "none"),
                        width_mults=(1.0,), layer_deltas=(0, 1))
    return MnasNetSpace(cfg, name=name)


class SingleOpSpace(Space):
    """Networks made of exactly one op: a 3x3 or 5x5 convolution."""
    name = "single-op"
    input_size = 32
    num_classes = 16

    def decisions(self):
        return [Decision("kernel", (3, 5))]

    def _op(self, k):
        return OpSpec(f"conv-in:32x32x16-out:32x32x16-k:{k}", (1, 16, 32, 32),
                      lambda: nn.Conv2d(16, 16, k, padding=k // 2))

    def ops(self, arch):
        return [self._op(self.decisions()[0].choices[self.validate(arch)[0]])]

    def all_ops(self):
        return [self._op(3), self._op(5)]

    def build(self, arch, num_classes=None):
        return self.ops(arch)[0].builder()

    def sample(self, rng):
        return (int(rng.integers(2)),)


def zeros_input(space):
    return torch.zeros(1, 3, space.input_size, space.input_size)


def build_and_kill(build, store, rows: int, pid: int, poll: float = 0.02) -> dict:
    """Run `build()` in a thread, SIGKILL process `pid` once `store` holds `rows` rows (or after 120 s), and
    wait for the build to finish. Returns {"report": ...} or {"error": exception}; asserts it finished."""
    import os
    import signal
    import threading
    import time
    outcome: dict = {}

    def run():
        try:
            outcome["report"] = build()
        except Exception as e:  # pragma: no cover - reported by the caller's assert
            outcome["error"] = e

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 120
    while store.count() < rows and time.monotonic() < deadline:
        time.sleep(poll)
    os.kill(pid, signal.SIGKILL)
    t.join(300)
    assert not t.is_alive(), "the build did not finish within 300 s of the kill"
    return outcome


def fast_protocol(rounds: int = 2, runs: int = 3, warmup: int = 1):
    """A cheap measurement protocol for tests: exactly `rounds` rounds of `runs` runs."""
    from hwnas.latency.protocol import Protocol
    return Protocol(warmup=warmup, runs=runs, min_rounds=rounds, max_rounds=rounds)


def fast_build(rounds: int = 2, runs: int = 3, warmup: int = 1, **kw) -> dict:
    """build_lut keyword arguments with cheap protocols for ops and networks."""
    p = fast_protocol(rounds, runs, warmup)
    return {"op_protocol": p, "network_protocol": p, **kw}
