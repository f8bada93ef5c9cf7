"""The setup cell in a real kernel, with the platform faked and a local bare repository as "GitHub"."""
import os
import shutil
import socket
import subprocess
import sys

import nbformat
import pytest

from course import config, stamp
from course.execute import execute

PLATFORM_VARS = ("COLAB_RELEASE_TAG", "KAGGLE_KERNEL_RUN_TYPE", "GENAI_COURSE_ROOT", "PYTHONPATH")


def run_setup(cwd, home, extra_env, cells_before=(), runs=1, timeout=120):
    """Run the stamped setup cell ``runs`` times, then a marker cell; returns (notebook, error)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells_before]
    nb.cells += [nbformat.v4.new_code_cell(stamp.setup_source()) for _ in range(runs)]
    nb.cells.append(nbformat.v4.new_code_cell("print('after setup')"))
    env = {k: v for k, v in os.environ.items() if k not in PLATFORM_VARS}
    env.update({"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, **extra_env})
    result = execute(nb, cwd=cwd, fast=True, env=env, timeout=timeout)
    nb.env = env
    return nb, result.error


def text(cell):
    return "".join(o.get("text", "") + "\n".join(o.get("traceback", [])) for o in cell.outputs)


def github_as(url):
    """Environment that makes git fetch https://github.com/... from ``url`` instead."""
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{url}.insteadOf", "GIT_CONFIG_VALUE_0": "https://github.com/"}


@pytest.fixture(scope="module")
def fake_github(tmp_path_factory):
    """A bare repository holding the course's utils/ on the branch the setup cell clones."""
    hub = tmp_path_factory.mktemp("hub")
    work = hub / "work"
    shutil.copytree(config.ROOT / "utils", work / "utils", ignore=shutil.ignore_patterns("__pycache__"))
    git = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    bare = hub / f"{config.REPO}.git"
    for cmd in (["git", "init", "-q", "-b", config.BRANCH, str(work)], ["git", "-C", str(work), "add", "-A"],
                ["git", "-C", str(work), "commit", "-qm", "course"],
                ["git", "clone", "-q", "--bare", str(work), str(bare)]):
        subprocess.run(cmd, check=True, env=git, capture_output=True)
    return github_as(f"file://{hub}/")


@pytest.fixture
def places(tmp_path):
    cwd, home = tmp_path / "content", tmp_path / "home"
    cwd.mkdir(), home.mkdir()
    return cwd, home


OFFLINE = github_as("http://127.0.0.1:9/")  # nothing listens there: connection refused


def assert_one_sentence(nb, error, *fragments):
    setup = nb.cells[-2]
    errors = [o for o in setup.outputs if o.output_type == "error"]
    assert error and errors, "the setup cell must stop Run all"
    sentence = "\n".join(errors[0].traceback)
    assert "\n" not in sentence and sentence.endswith("."), sentence
    assert "SystemExit" not in sentence and "%tb" not in text(setup) and "Traceback" not in text(setup)
    for fragment in fragments:
        assert fragment in sentence, sentence
    assert not nb.cells[-1].outputs, "cells after a failed setup must not run"
    return sentence


