"""The once-for-all estimators on mnasnet-tiny: the sandwich rule trains, an estimate is the extracted network's
validation top-1, reading leaves the supernet as it was, training resumes after an interruption with the same
weights, a pickled checkpoint is refused; the MLP predictor is refitted from cached supernet estimates (never
unpickled) to the same predictions, and estimates a batch at once."""
import numpy as np
import pytest
import torch

from hwnas.data import make_loaders
from hwnas.errors import HwnasError
from hwnas.search.estimators import get_estimator
from hwnas.search.estimators.ofa import OfaEstimator
from hwnas.search.spaces import get_space
from hwnas.train import evaluate


@pytest.fixture(scope="module")
def space():
    return get_space("mnasnet-tiny")


def make(space, path, name="ofa", **kw):
    opts = dict(steps=4, batch_size=16, bn_batches=2, checkpoint_every=2, checkpoint=str(path / "ofa.safetensors"))
    opts.update(kw)
    return get_estimator(name, space, data="digits", seed=0, train_device="cpu", **opts)


def test_the_sandwich_rule_learns(space, tmp_path):
    """80 steps lift the largest network well above chance (0.1) on digits, and the smallest above it."""
    est = make(space, tmp_path, steps=80, batch_size=32, lr=0.05, schedule="sandwich")
    net = est.supernet()
    assert est.trained_steps_now == 80
    # the largest learns from the labels; the smallest, from the largest's output, lags (0.20 here at 80 steps)
    assert est.estimate(net.largest()) > 0.5 and est.estimate(net.smallest()) > 0.15


def test_an_estimate_is_the_extracted_networks_top1_and_reading_changes_nothing(space, tmp_path):
    est = make(space, tmp_path)
    net = est.supernet()
    a = space.sample(np.random.default_rng(3))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    value = est.estimate(a)
    model = est.trained_model(a)
    assert type(model) is type(space.build(a))
    _, val = make_loaders(est.split, 256, 0)
    assert value == evaluate(model, val) == est.estimate(a)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    again = make(space, tmp_path)  # the same settings reuse the checkpoint
    assert again.steps_to_train() == 0 and again.estimate(a) == value and again.trained_steps_now == 0


def test_resume_after_interruption_gives_the_same_supernet(space, tmp_path, monkeypatch):
    from tests.search.test_supernet import interrupted
    ref = make(space, tmp_path / "a").supernet().state_dict()
    # killed during step 4, after the checkpoint of step 2
    interrupted(OfaEstimator, monkeypatch, lambda: make(space, tmp_path / "b").supernet())
    resumed = make(space, tmp_path / "b")
    assert resumed.steps_to_train() == 2
    got = resumed.supernet().state_dict()
    assert resumed.trained_steps_now == 2
    for k in ref:
        assert torch.allclose(got[k].float(), ref[k].float(), atol=1e-6), k


def test_a_pickled_checkpoint_is_refused_without_running_it(space, tmp_path):
    from tests.hwnas.test_tensorfile import malicious_torch_file
    marker = tmp_path / "pwned"
    malicious_torch_file(tmp_path / "ofa.safetensors", marker)
    with pytest.raises(HwnasError, match="is a pickle"):
        make(space, tmp_path).supernet()
    assert not marker.exists()


def test_a_space_that_is_not_mnasnet_is_one_line(tmp_path):
    with pytest.raises(HwnasError, match="MnasNet-family"):
        make(get_space("pnas", channels=8, stem=8, normal_cells=1, stacks=2, max_blocks=3), tmp_path)


