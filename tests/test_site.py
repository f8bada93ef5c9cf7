"""The course website (`make site FAST=1` first): no answers published, and a real-browser check of every page.

The browser is Debian's chromium driven by Playwright (never a downloaded browser). Without a built site these
tests skip; without chromium they skip too, except under CI=true, where a missing browser fails.
"""
import functools
import html
import http.server
import os
import re
import threading
from pathlib import Path

import pytest

from course import config
from course.notebook import read_notebook, source_text
from course.site import EXPLORE_CALL, SEARCH_WORD, SITE_DIR, WIDGET_NOTE, mode_dir

SCREENSHOTS = SITE_DIR / "screenshots"
LESSONS = [p.stem for p in config.solution_paths()]


def built_site() -> Path:
    """The fast build when there is one (what CI builds), else the full build."""
    for fast in (True, False):
        html_dir = mode_dir(fast) / "html"
        if (html_dir / "index.html").is_file():
            return html_dir
    pytest.skip("no built site: run `make site FAST=1` first.")


@pytest.fixture(scope="module")
def site() -> Path:
    return built_site()


def page_text(path: Path) -> str:
    """What a reader sees of a page: tags dropped (so highlighted code reads as one string), entities decoded."""
    text = re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8"))
    return re.sub(r"\s+", " ", html.unescape(text))


def solution_only_lines(name: str) -> list[str]:
    """Lines inside the BEGIN/END SOLUTION regions of a solution notebook that no published source contains
    (no student notebook, no guide, no utils module), so finding one on the site means an answer leaked."""
    lesson_text = "".join(source_text(c) for p in sorted(config.LESSONS.glob("*.ipynb"))
                          for c in read_notebook(p)["cells"])
    lesson_text += "".join(p.read_text(encoding="utf-8") for p in sorted((config.ROOT / "docs").glob("*.md")))
    # utils is published with the course (lessons print some of it with inspect.getsource): a line it holds,
    # such as the DDPM sampler's call to predict_eps, can be on the site without any answer leaking
    lesson_text += "".join(p.read_text(encoding="utf-8") for p in sorted((config.ROOT / "utils").rglob("*.py")))
    lines, inside = [], False
    for cell in read_notebook(config.SOLUTIONS / name)["cells"]:
        for line in source_text(cell).splitlines():
            if line.strip() == config.BEGIN_SOLUTION:
                inside = True
            elif line.strip() == config.END_SOLUTION:
                inside = False
            elif inside and len(line.strip()) >= 16 and line.strip() not in lesson_text:
                lines.append(re.sub(r"\s+", " ", line.strip()))
    return lines


@pytest.mark.parametrize("lesson", LESSONS)
def test_no_answer_is_published(site, lesson):
    answers = solution_only_lines(f"{lesson}.ipynb")
    assert answers, f"{lesson} has no solution-only line to look for"
    published = " ".join(page_text(p) for p in site.rglob("*") if p.suffix in {".html", ".txt", ".js", ".ipynb"}
                         and p.is_file())
    leaked = [line for line in answers if line in published]
    assert not leaked, f"answers of {lesson} are on the site, e.g. {leaked[0]!r}"


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_page_has_its_figures_launch_links_and_download(site, lesson):
    page = (site / "lessons" / f"{lesson}.html").read_text(encoding="utf-8")
    assert len(re.findall(r"<img [^>]*src=\"[^\"]*\.png\"", page)) >= 1, "no figure on the page"
    assert f"colab.research.google.com/github/{config.REPO}/blob/{config.BRANCH}/lessons/{lesson}.ipynb" in page
    assert f"kaggle.com/kernels/welcome?src=https://github.com/{config.REPO}/blob/{config.BRANCH}/lessons/{lesson}.ipynb" in page
    download = re.search(rf'href="(\.\./_downloads/[0-9a-f]+/{lesson}\.ipynb)"', page)
    assert download, "no download link for the notebook"
    assert (site / "lessons" / download.group(1)).resolve().is_file()
    explorers = sum(c["cell_type"] == "code" and EXPLORE_CALL in source_text(c)
                    for c in read_notebook(config.LESSONS / f"{lesson}.ipynb")["cells"])
    assert page_text(site / "lessons" / f"{lesson}.html").count(WIDGET_NOTE.strip("*")) == explorers


def test_pages_load_nothing_from_the_network(site):
    remote = re.compile(r"""<(?:script|link|img)\b[^>]*(?:src|href)=["']https?://""")
    for path in site.rglob("*.html"):
        tags = [t for t in remote.findall(path.read_text(encoding="utf-8"))]
        assert not tags, f"{path.relative_to(site)} loads {tags[0]}... from the network"
    for css in (site / "_static").rglob("*.css"):
        assert not re.search(r"url\(\s*['\"]?https?://|@import\s+['\"]?https?://", css.read_text(encoding="utf-8")), css


