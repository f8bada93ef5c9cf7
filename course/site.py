"""The course website: ``python -m course site [--fast]`` builds ``_site/<mode>/html`` offline.

Sphinx + myst-nb execute the *student* notebooks (lessons/) through jupyter-cache, so a rebuild re-runs only
the notebooks whose code changed. The generated Sphinx sources live in ``_site/<mode>/src`` (inside the
repository, so each notebook's setup cell finds the course by walking up from its folder); files are only
rewritten when their text changes, so Sphinx re-reads only what changed. Everything under ``_site/`` is a
build output and git-ignored.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import config
from .notebook import dumps_notebook, has_tag, read_notebook, set_source, source_text
from .readme import lesson_title
from .stamp import badges_source

SITE_DIR = config.ROOT / "_site"
STATIC_WIDGETS_ENV = "GENAI_STATIC_WIDGETS"  # read by utils.widgets.explore (draw the default figure once)
EXPLORE_CALL = "utils.widgets.explore("
WIDGET_NOTE = ("*On this page the explorer shows its default setting; run the notebook (Colab, Kaggle or "
               "locally) and its controls redraw the figure.*")
SEARCH_WORD = "DDIM"  # a word of lesson 05 that the browser test searches for
GITHUB = f"https://github.com/{config.REPO}"
# Guides published when the file exists: (file under docs/, page name, title in the navigation)
GUIDES = [("INSTRUCTORS.md", "instructors", "Instructors' guide"), ("AUTHORING.md", "authoring", "Authoring guide"),
          ("GLOSSARY.md", "glossary", "Glossary")]
MATHJAX_PARTS = ["tex-chtml.js", "input", "output/chtml", "a11y", "ui", "adaptors"]

# The quality figures the results page sets beside a target: (lesson, metric, what it is, target, why that target).
# A target is a reference point the course's own prose or a well-known baseline gives, not a pass mark.
KEY_FIGURES = [
    ("01", "generative_low_rank_test_accuracy", "generative classifier (low-rank Gaussians): test accuracy",
     ("≥", "discriminative_test_accuracy"), "the logistic regression of the same lesson"),
    ("04", "cgan_class_accuracy", "conditional GAN: class accuracy of its samples",
     ("≥", 0.90), "the lesson's goal, >90 % without truncation at full settings"),
    ("04", "cgan_frechet_ratio", "conditional GAN: Fréchet ratio (1 = as close as real test digits)",
     ("→", 1.0), "real digits"),
    ("04", "gan_frechet_ratio", "unconditional GAN: Fréchet ratio", ("→", 1.0), "real digits"),
    ("05", "diffusion_guided_class_accuracy", "diffusion with guidance: class accuracy of its samples",
     ("≥", 0.90), "as for the conditional GAN"),
    ("05", "diffusion_ddpm_frechet_ratio", "diffusion, DDPM sampling: Fréchet ratio", ("→", 1.0), "real digits"),
    ("05", "diffusion_ddim50_frechet_ratio", "diffusion, DDIM 50 steps: Fréchet ratio", ("→", 1.0), "real digits"),
    ("06", "gpt_nanogpt_recipe_val_loss_nats", "GPT, nanoGPT's recipe: validation loss (nats/char)",
     ("≤", 1.88), "nanoGPT's README: about 1.88 for this model on Tiny Shakespeare"),
    ("06", "gpt_pretrain_val_loss_nats", "GPT, the course's recipe, same steps: validation loss (nats/char)",
     ("≤", 1.80), "the lesson's own target, below nanoGPT's about 1.88"),
    ("06", "gpt_bigram_val_loss_nats", "bigram baseline: validation loss (nats/char)", ("≥", 1.88),
     "a bigram cannot reach the GPT"),
]
TIME_BUDGET_S = {"05": 240}  # the per-lesson budget at full settings; every other lesson has DEFAULT_BUDGET_S
DEFAULT_BUDGET_S, MEMORY_BUDGET_MB = 180, 2048


def mode_dir(fast: bool) -> Path:
    return SITE_DIR / ("fast" if fast else "full")


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` unless the file already holds it (Sphinx re-reads a source whose time stamp moved)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


# ------------------------------------------------------------------ pages


def site_links(text: str, source: Path, pages: dict[Path, str]) -> str:
    """Relative Markdown links of a repository file, pointed at the site page or else at GitHub."""
    def fix(match):
        label, target = match.group(1), match.group(2)
        if re.match(r"[a-z]+:|#", target):
            return match.group(0)
        path_part, _, anchor = target.partition("#")
        resolved = (source.parent / path_part).resolve()
        if resolved in pages:
            return f"[{label}]({pages[resolved]}{'#' + anchor if anchor else ''})"
        rel = resolved.relative_to(config.ROOT).as_posix() if resolved.is_relative_to(config.ROOT) else path_part
        kind = "tree" if resolved.is_dir() else "blob"
        return f"[{label}]({GITHUB}/{kind}/{config.BRANCH}/{rel}{'#' + anchor if anchor else ''})"
    return re.sub(r"(?<!!)\[([^\]\n]*)\]\(([^)\s]+)\)", fix, text)


def plain_badges(markdown: str) -> str:
    """``[![alt](image)](link)`` badges as plain links: a page read offline must not fetch badge images."""
    return re.sub(r"\[!\[([^\]]*)\]\([^)]*\)\]\(([^)]*)\)", r"[\1](\2)", markdown).replace(") [", ") · [")


def site_notebook(path: Path) -> dict:
    """The student notebook as the site shows it: text launch links, a download link, a note per explorer."""
    nb = read_notebook(path)
    cells = []
    for cell in nb["cells"]:
        if has_tag(cell, config.BADGES_TAG):
            set_source(cell, plain_badges(source_text(cell)) + f" · {{download}}`Download the notebook <{path.name}>`")
        cells.append(cell)
        if cell["cell_type"] == "code" and EXPLORE_CALL in source_text(cell):
            note = {"cell_type": "markdown", "id": f"{cell.get('id', len(cells))}-site-note", "metadata": {},
                    "source": []}
            set_source(note, WIDGET_NOTE)
            cells.append(note)
    nb["cells"] = cells
    return nb


def readme_intro(pages: dict[Path, str]) -> str:
    """The README's opening (what the course is, who it is for), without its title."""
    readme = (config.ROOT / "README.md").read_text(encoding="utf-8")
    intro = readme.split("\n## ", 1)[0].split("\n", 1)[1].strip()
    return site_links(intro, config.ROOT / "README.md", pages)