def test_the_mlp_is_refitted_from_cached_estimates_to_the_same_predictions(space, tmp_path, monkeypatch):
    opts = dict(name="ofa-mlp", fit=24, hidden=16, layers=2)
    first = make(space, tmp_path, **opts)
    first.warm_up()
    archs = [space.sample(np.random.default_rng(9)) for _ in range(5)]
    pred = first.estimate_many(archs)
    # one at a time or together: the same figures up to float32 rounding (a BLAS may sum a batch of 1 and a batch
    # of 5 in different orders: seen here, 0.10795765 against 0.10795766)
    assert pred == pytest.approx([first.estimate(a) for a in archs], rel=1e-5) and all(0.0 <= p <= 1.0 for p in pred)
    info = first.info()["predictor"]
    assert info["fit"] == 24 and info["held_out"] == 5 and -1 <= info["held_out_spearman"] <= 1
    assert (tmp_path / "ofa.evals.jsonl").read_text().count("\n") == 24  # the supernet's values, cached
    calls = []
    monkeypatch.setattr(OfaEstimator, "estimate", lambda self, a: calls.append(a) or 0.0)
    again = make(space, tmp_path, **opts)
    assert again.estimate_many(archs) == pred and not calls  # refitted from the cache: no supernet reading
    other = make(space, tmp_path, **{**opts, "hidden": 8})
    assert other.estimate_many(archs) != pred  # the MLP's settings are its own


def test_the_mlp_learns_what_the_supernet_reads(space, tmp_path, monkeypatch):
    """With supernet values that depend on the architecture (a fixed additive function of its choices, standing in
    for a well-trained supernet), the MLP fitted on 80 of them ranks 20 other architectures as the values do."""
    from scipy.stats import spearmanr
    from hwnas.search.estimators.ofa_mlp import one_hot
    w = np.random.default_rng(0).uniform(0, 0.005, one_hot(space, [space.sample(np.random.default_rng(1))]).shape[1])
    value = lambda self, a: float(0.7 + one_hot(space, [a])[0] @ w)  # noqa: E731
    monkeypatch.setattr(OfaEstimator, "estimate", value)
    est = make(space, tmp_path, name="ofa-mlp", steps=2, fit=80)  # OFA's 3 x 400
    est.warm_up()
    assert est.info()["predictor"]["held_out"] == 16
    archs, values = est.evaluations()
    assert len(set(archs)) == 80 and max(values) > min(values)
    rng = np.random.default_rng(5)
    test = [space.sample(rng) for _ in range(20)]
    assert spearmanr(est.estimate_many(test), [value(None, a) for a in test])[0] > 0.7


def test_train_mlp_is_fitted_on_short_trainings_cached_once(space, tmp_path, monkeypatch):
    """train-mlp: its fit architectures' values are short-train's (each trained alone, `steps` steps), kept in
    `evals` and keyed by the training's settings; a second instance refits from them without training; the
    search's exported network is short-train's."""
    from hwnas.search.estimators.short_train import ShortTrain
    opts = dict(fit=12, hidden=8, layers=1, steps=3, batch_size=16, lr=0.05, evals=str(tmp_path / "fit.jsonl"))
    first = get_estimator("train-mlp", space, data="digits", seed=0, **opts)
    archs, values = first.evaluations()
    alone = get_estimator("short-train", space, data="digits", seed=0, steps=3, batch_size=16, lr=0.05)
    assert list(values[:2]) == [alone.estimate(a) for a in archs[:2]]
    assert (tmp_path / "fit.jsonl").read_text().count("\n") == 12
    info = first.info()["predictor"]
    assert info["fitted_on"] == "short-train" and info["fit"] == 12 and info["held_out"] == 3
    test = [space.sample(np.random.default_rng(9)) for _ in range(4)]
    pred = first.estimate_many(test)
    assert all(0.0 <= p <= 1.0 for p in pred)
    calls = []
    monkeypatch.setattr(ShortTrain, "estimate", lambda self, a: calls.append(a) or 0.0)
    again = get_estimator("train-mlp", space, data="digits", seed=0, **opts)
    assert again.estimate_many(test) == pred and not calls
    more = get_estimator("train-mlp", space, data="digits", seed=0, **{**opts, "steps": 4})
    with pytest.raises(AssertionError):  # other training settings are other estimates: trained afresh
        monkeypatch.setattr(ShortTrain, "estimate", lambda self, a: (_ for _ in ()).throw(AssertionError("trains")))
        more.warm_up()
    assert first.weights_note == alone.weights_note and first.config_key() != more.config_key()