@pytest.mark.parametrize("where, env, advice", [("kaggle", {"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, "switch Internet on"),
                                                ("colab", {"COLAB_RELEASE_TAG": "x"}, "on Colab")])
def test_offline_says_what_failed_and_what_to_do_on_this_platform(places, where, env, advice):
    nb, error = run_setup(*places, {**env, **OFFLINE})
    sentence = assert_one_sentence(nb, error, "Could not download the course", "127.0.0.1", advice)
    assert ("Kaggle" in sentence) == (where == "kaggle")
    assert not list(places[0].iterdir()), "a failed download leaves nothing behind"


def test_a_stalled_network_times_out_quickly_and_leaves_nothing(places, fake_github):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # the kernel completes the handshake; nobody ever answers
    try:
        port = listener.getsockname()[1]
        nb, error = run_setup(*places, {"KAGGLE_KERNEL_RUN_TYPE": "Batch", "GENAI_CLONE_TIMEOUT": "3",
                                        **github_as(f"http://127.0.0.1:{port}/")})
    finally:
        listener.close()
    assert_one_sentence(nb, error, "no answer from the server within 3 s", "switch Internet on")
    assert "Downloading the course" in text(nb.cells[-2]) and "." in text(nb.cells[-2])
    assert not list(places[0].iterdir())
    nb, error = run_setup(*places, {"KAGGLE_KERNEL_RUN_TYPE": "Batch", **fake_github})  # network back
    assert error is None and "after setup" in text(nb.cells[-1])


def test_a_half_cloned_folder_is_replaced_and_a_second_run_reuses_the_download(places, fake_github):
    cwd, home = places
    (cwd / "genai-hands-on" / ".git").mkdir(parents=True)  # what a killed clone leaves
    nb, error = run_setup(cwd, home, {"COLAB_RELEASE_TAG": "x", **fake_github}, runs=2)
    assert error is None, error
    first, second = text(nb.cells[0]), text(nb.cells[1])
    assert "Downloading the course" in first and "Downloading" not in second
    assert "Running on colab" in first and "Running on colab" in second
    assert (cwd / "genai-hands-on" / "utils" / "runtime.py").is_file()
    assert [p.name for p in cwd.iterdir()] == ["genai-hands-on"], "no staging folder is left behind"


def test_google_colab_in_sys_modules_is_colab_for_the_cell_and_for_utils(places, fake_github, tmp_path):
    fake = tmp_path / "fake" / "google" / "colab"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    nb, error = run_setup(*places, fake_github, cells_before=[f"import sys; sys.path.insert(0, {str(fake.parent.parent)!r}); import google.colab"])
    assert error is None, error
    assert "Downloading the course" in text(nb.cells[1]) and "Running on colab" in text(nb.cells[1])


def _read_only(folder):
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except OSError:
        return lambda: folder.chmod(0o755)
    (folder / "probe").unlink()  # root ignores modes: make it immutable instead
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a folder read-only here (root without chattr)")
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_read_only_working_folder_downloads_into_home(places, fake_github):
    cwd, home = places
    undo = _read_only(cwd)
    try:
        nb, error = run_setup(cwd, home, {"KAGGLE_KERNEL_RUN_TYPE": "Interactive", **fake_github})
    finally:
        undo()
    assert error is None, error
    assert (home / "genai-hands-on" / "utils" / "runtime.py").is_file() and not list(cwd.iterdir())


def test_a_course_on_pythonpath_or_in_genai_course_root_is_used_without_download(places):
    for env in ({"PYTHONPATH": str(config.ROOT)}, {"GENAI_COURSE_ROOT": str(config.ROOT)}):
        nb, error = run_setup(*places, {"KAGGLE_KERNEL_RUN_TYPE": "Batch", **OFFLINE, **env})
        assert error is None, (env, error)
        assert "Downloading" not in text(nb.cells[0]) and "after setup" in text(nb.cells[-1])
    nb, error = run_setup(*places, {"GENAI_COURSE_ROOT": str(places[0])})
    assert_one_sentence(nb, error, "GENAI_COURSE_ROOT is", "does not hold the course")


def test_outside_the_course_locally_it_says_where_to_open_the_notebook(places):
    nb, error = run_setup(*places, {})
    assert_one_sentence(nb, error, "Could not find the course folder", "GENAI_COURSE_ROOT")


def test_inside_the_course_it_needs_no_network(places):
    nb, error = run_setup(config.LESSONS, places[1], OFFLINE)
    assert error is None, error
    assert "Fast mode is ON" in text(nb.cells[0]) and "Running on local" in text(nb.cells[0])


@pytest.mark.parametrize("colab_module, env, expected", [
    (False, {}, "local"), (True, {}, "colab"), (False, {"COLAB_RELEASE_TAG": "r"}, "colab"),
    (False, {"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, "kaggle"), ("kaggle_dir", {}, "kaggle")])
def test_the_cell_and_utils_share_one_platform_rule(monkeypatch, colab_module, env, expected):
    from utils import runtime
    for name in PLATFORM_VARS:
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    if colab_module is True:
        monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    real_is_dir = runtime.Path.is_dir
    monkeypatch.setattr(runtime.Path, "is_dir", lambda self: colab_module == "kaggle_dir" if str(self) == "/kaggle/working" else real_is_dir(self))
    namespace = {"os": os, "sys": sys, "Path": runtime.Path}
    exec(stamp.platform_source(), namespace)
    assert namespace["_platform"]() == runtime.platform() == expected