def home_page(lessons: list[Path], guides: list[tuple[str, str]], pages: dict[Path, str]) -> str:
    rows = ["| # | lesson | run it |", "|---|---|---|"]
    for path in lessons:
        title = lesson_title(read_notebook(path), path.stem)
        rows.append(f"| {path.name[:2]} | [{title}](lessons/{path.stem}.ipynb) | "
                    f"{plain_badges(badges_source('lessons', path.name))} |")
    guide_pages = "\n".join(page for page, _ in guides)
    lesson_pages = "\n".join(f"lessons/{p.stem}" for p in lessons)
    return f"""# Generative AI, Hands-On

{readme_intro(pages)}

## Lessons

Each lesson page shows the student notebook run at full settings, with every figure and printed result;
the exercises are left for you to write (where one is not written, the notebook falls back to the
course's reference, and that is what produced the figures).

{chr(10).join(rows)}

## How to start

- **Colab or Kaggle:** click a link in the table. The notebook's first cell fetches the course and
  installs what is missing.
- **On your computer** (Linux or macOS, Python 3.11+, `make`):

  ```bash
  git clone {GITHUB}.git && cd {config.REPO.split('/')[1]}
  make lab    # creates .venv, installs everything, opens JupyterLab on lesson 01
  ```

- `GENAI_FAST=1` shrinks every budget so a notebook runs in seconds.

```{{toctree}}
:caption: Lessons
:maxdepth: 1
:hidden:

{lesson_pages}
```

```{{toctree}}
:caption: Course
:maxdepth: 1
:hidden:

results
{guide_pages}
```
"""


def figure_target(metrics: dict, target) -> float | None:
    relation, value = target
    return metrics.get(value) if isinstance(value, str) else value


