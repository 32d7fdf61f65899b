import subprocess
import sys

import pytest
import torch
from torch import nn

from hwnas.data import load_dataset, make_loaders
from hwnas.errors import HwnasError
from hwnas.train import adaptive_gradient_clip_, evaluate, seed_everything, train


def small_cnn():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def test_training_on_digits_beats_chance_by_far():
    seed_everything(0)
    split = load_dataset("digits", image_size=16)
    tl, vl = make_loaders(split, batch_size=32, seed=0)
    model = small_cnn()
    before = evaluate(model, vl)
    res = train(model, tl, steps=150, lr=0.1, threads=1)
    after = evaluate(model, vl)
    assert res.steps == 150
    assert after >= 0.8 and after > before + 0.4  # chance is 0.1


def test_training_is_deterministic_given_the_seed():
    split = load_dataset("digits", image_size=8)
    outs = []
    for _ in range(2):
        seed_everything(5)
        model = small_cnn()
        train(model, make_loaders(split, 32, seed=5)[0], steps=5, threads=1)
        outs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(outs[0], outs[1])


def test_steps_xor_epochs():
    split = load_dataset("digits", image_size=8)
    tl, _ = make_loaders(split, 64)
    for kw in ({}, {"steps": 2, "epochs": 1}):
        with pytest.raises(HwnasError, match="exactly one of steps and epochs"):
            train(small_cnn(), tl, **kw)
    res = train(small_cnn(), tl, epochs=1)
    assert res.steps == len(tl)


def test_agc_clips_unitwise_with_known_numbers():
    p = nn.Parameter(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))  # row norms 5 and 0 (-> eps)
    p.grad = torch.tensor([[6.0, 8.0], [1.0, 0.0]])           # grad row norms 10 and 1
    adaptive_gradient_clip_([p], clip=0.1, eps=1e-3)
    # row 0: max 0.1*5 = 0.5 -> scaled to norm 0.5; row 1: max 0.1*1e-3 -> norm 1e-4
    assert torch.allclose(p.grad[0], torch.tensor([0.3, 0.4]))
    assert torch.allclose(p.grad[1].norm(), torch.tensor(1e-4))
    q = nn.Parameter(torch.tensor([[3.0, 4.0]]))
    q.grad = torch.tensor([[0.03, 0.04]])                      # under the limit: unchanged
    adaptive_gradient_clip_([q], clip=0.1)
    assert torch.allclose(q.grad, torch.tensor([[0.03, 0.04]]))


def test_progress_is_silent_off_a_terminal():
    code = ("from hwnas.progress import progress\n"
            "with progress(5, 'x') as b:\n"
            "    [b.advance() for _ in range(5)]\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "" and r.stdout == ""