# -- the blockwise schedule ---------------------------------------------------------------------------------
def test_blockwise_steps_teach_random_blocks_the_teachers_features(space):
    """After the teacher is frozen, block-wise steps on random architectures lower the block-wise loss of
    architectures they never drew (the blocks' ops learn to give the teacher's features, whatever feeds them)."""
    from hwnas.search.elastic import ElasticMnasNet
    from hwnas.search.estimators.ofa import Blockwise
    torch.manual_seed(0)
    net = ElasticMnasNet(space, 10).train()
    plan = Blockwise(net, teacher_steps=1, steps=61, random_paths=2)
    plan.freeze_teacher()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(16, 3, 32, 32)
    unseen = [space.sample(np.random.default_rng(100 + i)) for i in range(4)]

    def loss_of_unseen():
        with torch.no_grad():
            feats = plan.teacher.features(x, net.largest())
            return float(sum(plan.blockwise_loss(a, feats) for a in unseen))

    before, rng = loss_of_unseen(), np.random.default_rng(0)
    for step in range(1, 31):
        assert plan.stage(step) == 1
        opt.zero_grad()
        plan.step(step, x, torch.zeros(16, dtype=torch.long), rng)
        opt.step()
    assert loss_of_unseen() < 0.5 * before


def test_blockwise_loss_is_zero_for_the_teacher_itself_and_not_for_a_narrower_block(space):
    """Each block is fed the teacher's features at its input (first channels) and compared with the teacher's
    at its output: the largest architecture, which is the teacher, reproduces them exactly."""
    from hwnas.search.elastic import ElasticMnasNet
    from hwnas.search.estimators.ofa import Blockwise
    torch.manual_seed(0)
    net = ElasticMnasNet(space, 10).eval()
    plan = Blockwise(net, teacher_steps=1, steps=4, random_paths=1)
    plan.freeze_teacher()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        feats = plan.teacher.features(x, net.largest())
        assert float(plan.blockwise_loss(net.largest(), feats)) == 0.0
        assert float(plan.blockwise_loss(net.smallest(), feats)) > 0.0
    assert not any(p.requires_grad for p in plan.teacher.parameters())


def test_blockwise_resumes_with_its_teacher_to_the_same_supernet(space, tmp_path, monkeypatch):
    from tests.search.test_supernet import interrupted
    opts = dict(schedule="blockwise", teacher=0.375, steps=8)  # the teacher: steps 1-3, frozen after step 3
    ref = make(space, tmp_path / "a", **opts).supernet().state_dict()
    # killed during step 6, after the checkpoint of step 4 (which holds the teacher)
    interrupted(OfaEstimator, monkeypatch, lambda: make(space, tmp_path / "b", **opts).supernet(), at=6)
    resumed = make(space, tmp_path / "b", **opts)
    assert resumed.steps_to_train() == 4
    got = resumed.supernet().state_dict()
    assert resumed.trained_steps_now == 4
    for k in ref:
        assert torch.allclose(got[k].float(), ref[k].float(), atol=1e-6), k


@pytest.mark.parametrize("opts, match", [(dict(schedule="progressive"), "schedule is one of sandwich, blockwise"),
                                         (dict(schedule="blockwise", teacher=1.0), "between 0 and 1"),
                                         (dict(metric="top5"), "metric is one of top1, likelihood"),
                                         (dict(normalise="maybe"), "normalise is true or false"),
                                         (dict(finetune=-1), "finetune=-1 must not be negative"),
                                         (dict(finetune=5, finetune_lr=0), "finetune_lr > 0")])
def test_bad_schedule_settings_are_one_line(space, tmp_path, opts, match):
    with pytest.raises(HwnasError, match=match):
        make(space, tmp_path, **opts)


