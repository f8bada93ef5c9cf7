"""utils.metrics on cases with known answers."""
import numpy as np
import pytest
import torch

from utils import metrics
from utils.data import ImageData


def _toy_images(n, size, seed):
    """Separable toy 'digits': class k lights up a different block of pixels, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    x = 0.1 * torch.rand(n, 1, size, size, generator=g)
    cell = size // 4
    for k in range(10):
        r, c = divmod(k % 16, 4)
        x[y == k, :, r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] += 0.9
    return x.clamp(0, 1), y


def _toy_data(size=8, n_train=300, n_test=100, name="toy blocks"):
    x_tr, y_tr = _toy_images(n_train, size, 0)
    x_te, y_te = _toy_images(n_test, size, 1)
    return ImageData(x_tr, y_tr, x_te, y_te, name=name, source="test")


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "DATA_DIR", tmp_path)
    return tmp_path


# --------------------------------------------------------------------------- Fréchet distance

def test_frechet_of_a_set_with_itself_is_zero():
    feats = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    assert metrics.frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)


def test_frechet_of_shifted_set_is_squared_mean_difference():
    feats = torch.randn(400, 8, generator=torch.Generator().manual_seed(0))
    shift = torch.tensor([1.0, -2.0, 0.5, 0, 0, 0, 3.0, 0])
    # same covariance, means differ by `shift`: the trace term vanishes exactly
    assert metrics.frechet_distance(feats, feats + shift) == pytest.approx((shift ** 2).sum().item(), rel=1e-6)


def test_frechet_of_two_gaussians_matches_closed_form():
    rng = np.random.default_rng(0)
    n, d = 200_000, 3
    a = rng.normal(0.0, 1.0, size=(n, d))                      # N(0, I)
    b = rng.normal(1.0, 2.0, size=(n, d))                      # N(1, 4 I)
    # ||mu_a - mu_b||^2 + Tr(I + 4I - 2 * 2I) = 3 + 3 = 6
    assert metrics.frechet_distance(a, b) == pytest.approx(6.0, rel=0.02)


def test_frechet_is_symmetric_and_handles_rank_deficient_covariances():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(50, 64, generator=g)         # fewer samples than features: singular covariance
    b = torch.randn(60, 64, generator=g) + 0.3
    fab, fba = metrics.frechet_distance(a, b), metrics.frechet_distance(b, a)
    assert np.isfinite(fab) and fab > 0
    assert fab == pytest.approx(fba, rel=1e-6)


def test_frechet_rejects_mismatched_features():
    with pytest.raises(ValueError, match="same F"):
        metrics.frechet_distance(torch.zeros(10, 3), torch.zeros(10, 4))
    with pytest.raises(ValueError, match="at least two"):
        metrics.frechet_distance(torch.zeros(1, 3), torch.zeros(10, 3))


# --------------------------------------------------------------------------- nearest neighbours

def test_nearest_neighbour_distances_known_answers():
    ref = torch.zeros(3, 1, 2, 2)
    ref[1] += 1.0                    # all ones
    ref[2, 0, 0, 0] = 3.0
    samples = torch.stack([ref[1], torch.full((1, 2, 2), 0.5), ref[2] + 0.0])
    samples[2, 0, 1, 1] = 0.5        # ref[2] plus 0.5 in one pixel: 0.5 from ref[2], 2.5 from ref[1]
    d, idx = metrics.nearest_neighbour_distances(samples, ref, return_index=True)
    assert d.shape == (3,)
    assert torch.allclose(d, torch.tensor([0.0, 1.0, 0.5]), atol=1e-3)   # 0.5 off in 4 pixels -> 1.0
    assert idx[0] == 1 and idx[2] == 2


def test_nearest_neighbour_distances_in_batches_agree():
    g = torch.Generator().manual_seed(0)
    s, r = torch.rand(37, 1, 5, 5, generator=g), torch.rand(20, 1, 5, 5, generator=g)
    brute = torch.cdist(s.flatten(1), r.flatten(1)).min(1).values
    assert torch.allclose(metrics.nearest_neighbour_distances(s, r, batch_size=8), brute, atol=1e-4)
    with pytest.raises(ValueError, match="same image size"):
        metrics.nearest_neighbour_distances(s, torch.rand(4, 1, 6, 6))


def test_within_class_spread_known_answers():
    y = torch.tensor([0, 0, 1, 1])
    same = torch.ones(4, 1, 2, 2)
    assert metrics.within_class_spread(same, y) == 0.0              # a collapsed generator
    x = torch.zeros(4, 1, 2, 2)
    x[1] += 1.0                                                      # class 0: all-0 and all-1 images, 2 apart
    assert metrics.within_class_spread(x, y) == pytest.approx(0.5 * 2.0, rel=1e-6)   # class 1 has 0
    with pytest.raises(ValueError):
        metrics.within_class_spread(x[:2], torch.tensor([0, 1]))


# --------------------------------------------------------------------------- classifier

def test_classifier_shapes_for_28_and_8_pixels():
    for size in (28, 8):
        model = metrics.CourseClassifier(metrics.ClassifierConfig(image_size=size)).eval()
        x = torch.rand(7, 1, size, size)
        assert model(x).shape == (7, 10)
        assert metrics.classifier_features(model, x).shape == (7, 128)


def test_histogram_and_accuracy_with_a_fixed_model():
    class Fixed(torch.nn.Module):   # predicts class = round(mean pixel * 10), capped at 9
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            k = (x.flatten(1).mean(1) * 10).round().long().clamp(0, 9)
            return torch.nn.functional.one_hot(k, 10).float()

    x = torch.cat([torch.full((3, 1, 4, 4), 0.2), torch.full((2, 1, 4, 4), 0.7)])
    hist = metrics.predicted_class_histogram(Fixed(), x)
    assert hist.tolist() == [0, 0, 3, 0, 0, 0, 0, 2, 0, 0]
    y = torch.tensor([2, 2, 2, 7, 1])
    assert metrics.class_accuracy(Fixed(), x, y) == pytest.approx(0.8)


def test_get_classifier_trains_caches_and_reloads_identically(data_dir, capsys, monkeypatch):
    monkeypatch.setenv("GENAI_FAST", "1")
    data = _toy_data(size=8)
    model = metrics.get_classifier(data, device="cpu")
    out = capsys.readouterr().out
    assert "trained and saved" in out and "test accuracy" in out
    path = metrics.cache_path(data)
    assert path.exists() and path.name.endswith("-fast.pt") and "8x8" in path.name and "n300" in path.name
    assert model.test_accuracy > 0.9            # separable toy data
    again = metrics.get_classifier(data, device="cpu")
    assert "loaded from" in capsys.readouterr().out
    x = data.x_test[:20]
    assert torch.equal(metrics.classifier_features(model, x), metrics.classifier_features(again, x))
    assert not again.training


def test_get_classifier_does_not_move_the_callers_random_stream(data_dir, monkeypatch):
    monkeypatch.setenv("GENAI_FAST", "1")
    torch.manual_seed(123)
    metrics.get_classifier(_toy_data(size=8), device="cpu", verbose=False)   # trains
    after_training = torch.rand(3)
    torch.manual_seed(123)
    metrics.get_classifier(_toy_data(size=8), device="cpu", verbose=False)   # loads
    assert torch.equal(torch.rand(3), after_training)


def test_corrupt_cache_is_retrained_with_one_sentence(data_dir, capsys, monkeypatch):
    monkeypatch.setenv("GENAI_FAST", "1")
    data = _toy_data(size=8)
    path = metrics.cache_path(data)
    path.write_bytes(b"not a checkpoint")
    model = metrics.get_classifier(data, device="cpu")
    out = capsys.readouterr().out
    assert "could not be read" in out and "trained again" in out
    assert model.test_accuracy > 0.9
    torch.load(path, weights_only=True)          # the cache was rewritten with a valid file


def test_cache_keys_differ_by_size_fast_mode_and_dataset():
    a = _toy_data(size=8)
    b = _toy_data(size=8, n_train=200)
    keys = {metrics.cache_path(a, fast=True), metrics.cache_path(a, fast=False), metrics.cache_path(b, fast=False),
            metrics.cache_path(_toy_data(size=8, name="other"), fast=False)}
    assert len(keys) == 4


# --------------------------------------------------------------------------- one spread, the Inception Score, ratios

def test_within_class_spread_is_the_mean_distance_over_pairs_of_each_class():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(9, 1, 3, 3, generator=g), torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    expected = []
    for k in range(3):
        group = x[y == k].flatten(1)
        d = [torch.dist(a, b) for i, a in enumerate(group) for j, b in enumerate(group) if i != j]
        expected.append(torch.stack(d).mean())
    assert metrics.within_class_spread(x, y) == pytest.approx(torch.stack(expected).mean().item(), rel=1e-6)
    # a class with a single image contributes nothing, float64 input gives the same answer
    assert metrics.within_class_spread(x[:4].double(), y[:4]) == pytest.approx(expected[0].item(), rel=1e-6)


def test_there_is_one_within_class_spread():
    import utils.diffusion
    assert not hasattr(utils.diffusion, "within_class_spread")


@pytest.mark.parametrize("k", [2, 10])
def test_inception_score_of_confident_evenly_spread_predictions_is_the_number_of_classes(k):
    probs = torch.eye(k).repeat(5, 1)                                # (5k, k): each sample sure, classes even
    assert metrics.inception_score(probs) == pytest.approx(k, rel=1e-9)
    assert metrics.inception_score(probs.float()) == pytest.approx(k, rel=1e-6)


def test_inception_score_is_one_for_collapsed_or_unsure_predictions():
    assert metrics.inception_score(torch.eye(4)[[2, 2, 2]]) == pytest.approx(1.0)    # all the same class
    assert metrics.inception_score(torch.full((6, 4), 0.25)) == pytest.approx(1.0)   # nobody is sure


def test_inception_score_known_mixture():
    # half the samples sure of class 0, half unsure between 0 and 1: p(y) = (3/4, 1/4)
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    kl_sure = np.log(1 / 0.75)
    kl_unsure = 0.5 * np.log(0.5 / 0.75) + 0.5 * np.log(0.5 / 0.25)
    assert metrics.inception_score(probs) == pytest.approx(np.exp((kl_sure + kl_unsure) / 2), rel=1e-9)


def test_inception_score_rejects_logits_and_bad_shapes():
    with pytest.raises(ValueError, match="probabilities"):
        metrics.inception_score(torch.tensor([[2.0, -1.0], [0.3, 0.1]]))
    with pytest.raises(ValueError, match="shape"):
        metrics.inception_score(torch.ones(4))


def test_inception_score_images_uses_the_classifiers_softmax():
    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):                        # class = brightest of 3 pixel groups, very sure
            return 50.0 * x.flatten(1)[:, :3]

    x = torch.zeros(6, 1, 2, 2)
    for i in range(6):
        x[i].view(-1)[i % 3] = 1.0                   # two images of each of the 3 classes
    assert metrics.inception_score_images(Fixed(), x) == pytest.approx(3.0, rel=1e-6)


def test_mean_and_spread():
    assert metrics.mean_and_spread([2.0]) == (2.0, 0.0)
    mean, spread = metrics.mean_and_spread([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0) and spread == pytest.approx(1.0)
    with pytest.raises(ValueError):
        metrics.mean_and_spread([])


def test_frechet_ratio_is_one_for_the_baseline_set_and_needs_equal_sizes():
    model = metrics.CourseClassifier(metrics.ClassifierConfig(image_size=8))
    x_a, _ = _toy_images(40, 8, 0)
    x_b, _ = _toy_images(40, 8, 1)
    ref = metrics.classifier_features(model, x_a)
    baseline = metrics.frechet_distance(metrics.classifier_features(model, x_b), ref)
    assert metrics.frechet_ratio(model, x_b, ref, baseline) == pytest.approx(1.0, rel=1e-9)
    with pytest.raises(ValueError, match="equal sample sizes"):
        metrics.frechet_ratio(model, x_b[:20], ref, baseline)


# --------------------------------------------------------------------------- bits per dimension, evenness

def test_bits_per_dim_converts_nats_per_image():
    assert metrics.bits_per_dim(784 * np.log(2), 784) == pytest.approx(1.0)      # one bit per pixel
    assert metrics.bits_per_dim(100.0, 196) == pytest.approx(100.0 / 196 / np.log(2))
    assert metrics.bits_per_dim(0.0, 10) == 0.0
    with pytest.raises(ValueError, match="positive number of dimensions"):
        metrics.bits_per_dim(1.0, 0)


def test_class_evenness_known_answers():
    assert metrics.class_evenness(torch.full((10,), 0.1)) == pytest.approx(1.0)
    assert metrics.class_evenness(torch.tensor([1.0, 0, 0, 0])) == pytest.approx(0.0)
    assert metrics.class_evenness(torch.tensor([0.5, 0.5, 0, 0])) == pytest.approx(0.5)   # log 2 / log 4
    assert metrics.class_evenness([3, 3]) == pytest.approx(1.0)                          # counts work too
    with pytest.raises(ValueError):
        metrics.class_evenness(torch.tensor([1.0]))
