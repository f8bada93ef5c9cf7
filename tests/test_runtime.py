"""runtime, train, plots and widgets helpers."""
import json

import numpy as np
import pytest
import torch

import utils
from utils import plots, runtime, train, widgets


def test_budget_follows_the_fast_switch(monkeypatch):
    monkeypatch.setenv("GENAI_FAST", "1")
    assert utils.budget(full=10, fast=1) == 1 and utils.is_fast()
    monkeypatch.setenv("GENAI_FAST", "0")
    assert utils.budget(full=10, fast=1) == 10 and not utils.is_fast()
    monkeypatch.delenv("GENAI_FAST")
    expected_gpu = 30 if torch.cuda.is_available() else 10
    assert utils.budget(full=10, fast=1, gpu=30) == expected_gpu


def test_get_device_with_override(monkeypatch):
    assert utils.get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("GENAI_DEVICE", "cpu")
    assert utils.get_device() == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            utils.get_device("cuda")
        monkeypatch.delenv("GENAI_DEVICE")
        assert utils.get_device().type in {"cpu", "mps"}


def test_seed_everything_is_reproducible():
    utils.seed_everything(3)
    a = torch.rand(3), np.random.rand()
    g = utils.seed_everything(3)
    assert torch.equal(a[0], torch.rand(3)) and a[1] == np.random.rand()
    assert torch.equal(torch.rand(2, generator=g), torch.rand(2, generator=torch.Generator().manual_seed(3)))


def test_platform_detection(monkeypatch):
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.setattr(runtime.Path, "is_dir", lambda self: False)
    assert utils.platform() == "local"
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert utils.platform() == "kaggle"
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release")
    assert utils.platform() == "colab"


def test_print_environment(capsys):
    utils.print_environment()
    out = capsys.readouterr().out
    assert "torch" in out and "device" in out and "Fast mode" in out


def test_report_metric_writes_for_the_benchmark(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENAI_METRICS_FILE", str(tmp_path / "m.json"))
    utils.report_metric("acc", torch.tensor(0.5))
    utils.report_metric("loss", 1.25, "nats")
    assert json.loads((tmp_path / "m.json").read_text()) == {"acc": 0.5, "loss": 1.25}
    assert "[metric] loss = 1.25 nats" in capsys.readouterr().out


def test_batches_cover_everything_once():
    x, y = torch.arange(10), torch.arange(10) * 2
    seen = torch.cat([xb for xb, yb in utils.batches(x, y, batch_size=3, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))
    assert all(torch.equal(yb, xb * 2) for xb, yb in utils.batches(x, y, batch_size=4))
    assert [len(b) for b in utils.batches(x, batch_size=4, drop_last=True)] == [4, 4]
    assert train.batches_per_epoch(10, 4) == 3
    with pytest.raises(ValueError, match="same length"):
        next(utils.batches(x, y[:5], batch_size=2))


def test_loss_history_records_and_draws():
    history = utils.LossHistory(title="t")
    for step in range(120):
        history.log(step, train=1.0 / (step + 1))
    history.log(119, test=0.1)
    assert history.last("test") == 0.1 and len(history.values["train"]) == 120
    fig = history.figure(baselines={"bigram": 0.5})
    assert fig.axes[0].get_title() == "t"
    assert history.plot(every=10) is not None and history.plot(every=10) is None


def test_image_grid_shape_and_range():
    grid = plots.image_grid(torch.rand(10, 1, 5, 5) * 3 - 1, nrow=4, pad=1)
    assert grid.shape == (3 * 6 + 1, 4 * 6 + 1) and grid.min() >= 0 and grid.max() <= 1
    with pytest.raises(ValueError, match="single-channel"):
        plots.image_grid(torch.rand(2, 3, 5, 5))


def test_scatter_and_compare_rows():
    fig = plots.scatter_2d(torch.randn(50, 2), torch.arange(50) % 3, title="z")
    assert len(fig.axes[0].collections) == 3
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plots.scatter_2d(torch.randn(5, 3))
    fig = plots.compare_rows({"a": torch.rand(4, 1, 6, 6), "b": torch.rand(4, 1, 6, 6)}, n=4)
    assert len(fig.axes) == 2


def test_widgets_are_thin(capsys):
    s = widgets.slider(0.5, 0.0, 1.0, 0.1, "x")
    assert s.value == 0.5 and s.continuous_update is False
    with pytest.raises(ValueError, match="outside"):
        widgets.slider(2.0, 0.0, 1.0)
    calls = []
    assert widgets.explore(lambda x, k: calls.append((x, k)) or np.zeros((4, 4)), x=s, k=3) is None
    assert calls == [(0.5, 3)], "the explorer draws once at start with the slider's value"
    s.value = 1.0
    assert calls[-1] == (1.0, 3), "moving the slider calls the plain function again"


def test_static_widgets_draw_the_default_figure_as_a_plain_output(monkeypatch):
    """The website's build sets GENAI_STATIC_WIDGETS=1: the figure goes to the cell's outputs, no sliders."""
    import IPython.display

    monkeypatch.setenv(widgets.STATIC_ENV, "1")
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    calls = []
    s = widgets.slider(0.25, 0.0, 1.0, 0.05, "x")
    assert widgets.explore(lambda x, k: calls.append((x, k)) or np.zeros((4, 4)), x=s, k=3) is None
    assert calls == [(0.25, 3)]
    assert len(shown) == 1 and hasattr(shown[0], "savefig"), "one matplotlib figure, no widget box"