def results_page(entries: list[dict], chart_names: list[str]) -> str:
    by_lesson = {e["lesson"][:2]: e for e in entries}
    rows = ["| lesson | figure | measured | target | target's source |", "|---|---|---|---|---|"]
    for number, metric, label, target, why in KEY_FIGURES:
        entry = by_lesson.get(number)
        if entry is None or metric not in entry["metrics"]:
            continue
        goal = figure_target(entry["metrics"], target)
        goal_text = "" if goal is None else f"{target[0]} {goal:.4g}"
        rows.append(f"| {number} | {label} | {entry['metrics'][metric]:.4g} | {goal_text} | {why} |")
    machines = sorted({f"{e['machine']}; Python {e['python']}, torch {e['torch']}" for e in entries})
    dates = sorted(e["date"] for e in entries)
    charts = "\n\n".join(f"![{name}]({name})" for name in chart_names)
    return f"""# Results

Every lesson's solution notebook, run once at full settings in a fresh kernel by `make bench`
(`python -m course bench`), which writes `benchmarks/results.json`; this page is drawn from that file when
the site is built.

- **Machine:** {'; '.join(machines)}
- **Date:** {dates[0]}{' to ' + dates[-1] if dates[-1] != dates[0] else ''}

## Time and memory per lesson

The dashed lines are the course's budgets: {DEFAULT_BUDGET_S} s per lesson ({TIME_BUDGET_S['05']} s for
lesson 05) and {MEMORY_BUDGET_MB // 1024} GB of memory.

{charts}

## Key quality figures

{chr(10).join(rows)}

Every metric each notebook reports is in
[benchmarks/RESULTS.md]({GITHUB}/blob/{config.BRANCH}/benchmarks/RESULTS.md).
"""


def save_png(fig, png: Path) -> None:
    """Save ``fig`` unless the file already holds the same bytes (so Sphinx sees no change)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    png.parent.mkdir(parents=True, exist_ok=True)
    if not png.exists() or png.read_bytes() != buffer.getvalue():
        png.write_bytes(buffer.getvalue())


def draw_favicon(png: Path) -> None:
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(0.32, 0.32), dpi=100)
    fig.text(0.5, 0.5, "G", ha="center", va="center", fontsize=20, weight="bold", color="tab:blue")
    save_png(fig, png)


def draw_charts(entries: list[dict], folder: Path) -> list[str]:
    """One bar chart of seconds and one of peak memory, a bar per lesson, with the budgets drawn in."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numbers = [e["lesson"][:2] for e in entries]
    names = []
    for key, ylabel, budgets, name in [
            ("seconds", "seconds at full settings", [TIME_BUDGET_S.get(n, DEFAULT_BUDGET_S) for n in numbers],
             "results-seconds.png"),
            ("peak_mb", "peak memory (MB)", [MEMORY_BUDGET_MB] * len(numbers), "results-memory.png")]:
        fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
        ax.bar(numbers, [e[key] for e in entries], color="tab:blue")
        for i, budget in enumerate(budgets):
            ax.hlines(budget, i - 0.4, i + 0.4, colors="tab:red", linestyles="dashed")
        ax.set_xlabel("lesson")
        ax.set_ylabel(ylabel)
        fig.tight_layout()
        save_png(fig, folder / name)
        names.append(name)
    return names