def test_the_likelihood_metric_reads_the_same_supernet_finer(space, tmp_path):
    """metric=likelihood reads exp(-mean cross-entropy) of the very network top-1 is read from: the same
    checkpoint (no second training), another estimate cache key, and the search's axis says it is no top-1."""
    import math
    import torch.nn.functional as F
    top1 = make(space, tmp_path)
    top1.supernet()
    like = make(space, tmp_path, metric="likelihood")
    assert like.checkpoint_path == top1.checkpoint_path and like.steps_to_train() == 0
    assert like.config_key() != top1.config_key() and not like.is_accuracy and top1.is_accuracy
    a = space.sample(np.random.default_rng(4))
    x, y = like.split.val.tensors
    with torch.no_grad():
        want = math.exp(-float(F.cross_entropy(like.trained_model(a)(x), y)))
    assert like.estimate(a) == pytest.approx(want, rel=1e-5) and 0 < want < 1
    assert not make(space, tmp_path, name="ofa-mlp", metric="likelihood", fit=4).is_accuracy


def test_yes_no_options_given_as_text_mean_what_they_say(space, tmp_path):
    """`-E distill=false` arrives as the text 'false', which must not read as true."""
    assert make(space, tmp_path, distill="false").distill is False
    assert make(space, tmp_path, normalise="true", distill=0).normalise is True


def test_normalised_blockwise_loss_weighs_each_block_by_its_features_variance(space):
    from hwnas.search.elastic import ElasticMnasNet
    from hwnas.search.estimators.ofa import Blockwise
    torch.manual_seed(0)
    net = ElasticMnasNet(space, 10).eval()
    plain, scaled = Blockwise(net, 1, 4, 1), Blockwise(net, 1, 4, 1, normalise=True)
    plain.freeze_teacher()
    scaled.teacher = plain.teacher
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        feats = plain.teacher.features(x, net.largest())
        assert float(scaled.blockwise_loss(net.largest(), feats)) == 0.0
        small = net.smallest()
        # the teacher's features times 10 everywhere: the plain loss grows, the normalised one barely moves
        big = [f * 10 for f in feats]
        assert float(plain.blockwise_loss(small, big)) > 5 * float(plain.blockwise_loss(small, feats))
        a, b = float(scaled.blockwise_loss(small, feats)), float(scaled.blockwise_loss(small, big))
        assert a > 0 and b < 5 * a


def test_a_finetuned_read_trains_the_slice_from_the_supernets_weights_and_leaves_the_supernet(space, tmp_path):
    """finetune=K reads an architecture after K training steps that start from its slice: the same checkpoint (no
    second supernet), another estimate cache key, the supernet's weights untouched, the same value twice, and a
    network that differs from the plain slice and from the same K steps started from scratch."""
    from hwnas.train import seed_everything, train
    plain = make(space, tmp_path)
    net = plain.supernet()
    tuned = make(space, tmp_path, finetune=6, finetune_lr=0.05)
    assert tuned.checkpoint_path == plain.checkpoint_path and tuned.steps_to_train() == 0
    assert tuned.config_key() != plain.config_key() != make(space, tmp_path, finetune=7).config_key()
    assert tuned.config()["finetune"] == 6 and "finetune" not in plain.config()
    a = space.sample(np.random.default_rng(5))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    first = tuned.trained_model(a)
    assert all(torch.equal(before[k], v) for k, v in tuned.supernet().state_dict().items())
    second = tuned.trained_model(a)
    slice_ = plain.trained_model(a)
    for (k, w1), w2, w0 in zip(first.state_dict().items(), second.state_dict().values(), slice_.state_dict().values()):
        assert torch.equal(w1, w2), k
    assert any(not torch.equal(w1, w0) for w1, w0 in zip(first.state_dict().values(), slice_.state_dict().values())
               if w1.is_floating_point())
    seed_everything(0)  # the same steps from scratch land elsewhere: the supernet's weights are the start
    scratch = space.build(a, num_classes=10)
    train(scratch, make_loaders(tuned.split, 16, 0)[0], steps=6, lr=0.05, progress=False)
    conv = [k for k, v in first.state_dict().items() if v.ndim == 4][0]
    assert not torch.allclose(first.state_dict()[conv], scratch.state_dict()[conv])
    assert tuned.estimate(a) == tuned.estimate(a)