def test_results_page_shows_the_benchmark(site):
    """The page shows the measured figures of the results file the site was built from, beside their targets."""
    import json
    page = (site / "results.html").read_text(encoding="utf-8")
    entries = {e["lesson"][:2]: e for e in json.loads((config.BENCH_DIR / "results.json").read_text(encoding="utf-8"))}
    measured = entries["06"]["metrics"]["gpt_pretrain_val_loss_nats"]
    assert f"{measured:.4g}" in page, "the results page does not show lesson 06's measured validation loss"
    assert "≤ 1.8" in page and "Machine" in page and page.count('.png"') >= 2


# ------------------------------------------------------------------ in a real browser (conftest.browser)


@pytest.fixture(scope="module")
def served(site):
    """The built site over HTTP on 127.0.0.1 (search needs it: file:// pages cannot load the index)."""
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def open_page(browser, url: str):
    """A new page at ``url``, with every console error and uncaught exception collected in ``page.errors``."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.errors = []
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("requestfailed", lambda req: page.errors.append(f"request failed: {req.url}"))
    page.on("response", lambda res: page.errors.append(f"{res.status}: {res.url}") if res.status >= 400 else None)
    page.goto(url, wait_until="load")
    return page


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_page_in_the_browser(browser, served, lesson):
    page = open_page(browser, f"{served}/lessons/{lesson}.html")
    page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20_000)
    page.evaluate("MathJax.startup.promise")
    figures = page.evaluate("""[...document.querySelectorAll('main img')]
        .filter(img => img.complete && img.naturalWidth > 0).length""")
    assert figures >= 1, "no figure loaded"
    typeset = page.evaluate("document.querySelectorAll('main mjx-container').length")
    raw = page.evaluate("""[...document.querySelectorAll('main p, main li, main td')]
        .filter(el => !el.closest('pre, code') && /\\$\\$|\\\\\\(|\\\\\\[/.test(el.innerText)).length""")
    assert typeset >= 1 and raw == 0, f"{typeset} maths elements typeset, {raw} paragraphs with raw TeX"
    if lesson == LESSONS[0]:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{lesson}.png"))
    assert not page.errors, f"console errors: {page.errors[:3]}"
    page.close()


def test_home_page_and_search_in_the_browser(browser, served):
    page = open_page(browser, f"{served}/index.html")
    assert page.locator("main a[href*='lessons/']").count() >= len(LESSONS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "home.png"), full_page=True)
    assert not page.errors, f"console errors: {page.errors[:3]}"
    page.close()

    page = open_page(browser, f"{served}/search.html?q={SEARCH_WORD}")
    hit = page.locator("#search-results a[href*='05_diffusion']").first
    hit.wait_for(timeout=20_000)
    assert not page.errors, f"console errors: {page.errors[:3]}"
    page.close()


# ------------------------------------------------------------------ without a build


def test_readme_names_the_site_address_derived_from_repo():
    from course.readme import site_address

    owner, name = config.REPO.split("/")
    assert site_address() == f"https://{owner.lower()}.github.io/{name}/"
    assert site_address() in (config.ROOT / "README.md").read_text(encoding="utf-8")


def test_site_notebook_has_text_launch_links_a_download_and_a_note_per_explorer():
    from course.site import site_notebook

    path = config.LESSONS / f"{LESSONS[0]}.ipynb"
    nb = site_notebook(path)
    text = "".join(source_text(c) for c in nb["cells"])
    assert "[Open In Colab](https://colab.research.google.com/" in text and "[Open in Kaggle](" in text
    assert "![" not in source_text(next(c for c in nb["cells"] if config.BADGES_TAG in c["metadata"].get("tags", [])))
    assert f"{{download}}`Download the notebook <{path.name}>`" in text
    explorers = sum(c["cell_type"] == "code" and EXPLORE_CALL in source_text(c) for c in nb["cells"])
    assert explorers >= 1 and text.count(WIDGET_NOTE) == explorers


def test_repository_links_point_at_site_pages_or_github():
    from course.site import GITHUB, site_links

    guide = config.ROOT / "docs" / "AUTHORING.md"
    pages = {(config.LESSONS / "01_x.ipynb").resolve(): "lessons/01_x.ipynb"}
    text = site_links("[a](../lessons/01_x.ipynb) [b](../course/config.py#L3) [c](https://x.org) ![i](p.png)", guide, pages)
    assert text == (f"[a](lessons/01_x.ipynb) [b]({GITHUB}/blob/{config.BRANCH}/course/config.py#L3) "
                    "[c](https://x.org) ![i](p.png)")