def copy_mathjax(static: Path) -> None:
    """MathJax 3 from the django-static-mathjax wheel (plain static files), so maths renders offline."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    if spec is None or spec.origin is None:
        raise SystemExit("MathJax is not installed: run `pip install -r requirements-site.txt`.")
    es5 = Path(spec.origin).parent / "static" / "mathjax" / "es5"
    target = static / "mathjax"
    for part in MATHJAX_PARTS:
        src, dst = es5 / part, target / part
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)


CONF_PY = """# Generated by course/site.py (`python -m course site`); edit sphinx_config there.
import sys
sys.path.insert(0, {root!r})
from course.site import sphinx_config
globals().update(sphinx_config(fast={fast!r}))
"""


def sphinx_config(fast: bool) -> dict:
    """Everything conf.py sets."""
    out = mode_dir(fast)
    return {
        "project": "Generative AI, Hands-On",
        "author": "the course's authors",
        "copyright": "the course's authors (MIT licence)",
        "extensions": ["myst_nb"],
        "exclude_patterns": ["_build", "**.ipynb_checkpoints"],
        "html_theme": "sphinx_book_theme",
        "html_title": "Generative AI, Hands-On",
        "html_static_path": ["_static"],
        "html_favicon": "_static/favicon.png",  # so a browser asks for no /favicon.ico the site does not have
        "html_context": {"default_mode": "light"},
        "html_last_updated_fmt": None,
        "html_theme_options": {
            "repository_url": GITHUB, "repository_branch": config.BRANCH, "path_to_docs": "",
            "use_repository_button": True, "use_download_button": True, "use_fullscreen_button": False,
            "show_toc_level": 2,
        },
        "mathjax_path": "mathjax/tex-chtml.js",
        "myst_enable_extensions": ["dollarmath", "amsmath"],
        "myst_heading_anchors": 3,
        "nb_execution_mode": "cache",
        "nb_execution_cache_path": str(out / "jupyter_cache"),
        "nb_execution_timeout": 600 if fast else 1800,
        "nb_execution_raise_on_error": True,
        "nb_execution_show_tb": True,
        "nb_merge_streams": True,
        # No widget JavaScript from a CDN: explorers are drawn statically, progress bars show their text.
        "nb_ipywidgets_js": {},
        "nb_mime_priority_overrides": [("html", "application/vnd.jupyter.widget-view+json", None),
                                       ("html", "application/vnd.jupyter.widget-state+json", None)],
    }


def prepare(fast: bool) -> Path:
    """Write the Sphinx sources for one mode; return their folder."""
    src = mode_dir(fast) / "src"
    lessons = sorted(config.LESSONS.glob("[0-9][0-9]_*.ipynb"))
    guides = [(name, page, title) for name, page, title in GUIDES if (config.ROOT / "docs" / name).exists()]
    pages = {p.resolve(): f"lessons/{p.stem}.ipynb" for p in lessons}
    pages |= {(config.ROOT / "docs" / name).resolve(): f"{page}.md" for name, page, _ in guides}
    expected = {src / "conf.py": CONF_PY.format(root=str(config.ROOT), fast=fast),
                src / "index.md": home_page(lessons, [(page, title) for _, page, title in guides], pages)}
    for path in lessons:
        expected[src / "lessons" / path.name] = dumps_notebook(site_notebook(path))
    for name, page, _ in guides:
        source = config.ROOT / "docs" / name
        expected[src / f"{page}.md"] = site_links(source.read_text(encoding="utf-8"), source, pages)
    entries = json.loads((config.BENCH_DIR / "results.json").read_text(encoding="utf-8"))
    charts = draw_charts(entries, src) if entries else []
    expected[src / "results.md"] = results_page(entries, charts)
    keep = set(expected) | {src / name for name in charts}
    for path in sorted(src.rglob("*.md")) + sorted(src.rglob("*.ipynb")) if src.exists() else []:
        if path not in keep:  # a page whose source is gone (a renamed lesson, a removed guide)
            path.unlink()
    for path, text in expected.items():
        write_if_changed(path, text)
    copy_mathjax(src / "_static")
    draw_favicon(src / "_static" / "favicon.png")
    return src


def build_site(fast: bool) -> int:
    out = mode_dir(fast)
    src = prepare(fast)
    env = {**os.environ, STATIC_WIDGETS_ENV: "1"}
    env.pop("GENAI_FAST", None)
    if fast:
        env["GENAI_FAST"] = "1"
    # -W: any warning fails the build (a broken internal link or a missing image is a warning);
    # -n: nitpicky, so an unresolved reference is reported too.
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n", "-q",
           "-d", str(out / "doctrees"), str(src), str(out / "html")]
    start = time.perf_counter()
    code = subprocess.run(cmd, env=env, cwd=config.ROOT).returncode
    seconds = time.perf_counter() - start
    if code == 0:
        size = sum(p.stat().st_size for p in (out / "html").rglob("*") if p.is_file())
        print(f"site: built {out.relative_to(config.ROOT) / 'html'} ({'fast' if fast else 'full'} settings) "
              f"in {seconds:.0f} s, {size / 2**20:.1f} MiB; open {out.relative_to(config.ROOT) / 'html' / 'index.html'}")
    else:
        print(f"site: the build failed after {seconds:.0f} s (see the warnings above).")
    return code
