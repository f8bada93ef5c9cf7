"""What a learner sees in JupyterLab: every solution notebook (fast mode) run in real JupyterLab, in headless
chromium driven by Playwright. Each explorer's controls render as widgets (not as text), moving a slider or
choosing from a dropdown redraws the image below it, and no cell shows an error. Screenshots of every
explorer go to tests/artifacts/screenshots/ (git-ignored; CI keeps the folder).

The browser is Debian's chromium (never a downloaded one; the `browser` fixture in conftest.py). Without it
the test skips with what to install, except under CI=true, where it fails.

It is part of `make test` and so of CI (about three minutes on a quiet 2-core machine); `make browser-test` runs
it alone. GENAI_LAB_BROWSER=0 leaves it out of a quick local `pytest tests`; under CI=true it always runs.
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from course import config

SCREENSHOTS = config.ROOT / "tests" / "artifacts" / "screenshots"
NOTEBOOKS = [p.name for p in config.solution_paths()]
CONTROLS_PER_EXPLORER = 2  # keeps CI time low; every explorer still gets its first controls moved
SERVER_START_S = 120
RUN_ALL_S = 600  # a fast-mode notebook takes 10-40 s on a quiet 2-core machine; a busy one is slower
REDRAW_S = 120
NOT_WIDGETS = ("IntSlider(", "FloatSlider(", "Dropdown(", "Loading widget")

pytestmark = pytest.mark.skipif(os.environ.get("GENAI_LAB_BROWSER") == "0" and os.environ.get("CI") != "true",
                                reason="GENAI_LAB_BROWSER=0 leaves out the JupyterLab browser test (make browser-test runs it).")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server in its own process group, with its REST API (token auth)."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token

    def api(self, method: str, path: str):
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shut_down_kernels(self):
        for session in self.api("GET", "sessions"):
            self.api("DELETE", f"sessions/{session['id']}")


@pytest.fixture(scope="module")
def lab():
    token, port = secrets.token_hex(16), free_port()
    scratch = Path(tempfile.mkdtemp(prefix="genai-lab-"))
    settings = scratch / "user-settings" / "@jupyterlab" / "docmanager-extension"
    settings.mkdir(parents=True)
    # Running cells changes the notebook in the browser; autosave off keeps solutions/ as committed.
    (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    notices = scratch / "user-settings" / "@jupyterlab" / "apputils-extension"
    notices.mkdir(parents=True)  # no "Would you like to get notified about Jupyter news?" over the screenshots
    (notices / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    command = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", f"--port={port}",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={token}", f"--ServerApp.root_dir={config.ROOT}",
               "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={scratch / 'user-settings'}",
               f"--LabApp.workspaces_dir={scratch / 'workspaces'}",
               "--ServerApp.open_browser=False"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    env = {**os.environ, "GENAI_FAST": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline",
           "JUPYTER_RUNTIME_DIR": str(scratch / "runtime")}
    env.pop("GENAI_STATIC_WIDGETS", None)
    log = (scratch / "server.log").open("wb")
    process = subprocess.Popen(command, cwd=config.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    server = Lab(f"http://127.0.0.1:{port}", token)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with {process.returncode}: "
                            f"{(scratch / 'server.log').read_text(errors='replace')[-2000:]}")
            try:
                server.api("GET", "status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s.")
                time.sleep(0.5)
        yield server
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)


# JavaScript run in the page. `panel` is the notebook Lab shows; its kernel status and cell prompts tell
# when "Run All" has finished.
NOTEBOOK_READY = """() => {
  const app = window.jupyterapp; if (!app) return false;
  const panel = app.shell.currentWidget;
  if (!panel || !panel.sessionContext || !panel.content || !panel.content.widgets.length) return false;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return panel.sessionContext.isReady && !!kernel && kernel.status === 'idle';
}"""

RUN_FINISHED = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!kernel || kernel.status !== 'idle') return false;
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
  return prompts.length > 0 && !prompts.some(p => p.textContent.includes('[*]'))
      && panel.content.widgets.some(c => c.model.type === 'code' && c.model.executionCount);
}"""

NOT_RUN_CELLS = """() => window.jupyterapp.shell.currentWidget.content.widgets
  .map((c, i) => [i, c.model.type === 'code' && c.model.sharedModel.getSource().trim() !== ''
                     && !c.model.executionCount])
  .filter(([i, missing]) => missing).map(([i]) => i)"""

IMAGE_CHANGED = """([out, before]) => {
  const images = [...out.querySelectorAll('img')].map(i => i.src);
  return images.length > 0 && images.join('|') !== before;
}"""


def images_of(output) -> str:
    return output.evaluate("out => [...out.querySelectorAll('img')].map(i => i.src).join('|')")


