"""Thin ipywidgets wrappers. Each explorer is a plain function (parameters -> figure or image
array) that tests call directly; these helpers only wire sliders to it.

Works with ipywidgets 7.7 (Colab) and 8 (Kaggle, JupyterLab 4).
"""
from __future__ import annotations

import os

import numpy as np

# Set by the course website's build: each explorer draws its default figure once, as a plain output,
# because a static page has no kernel to redraw it (the page says the sliders work in the notebook).
STATIC_ENV = "GENAI_STATIC_WIDGETS"


def _widgets():
    try:
        import ipywidgets
        return ipywidgets
    except ImportError:
        return None


def slider(value: float, low: float, high: float, step: float | None = None, description: str = "",
           integer: bool = False, continuous_update: bool = False):
    """A float or int slider that redraws on release (``continuous_update=False``) by default."""
    w = _widgets()
    if w is None:
        return value
    if not low <= value <= high:
        raise ValueError(f"Slider {description!r}: start value {value} lies outside [{low}, {high}].")
    cls = w.IntSlider if integer else w.FloatSlider
    kwargs = dict(value=value, min=low, max=high, description=description, continuous_update=continuous_update,
                  style={"description_width": "initial"}, layout=w.Layout(width="420px"))
    if step is not None:
        kwargs["step"] = step
    return cls(**kwargs)


def dropdown(options, value=None, description: str = ""):
    w = _widgets()
    if w is None:
        return value if value is not None else list(options)[0]
    return w.Dropdown(options=options, value=value if value is not None else list(options)[0],
                      description=description, style={"description_width": "initial"})


def text_box(value: str, description: str = "prompt"):
    """A text box that updates on Enter or on leaving the box (a plain string when ipywidgets is missing)."""
    w = _widgets()
    if w is None:
        return value
    return w.Text(value=value, description=description, continuous_update=False,
                  style={"description_width": "initial"}, layout=w.Layout(width="420px"))


def _render(result):
    """Show what an explorer function returned: a matplotlib Figure, or an image array."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    if result is None:
        return
    if hasattr(result, "savefig"):
        display(result)
        plt.close(result)
        return
    image = np.asarray(result)
    fig, ax = plt.subplots(figsize=(3, 3))
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    display(fig)
    plt.close(fig)


def explore(fn, layout: str = "vertical", **controls):
    """Wire ``controls`` (widgets or fixed values) to ``fn(**values)`` and show its figure or image.

    Without ipywidgets it calls ``fn`` once with the starting values and says so.
    Returns None (the widgets are displayed, not returned).
    """
    from IPython.display import display

    w = _widgets()
    static = os.environ.get(STATIC_ENV, "") == "1"
    if w is None or static:
        if not static:
            print("ipywidgets is not installed, so this shows one static view (pip install ipywidgets for sliders).")
        _render(fn(**{k: getattr(v, "value", v) for k, v in controls.items()}))
        return
    live = {k: v for k, v in controls.items() if isinstance(v, w.ValueWidget)}
    fixed = {k: v for k, v in controls.items() if k not in live}

    def redraw(**values):  # interactive_output clears and captures around each call
        _render(fn(**values, **fixed))

    out = w.interactive_output(redraw, live)
    box = w.HBox if layout == "horizontal" else w.VBox
    display(w.VBox([box(list(live.values())), out]))
    # Nothing is returned, so a cell ending in explore(...) does not show the sliders a second time.
