import pytest
import torch
from torch import nn

from hwnas.data import load_dataset, make_loaders
from hwnas.errors import HwnasError
from hwnas.models import create
from hwnas.train import adaptive_gradient_clip_, evaluate, seed_everything, train


def small_cnn():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def test_training_on_digits_beats_chance_by_far():
    seed_everything(0)
    split = load_dataset("digits", image_size=32)
    tl, vl = make_loaders(split, batch_size=32, seed=0)
    model = create("lenet5", num_classes=10)
    before = evaluate(model, vl)
    res = train(model, tl, steps=200, lr=0.05, threads=1, progress=False)
    print(f"digits 32px lenet5: {res.steps} steps, {res.seconds:.1f} s, val top-1 {evaluate(model, vl):.3f}")
    after = evaluate(model, vl)
    assert res.steps == 200 and res.final_loss < 1.0
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
    # a conv weight: one unit per output filter, norm over (in, kh, kw)
    c = nn.Parameter(torch.full((2, 1, 2, 2), 0.5))            # each filter has norm 1
    c.grad = torch.stack([torch.full((1, 2, 2), 1.0), torch.full((1, 2, 2), 0.01)])  # norms 2 and 0.02
    adaptive_gradient_clip_([c], clip=0.5)
    assert torch.allclose(c.grad[0], torch.full((1, 2, 2), 0.25))  # 2 -> 0.5
    assert torch.allclose(c.grad[1], torch.full((1, 2, 2), 0.01))  # 0.02 < 0.5: unchanged


def test_options_and_their_errors():
    split = load_dataset("digits", image_size=8)
    tl, _ = make_loaders(split, 64)
    res = train(small_cnn(), tl, steps=3, optimizer="adam", lr=1e-3, schedule="constant", label_smoothing=0.1,
                agc_clip=0.01, progress=False)
    assert res.steps == 3 and res.final_loss > 0
    for kw, match in (({"optimizer": "lamb"}, "unknown optimizer 'lamb'"),
                      ({"schedule": "step"}, "unknown schedule 'step'"),
                      ({"steps": 0}, "at least one step")):
        with pytest.raises(HwnasError, match=match):
            train(small_cnn(), tl, **{"steps": 1, **kw})


def test_agc_in_training_leaves_the_classifier_alone():
    torch.manual_seed(0)
    model = small_cnn()
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    head = model[-1].weight.grad.clone()
    conv = model[0].weight.grad.clone()
    from hwnas.train import _classifier_params
    skip = _classifier_params(model)
    adaptive_gradient_clip_([p for p in model.parameters() if id(p) not in skip], clip=1e-4)
    assert torch.equal(model[-1].weight.grad, head)
    assert model[0].weight.grad.norm() < conv.norm()


# -- where training runs ------------------------------------------------------------------------------------
def test_train_device_names():
    from hwnas.settings import SettingError
    from hwnas.train import check_train_device, resolve_train_device
    assert resolve_train_device("cpu") == "cpu"
    assert resolve_train_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", "", None):
        with pytest.raises(SettingError, match="train_device is auto, cpu, cuda or cuda:N"):
            check_train_device(bad)
    if not torch.cuda.is_available():  # asked for the GPU where there is none: refused, never a quiet CPU run
        for spec in ("cuda", "cuda:1"):
            with pytest.raises(SettingError, match=f"train_device {spec}: "):
                resolve_train_device(spec)


def test_training_leaves_the_model_where_it_was():
    split = load_dataset("digits", image_size=8)
    tl, vl = make_loaders(split, 64)
    model = small_cnn()
    train(model, tl, steps=2, progress=False, device="auto")
    assert next(model.parameters()).device.type == "cpu"
    evaluate(model, vl, device="auto")
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (scripts/gpu-check.sh runs this there)")
def test_training_on_the_gpu_comes_back_to_the_cpu():
    split = load_dataset("digits", image_size=8)
    tl, vl = make_loaders(split, 64)
    model = small_cnn()
    train(model, tl, steps=5, progress=False, device="cuda")
    assert next(model.parameters()).device.type == "cpu" and 0 <= evaluate(model, vl, device="cuda") <= 1


def test_distillation_pulls_the_student_towards_the_teacher():
    """With distill_weight 1 the labels play no part: the student learns the teacher's answers, even where the
    teacher is wrong (a teacher that always answers class 3)."""
    from hwnas.train import distillation_loss
    split = load_dataset("digits", image_size=8)
    tl, vl = make_loaders(split, 32, seed=0)

    class Three(nn.Module):
        def forward(self, x):
            out = torch.zeros(len(x), 10)
            out[:, 3] = 10.0
            return out
    seed_everything(0)
    student = small_cnn()
    train(student, tl, steps=60, lr=0.05, threads=1, progress=False, teacher=Three(), distill_weight=1.0)
    x, _ = next(iter(vl))
    with torch.no_grad():
        assert (student.eval()(x).argmax(1) == 3).float().mean() > 0.9
    # the loss itself: zero when the student equals the teacher, positive otherwise, on the T² scale
    t = Three()
    same = distillation_loss(t(x), t, x, 4.0)
    assert float(same) == pytest.approx(0.0, abs=1e-5)
    assert float(distillation_loss(torch.zeros(len(x), 10), t, x, 4.0)) > 0.1


def test_distillation_with_weight_zero_is_plain_training():
    split = load_dataset("digits", image_size=8)
    outs = []
    for teacher in (None, small_cnn()):
        seed_everything(5)
        model = small_cnn()
        train(model, make_loaders(split, 32, seed=5)[0], steps=5, threads=1, progress=False, teacher=teacher,
              distill_weight=0.0)
        outs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(outs[0], outs[1])
