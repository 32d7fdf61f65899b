"""The proposal pool: parallel results come back in proposal order; a worker that dies is an error, not a hang."""
import os

import pytest

from hwnas.adapt.proposals import Proposal, ProposalPool, ProposalResult
from hwnas.errors import HwnasError


def _proposal(group, k):
    return Proposal(group=group, channels=16, new_channels=16 - k, predicted_ms=float(k), model_in="", model_out="",
                    input_shape=(1, 3, 8, 8), data={}, short_steps=0, batch_size=1, lr=0.0, seed=k)


def echo(p: Proposal) -> ProposalResult:
    return ProposalResult(p.group, p.channels, p.new_channels, p.predicted_ms, accuracy=os.getpid(), model_out="")


def die_on_b(p: Proposal) -> ProposalResult:
    if p.group == "b":
        os._exit(3)  # a worker killed mid-proposal (segfault, OOM killer)
    return echo(p)


@pytest.mark.timeout(120)
def test_two_workers_results_in_order_from_other_processes():
    props = [_proposal(g, k) for k, g in enumerate("abcd")]
    with ProposalPool(2, fn=echo) as pool:
        res = pool.map(props)
    assert [r.group for r in res] == list("abcd")
    assert [r.new_channels for r in res] == [16, 15, 14, 13]
    assert os.getpid() not in {r.accuracy for r in res}


@pytest.mark.timeout(120)
def test_crashed_worker_is_an_error_not_a_hang():
    props = [_proposal(g, k) for k, g in enumerate("abcd")]
    with pytest.raises(HwnasError, match="worker crashed"):
        with ProposalPool(2, fn=die_on_b) as pool:
            pool.map(props)


def test_workers_must_be_positive():
    with pytest.raises(HwnasError, match="workers"):
        ProposalPool(0)


def test_the_teacher_is_read_once_per_file_and_again_when_it_changes(tmp_path):
    import time
    from hwnas.adapt.modelfile import save_network, zoo_base
    from hwnas.adapt.proposals import load_teacher
    from hwnas.models import create
    path = tmp_path / "iter_000.safetensors"
    base = zoo_base("lenet5", num_classes=10)
    save_network(create("lenet5", num_classes=10), path, base)
    first = load_teacher(path)
    assert load_teacher(path) is first and not first.training
    time.sleep(0.01)
    save_network(create("lenet5", num_classes=10), path, base)  # a new run writes a new start
    assert load_teacher(path) is not first
