"""Lesson 07 (evaluation, deepfakes, bias): reference functions on known answers, the checks in both
directions (with their hints), the cache and the explorer."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from checking import fails_with, in_float64, passes
from utils import evaluation as ev
from utils import metrics
from utils.checks import evaluation as H
from utils.checks.core import NOT_IMPLEMENTED, NO_RETURN
from utils.data import ImageData


# --------------------------------------------------------------------------- AUC

def test_auc_of_a_perfect_a_backwards_and_a_random_detector():
    real, fake = torch.zeros(5), torch.ones(7)
    assert ev.detector_auc(real, fake).item() == 1.0
    assert ev.detector_auc(fake, real).item() == 0.0
    assert ev.detector_auc(torch.full((4,), 0.2), torch.full((9,), 0.2)).item() == 0.5   # all ties
    g = torch.Generator().manual_seed(0)
    noise = ev.detector_auc(torch.randn(4000, generator=g), torch.randn(4000, generator=g)).item()
    assert noise == pytest.approx(0.5, abs=0.02)                                          # random scores


def test_auc_counts_ties_as_one_half_and_matches_sklearn():
    from sklearn.metrics import roc_auc_score
    real, fake = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 3.0])
    # pairs (fake, real): (1,0) win, (1,1) tie, (1,2) loss, (3,*) three wins -> (4 + 0.5) / 6
    assert ev.detector_auc(real, fake).item() == pytest.approx(4.5 / 6)
    g = torch.Generator().manual_seed(1)
    r, f = torch.randint(0, 5, (30,), generator=g).float(), torch.randint(1, 7, (20,), generator=g).float()
    sk = roc_auc_score([0] * 30 + [1] * 20, torch.cat([r, f]).numpy())
    assert ev.detector_auc(r, f).item() == pytest.approx(sk)


# --------------------------------------------------------------------------- skew

def test_skew_ratio_known_answers():
    train = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])          # shares 0.3, 0.2, 0.5
    samples = torch.tensor([0, 0, 0, 0, 0, 2, 2, 2, 2, 2] * 2)     # shares 0.5, 0.0, 0.5
    ratio = ev.skew_ratio(samples, train, 3)
    assert torch.allclose(ratio, torch.tensor([0.5 / 0.3, 0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(ev.skew_ratio(train, train, 3), torch.ones(3, dtype=torch.float64))
    assert ev.class_shares(samples, 4).tolist() == [0.5, 0.0, 0.5, 0.0]


def test_share_ratio_se_is_the_binomial_error_over_the_training_share():
    se = ev.share_ratio_se(torch.tensor([0.5, 0.1]), torch.tensor([0.25, 0.1]), 100)
    assert se.tolist() == pytest.approx([math.sqrt(0.25 / 100) / 0.25, math.sqrt(0.09 / 100) / 0.1])


def test_skewed_subset_keeps_a_tenth_of_one_digit_and_all_others():
    labels = torch.arange(1000) % 10
    idx = ev.skewed_subset(labels, digit=3, keep=0.1)
    kept = torch.bincount(labels[idx], minlength=10)
    assert kept[3] == 10 and (kept[torch.arange(10) != 3] == 100).all()
    assert len(idx.unique()) == len(idx)


def test_balancing_weights_give_every_class_the_same_total():
    labels = torch.tensor([0] * 90 + [1] * 10)
    w = ev.balancing_weights(labels, 2)
    assert w[labels == 0].sum().item() == pytest.approx(w[labels == 1].sum().item())


# --------------------------------------------------------------------------- the autoregressive model

def test_made_output_i_depends_only_on_earlier_pixels():
    torch.manual_seed(0)
    model = ev.MADE(ev.MADEConfig(side=3, hidden=(16, 16)))
    x = torch.rand(1, 9, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda v: model(v), x)[0, :, 0, :]      # (out 9, in 9)
    assert (jac.triu() == 0).all()                                                     # no j >= i
    paths = torch.linalg.multi_dot(list(reversed(ev.made_masks(9, (16, 16)))))        # (9, 9) paths in -> out
    assert torch.equal(paths > 0, torch.ones(9, 9).tril(-1) > 0)                       # every earlier pixel, no other


def test_made_likelihood_is_exact_it_sums_to_one_over_all_images():
    torch.manual_seed(1)
    model = ev.MADE(ev.MADEConfig(side=2, hidden=(8,)))
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4))).view(16, 1, 2, 2)
    with torch.no_grad():
        total = torch.exp(-ev.made_nll(model, images)).sum().item()
    assert total == pytest.approx(1.0, abs=1e-5)


def test_made_learns_and_samples_binary_images():
    x = ev.to_binary_small(torch.rand(64, 1, 8, 8))                                    # (64, 1, 4, 4)
    assert x.shape == (64, 1, 4, 4) and set(x.unique().tolist()) <= {0.0, 1.0}
    torch.manual_seed(0)
    model = ev.MADE(ev.MADEConfig(side=4, hidden=(32,)))
    losses = ev.fit_made(model, x, steps=60, batch_size=32)
    assert losses[-1] < losses[0]
    s = ev.made_sample(model, 5, seed=3)
    assert s.shape == (5, 1, 4, 4) and set(s.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(s, ev.made_sample(model, 5, seed=3))
    assert ev.upsample(s).shape == (5, 1, 28, 28)


# --------------------------------------------------------------------------- scoring

def _toy():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(300) % 10
    x = 0.1 * torch.rand(300, 1, 8, 8, generator=g)
    for k in range(10):
        r, c = divmod(k, 4)
        x[y == k, :, 2 * r:2 * r + 2, 2 * c:2 * c + 2] += 0.9
    x = x.clamp(0, 1)
    return ImageData(x[:200], y[:200], x[200:], y[200:], name="toy", source="test")


def test_score_family_exposes_a_memorising_generator():
    data = _toy()
    torch.manual_seed(0)
    clf = metrics.CourseClassifier(metrics.ClassifierConfig(image_size=8)).eval()
    ref = ev.make_reference(clf, data)
    copies = ev.score_family(ref, data.x_train[:100], labels=None, seconds_per_image=1e-3)
    assert copies["copy_share"] == 1.0 and copies["nn_distance_ratio"] == 0.0
    assert copies["ms_per_image"] == pytest.approx(1.0)
    assert math.isnan(copies["class_accuracy"]) and math.isnan(copies["bits_per_dim"])
    real = ev.score_family(ref, data.x_test, labels=data.y_test)
    assert real["copy_share"] <= 0.05 and real["nn_distance_ratio"] == pytest.approx(1.0)
    assert real["frechet_ratio"] < 1.0 and 0 <= real["class_accuracy"] <= 1      # the reference set itself


def test_copy_share_and_inception_spread():
    test_nn = torch.linspace(1, 2, 101)
    assert ev.copy_share(torch.zeros(10), test_nn) == 1.0
    assert ev.copy_share(torch.full((10,), 5.0), test_nn) == 0.0
    confident = torch.eye(10).repeat(10, 1).double()                                   # 100 rows, 10 per class
    mean, spread = ev.inception_score_spread(confident, splits=5)
    assert mean == pytest.approx(10.0) and spread == pytest.approx(0.0)


def test_format_cell_shows_the_spread_or_a_dash():
    row = {"frechet_ratio": 1.234, "frechet_ratio_spread": 0.05, "class_accuracy": 0.9, "class_accuracy_se": 0.01,
           "bits_per_dim": float("nan")}
    assert ev.format_cell(row, "frechet_ratio") == "1.23 ± 0.05"
    assert ev.format_cell(row, "class_accuracy") == "90.0% ± 1.0%"
    assert ev.format_cell(row, "bits_per_dim") == "–"


ROWS = {"fast blurry": {"frechet_ratio": 4.0, "diversity": 0.9, "class_evenness": 1.0, "ms_per_image": 0.1},
        "slow sharp": {"frechet_ratio": 1.25, "diversity": 0.8, "class_evenness": 1.0, "ms_per_image": 100.0},
        "collapsed": {"frechet_ratio": 2.0, "diversity": 0.0, "class_evenness": 0.5, "ms_per_image": 1.0}}


def test_tradeoff_axes_and_ranking():
    axes = ev.tradeoff_axes(ROWS)
    assert axes["slow sharp"]["quality"] == pytest.approx(0.8) and axes["fast blurry"]["quality"] == 0.25
    assert axes["fast blurry"]["speed"] == 1.0 and axes["slow sharp"]["speed"] == 0.0
    assert axes["collapsed"]["speed"] == pytest.approx(2 / 3) and axes["collapsed"]["diversity"] == 0.0
    assert [n for n, _ in ev.tradeoff_ranking(ROWS, 1, 0, 0)] == ["slow sharp", "collapsed", "fast blurry"]
    assert ev.tradeoff_ranking(ROWS, 0, 0, 1)[0][0] == "fast blurry"
    assert ev.tradeoff_ranking(ROWS, 0, 1, 0)[-1] == ("collapsed", 0.0)
    with pytest.raises(ValueError, match="weights"):
        ev.tradeoff_ranking(ROWS, 0, 0, 0)


def test_tradeoff_view_draws_the_ranking_for_its_weights():
    fig = ev.tradeoff_view(ROWS, quality=1, diversity=0, speed=0)
    assert isinstance(fig, Figure)
    bars = fig.axes[1]
    labels = [t.get_text() for t in bars.get_yticklabels()]
    assert labels[-1] == "slow sharp"                                                  # best at the top
    assert "quality 1" in bars.get_title()


# --------------------------------------------------------------------------- detectors and post-processing

def test_postprocessing_keeps_flat_images_and_the_pixel_range():
    flat = torch.full((2, 1, 28, 28), 0.4)
    assert torch.allclose(ev.blur(flat), flat) and torch.allclose(ev.down_up(flat), flat)
    noisy = ev.add_noise(flat, torch.Generator().manual_seed(0))
    assert noisy.shape == flat.shape and 0 <= noisy.min() and noisy.max() <= 1 and not torch.equal(noisy, flat)
    spike = torch.zeros(1, 1, 5, 5)
    spike[..., 2, 2] = 1.0
    assert ev.blur(spike)[..., 2, 2].item() == pytest.approx(0.25)                     # 4 / 16
    assert ev.threshold(torch.tensor([0.2, 0.5, 0.7])).tolist() == [0.0, 0.0, 1.0]
    assert set(ev.POSTPROCESSING) == {"blur", "noise", "down-up", "black and white"}


def test_a_detector_learns_to_tell_bright_from_dark_and_the_matrix_has_every_pair():
    g = torch.Generator().manual_seed(0)
    real, fake = 0.3 * torch.rand(200, 1, 28, 28, generator=g), 0.4 + 0.3 * torch.rand(200, 1, 28, 28, generator=g)
    model = ev.train_detector(real[:100], fake[:100], steps=40)
    assert ev.detector_auc(ev.detector_scores(model, real[100:]), ev.detector_scores(model, fake[100:])) > 0.95
    matrix = ev.generalisation_matrix({"bright": model}, real[100:], {"bright": fake[100:], "same": real[:100]})
    assert set(matrix) == {"bright"} and set(matrix["bright"]) == {"bright", "same"}
    assert matrix["bright"]["bright"] > 0.95 and matrix["bright"]["same"] < 0.8
    assert isinstance(ev.matrix_figure(matrix), Figure)


def test_train_detector_uses_the_step_it_is_given_and_augments_half_of_each_batch():
    seen = []

    def step(model, opt, real, fake):
        seen.append((real.clone(), fake.clone()))
        return 0.0
    real, fake = torch.zeros(10, 1, 28, 28), torch.ones(10, 1, 28, 28)
    ev.train_detector(real, fake, steps=2, batch_size=4, step=step, augment=lambda x, g: x + 5)
    assert len(seen) == 2
    r, f = seen[0]
    assert (r[:2] == 5).all() and (r[2:] == 0).all() and (f[:2] == 6).all() and (f[2:] == 1).all()


# --------------------------------------------------------------------------- the cache

def test_load_or_fit_trains_caches_reloads_and_retrains_a_damaged_file(tmp_path, capsys):
    path = tmp_path / "m.pt"
    calls = []

    def fit(model):
        calls.append(1)
        with torch.no_grad():
            model.weight.fill_(2.0)
    first = ev.load_or_fit(path, torch.nn.Linear(2, 2), fit, "toy model")
    assert calls == [1] and "trained here" in first.how and first.train_seconds >= 0
    again = ev.load_or_fit(path, torch.nn.Linear(2, 2), fit, "toy model")
    assert calls == [1] and "loaded" in again.how and (again.model.weight == 2).all()
    assert again.train_seconds == pytest.approx(first.train_seconds)
    path.write_bytes(b"not a checkpoint")
    capsys.readouterr()
    ev.load_or_fit(path, torch.nn.Linear(2, 2), fit, "toy model")
    out = capsys.readouterr().out
    assert calls == [1, 1] and out.count("\n") == 1 and "trained again" in out
    ev.load_or_fit(path, torch.nn.Linear(3, 2), fit, "toy model")                         # mismatched shapes
    assert calls == [1, 1, 1]


def test_eval_model_path_differs_by_model_budget_and_data():
    data = _toy()
    a, b = ev.eval_model_path("vae", data, 100), ev.eval_model_path("vae", data, 200)
    assert a != b and ev.eval_model_path("gan", data, 100) != a and a.parent.name == "models"


# --------------------------------------------------------------------------- check: detector_step

def step_swapped(model, opt, real, fake):
    logits = model(torch.cat([real, fake]))
    targets = torch.cat([torch.ones(len(real)), torch.zeros(len(fake))])
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def _step(reduction="mean", squash=False, reset=True, update=True):
    def step(model, opt, real, fake):
        logits = model(torch.cat([real, fake]))
        if squash:
            logits = torch.sigmoid(logits)
        targets = torch.cat([torch.zeros(len(real)), torch.ones(len(fake))])
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction=reduction)
        if reset:
            opt.zero_grad()
        if update:
            loss.backward()
            opt.step()
        return loss.item()
    return step


def step_two_means(model, opt, real, fake):   # the mean over real and the mean over fake, averaged: also right
    zeros, ones = torch.zeros(len(real)), torch.ones(len(fake))
    loss = 0.5 * (F.binary_cross_entropy_with_logits(model(real), zeros)
                  + F.binary_cross_entropy_with_logits(model(fake), ones))
    model.zero_grad()
    loss.backward()
    opt.step()
    return loss


def step_twice(model, opt, real, fake):   # the right loss, but two updates
    loss = ev.detector_step(model, opt, real, fake)
    ev.detector_step(model, opt, real, fake)
    return loss


def test_detector_step_check_accepts_correct_steps(capsys):
    from utils.checks import check_detector_step
    passes(check_detector_step, ev.detector_step, capsys)
    passes(check_detector_step, in_float64(ev.detector_step), capsys)
    passes(check_detector_step, step_two_means, capsys)


@pytest.mark.parametrize("answer, hint", [
    (step_swapped, H.STEP_LABELS_SWAPPED),
    (_step(reduction="sum"), H.STEP_SUMMED),
    (_step(squash=True), H.STEP_SIGMOID_TWICE),
    (_step(update=False), H.STEP_NO_UPDATE),
    (_step(reset=False), H.STEP_ACCUMULATES),
    (step_twice, H.STEP_WRONG_MOVE),
    (lambda model, opt, real, fake: None, NO_RETURN),
    (lambda model, opt, real, fake: [0.1, 0.2], H.STEP_NOT_FLOAT),
], ids=["labels swapped", "summed", "sigmoid twice", "no update", "no zero_grad", "two steps", "no return",
        "a list"])
def test_detector_step_check_names_each_mistake(answer, hint, capsys):
    from utils.checks import check_detector_step
    fails_with(check_detector_step, answer, capsys, hint)


def test_detector_step_check_reports_a_stub(capsys):
    from utils.checks import check_detector_step

    def stub(model, opt, real, fake):
        raise NotImplementedError()
    fails_with(check_detector_step, stub, capsys, NOT_IMPLEMENTED)


# --------------------------------------------------------------------------- check: detector_auc

def auc_sklearn(real_scores, fake_scores):   # another correct answer, as a float
    from sklearn.metrics import roc_auc_score
    labels = [0] * len(real_scores) + [1] * len(fake_scores)
    return roc_auc_score(labels, torch.cat([real_scores, fake_scores]).numpy())


def auc_backwards(real_scores, fake_scores):
    return (real_scores[None, :] > fake_scores[:, None]).float().mean() + 0.5 * (
        real_scores[None, :] == fake_scores[:, None]).float().mean()


def auc_counts(real_scores, fake_scores):
    diff = fake_scores[:, None] - real_scores[None, :]
    return (diff > 0).float().sum() + 0.5 * (diff == 0).float().sum()


def auc_ties_lost(real_scores, fake_scores):
    return (fake_scores[:, None] > real_scores[None, :]).float().mean()


def auc_ties_won(real_scores, fake_scores):
    return (fake_scores[:, None] >= real_scores[None, :]).float().mean()


def auc_paired(real_scores, fake_scores):
    return (fake_scores > real_scores).float().mean()


def test_detector_auc_check_accepts_correct_answers(capsys):
    from utils.checks import check_detector_auc
    passes(check_detector_auc, ev.detector_auc, capsys)
    passes(check_detector_auc, in_float64(ev.detector_auc), capsys)
    passes(check_detector_auc, auc_sklearn, capsys)


@pytest.mark.parametrize("answer, hint", [
    (auc_backwards, H.AUC_BACKWARDS), (auc_counts, H.AUC_ABOVE_ONE), (auc_ties_lost, H.AUC_TIES_LOST),
    (auc_ties_won, H.AUC_TIES_WON), (auc_paired, H.AUC_PAIRED),
], ids=["backwards", "counts", "ties lost", "ties won", "paired"])
def test_detector_auc_check_names_each_mistake(answer, hint, capsys):
    from utils.checks import check_detector_auc
    fails_with(check_detector_auc, answer, capsys, hint)


# --------------------------------------------------------------------------- check: skew_ratio

def skew_float32(sample_labels, train_labels, n_classes):
    out = torch.bincount(sample_labels, minlength=n_classes).float() / len(sample_labels)
    return out / (torch.bincount(train_labels, minlength=n_classes).float() / len(train_labels))


def skew_no_minlength(sample_labels, train_labels, n_classes):
    s = torch.bincount(sample_labels) / len(sample_labels)
    return s / (torch.bincount(train_labels)[:len(s)] / len(train_labels))


def skew_counts(sample_labels, train_labels, n_classes):
    return (torch.bincount(sample_labels, minlength=n_classes).float()
            / torch.bincount(train_labels, minlength=n_classes).float())


def skew_inverted(sample_labels, train_labels, n_classes):
    return 1 / skew_float32(sample_labels, train_labels, n_classes)


def skew_difference(sample_labels, train_labels, n_classes):
    return ev.class_shares(sample_labels, n_classes) - ev.class_shares(train_labels, n_classes)


def test_skew_ratio_check_accepts_correct_answers(capsys):
    from utils.checks import check_skew_ratio
    passes(check_skew_ratio, ev.skew_ratio, capsys)
    passes(check_skew_ratio, in_float64(ev.skew_ratio), capsys)
    passes(check_skew_ratio, skew_float32, capsys)


@pytest.mark.parametrize("answer, hint", [
    (skew_no_minlength, H.SKEW_SHAPE), (skew_counts, H.SKEW_COUNTS), (skew_inverted, H.SKEW_INVERTED),
    (skew_difference, H.SKEW_DIFFERENCE),
], ids=["no minlength", "counts", "inverted", "difference"])
def test_skew_ratio_check_names_each_mistake(answer, hint, capsys):
    from utils.checks import check_skew_ratio
    fails_with(check_skew_ratio, answer, capsys, hint)


def test_slug_and_relative_spread_of_too_few_samples():
    assert ev.slug("diffusion (DDIM)") == "diffusion_ddim" and ev.slug("re-weighted VAE") == "re_weighted_vae"
    assert math.isnan(ev._relative_spread(torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 2]), 1.0))
    x = torch.zeros(4, 1, 2, 2)
    x[1] = 1.0
    assert ev._relative_spread(x, torch.tensor([0, 0, 1, 1]), 1.0) == 1.0          # spread 2 -> capped at 1


def test_lesson_or_compact_uses_the_saved_model_only_when_its_config_matches(tmp_path):
    class Saved(torch.nn.Linear):
        def __init__(self, cfg):
            super().__init__(2, 2)
            self.cfg = cfg

    saved = Saved("cfg-a")
    path_of = lambda data, cfg, steps: tmp_path / f"lesson-{cfg}-{steps}.pt"
    load = lambda path, verbose: saved if path.name == "lesson-cfg-a-10.pt" else None
    fits = []
    args = ("VAE is lesson 03's", tmp_path / "eval.pt", lambda: Saved("cfg-a"), lambda m: fits.append(1), "compact VAE")
    got = ev.lesson_or_compact(load, path_of, None, "cfg-a", 10, *args)
    assert got.model is saved and got.train_seconds is None and "lesson 03's, loaded from lesson-cfg-a-10.pt" in got.how
    assert fits == []
    other = ev.lesson_or_compact(load, path_of, None, "cfg-a", 20, *args)                # another budget: not saved
    assert other.model is not saved and fits == [1] and "compact VAE" in other.how
    saved.cfg = "cfg-b"                                                                  # saved for another config
    assert ev.lesson_or_compact(load, path_of, None, "cfg-a", 10, *args).model is not saved
    assert ev.lesson_or_compact(None, None, None, "cfg-a", 10, *args).model is not saved  # an older utils