def errors_on(page) -> list[str]:
    shown = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]').all_inner_texts()
    stderr = page.locator('.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    return shown + [text for text in stderr if "Traceback" in text]


def open_notebook(page, lab: Lab, name: str):
    """Open solutions/NAME in Lab (a fresh workspace); a navigation the browser drops is retried once."""
    url = f"{lab.url}/lab/tree/solutions/{name}?reset&token={lab.token}"
    for attempt in range(2):
        try:
            page.goto(url, wait_until="domcontentloaded", timeout=120_000)
            page.wait_for_function(NOTEBOOK_READY, timeout=180_000, polling=500)
            return
        except Exception as error:  # playwright's Error or TimeoutError: the page or its socket was dropped
            if attempt == 1 or "net::" not in str(error):
                raise


def move(control, page) -> str:
    """Change one control the way a learner does; says which it was."""
    select = control.locator("select")
    if select.count():
        options = select.locator("option").all_inner_texts()
        current = select.evaluate("s => s.selectedIndex")
        select.select_option(index=(current + 1) % len(options))
        return f"dropdown {options[current]!r} -> {options[(current + 1) % len(options)]!r}"
    handle = control.locator(".noUi-handle, .ui-slider-handle").first
    readout = control.locator(".widget-readout")
    start = readout.inner_text()
    handle.focus()
    page.keyboard.press("ArrowRight")
    if readout.inner_text() != start:
        return f"slider {start} one step right"
    page.keyboard.press("ArrowLeft")  # it started at its maximum
    return f"slider {start} one step left"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_lab_and_its_explorers_redraw(lab, browser, name):
    committed = (config.SOLUTIONS / name).read_bytes()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        open_notebook(page, lab, name)
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(RUN_FINISHED, timeout=RUN_ALL_S * 1000, polling=1000)
        assert not errors_on(page), f"{name}: a cell shows an error: {errors_on(page)[0][:1500]}"
        not_run = page.evaluate(NOT_RUN_CELLS)
        assert not not_run, f"{name}: Run All stopped before cell {not_run[0]}"

        outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
        as_text = [marker for marker in NOT_WIDGETS for text in outputs if marker in text]
        assert not as_text, f"{name}: a widget shows as text ({as_text[0]!r}), not as a control"

        questions = page.locator(".genai-quiz:not(:has(.genai-quiz))")  # one question each (a quiz holds several)
        quiz_calls = sum("".join(cell["source"]).count("utils.quiz.ask(") for cell in
                         json.loads(committed)["cells"] if cell["cell_type"] == "code")
        if quiz_calls:
            first = questions.first
            first.scroll_into_view_if_needed()
            first.locator("input[type=radio]").first.check()
            first.locator("button").first.click()
            page.wait_for_function("(q) => /\u2705|\u274c/.test(q.innerText)", arg=first.element_handle(),
                                   timeout=REDRAW_S * 1000)
            first.screenshot(path=str(SCREENSHOTS / f"{Path(name).stem}_question1.png"))

        explorers = page.locator(".jp-OutputArea-output:has(.widget-output):not(:has(.genai-quiz))")
        count = explorers.count()
        for k in range(count):
            explorer = explorers.nth(k)
            explorer.scroll_into_view_if_needed()
            image = explorer.locator(".widget-output").first
            page.wait_for_function(IMAGE_CHANGED, arg=[image.element_handle(), ""], timeout=REDRAW_S * 1000)
            explorer.screenshot(path=str(SCREENSHOTS / f"{Path(name).stem}_explorer{k + 1}.png"))
            controls = explorer.locator(".widget-slider, .widget-dropdown")
            assert controls.count() or explorer.locator(".widget-text").count(), \
                f"{name}: explorer {k + 1} has no control"
            for c in range(min(CONTROLS_PER_EXPLORER, controls.count())):
                before = images_of(image)
                what = move(controls.nth(c), page)
                try:
                    page.wait_for_function(IMAGE_CHANGED, arg=[image.element_handle(), before],
                                           timeout=REDRAW_S * 1000, polling=250)
                except Exception as error:
                    raise AssertionError(f"{name}: explorer {k + 1}, control {c + 1} ({what}): "
                                         f"the image did not change. {errors_on(page)[:1]}") from error
        assert not errors_on(page), f"{name}: an explorer shows an error: {errors_on(page)[0][:1500]}"
        explorer_calls = sum("".join(cell["source"]).count("utils.widgets.explore(") for cell in
                             json.loads(committed)["cells"] if cell["cell_type"] == "code")
        assert count == explorer_calls, f"{name}: {explorer_calls} explorers in the notebook, {count} in Lab"
    finally:
        lab.shut_down_kernels()
        page.close()
    assert (config.SOLUTIONS / name).read_bytes() == committed, f"Lab saved {name} over the committed notebook"
