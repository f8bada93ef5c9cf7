"""The two packages keep to their jobs, and every lesson has one name everywhere."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from course import config

ROOT = Path(__file__).resolve().parent.parent
# course modules that may import utils, and why (none needs it today: notebooks import utils in their own kernel)
COURSE_MAY_IMPORT_UTILS: dict[str, str] = {}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every absolute import in a Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_import_utils_does_not_import_course():
    code = "import sys, utils, utils.checks; print(sorted(m for m in sys.modules if m.split('.')[0] == 'course'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_import_utils_leaves_lesson_modules_unloaded():
    code = "import sys, utils; print(sorted(m for m in sys.modules if m.startswith('utils.')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    loaded = set(eval(out.stdout))
    assert not loaded & {f"utils.{slug}" for slug in config.LESSON_SLUGS.values()} and "utils.checks" not in loaded


@pytest.mark.parametrize("path", sorted((ROOT / "utils").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_utils_imports_nothing_from_course(path):
    assert "course" not in imported_packages(path)


@pytest.mark.parametrize("path", sorted((ROOT / "course").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_course_imports_utils_only_where_it_must(path):
    if "utils" in imported_packages(path):
        assert path.name in COURSE_MAY_IMPORT_UTILS, f"{path.name} imports utils; add it, with the reason, to the allow-list"


def test_every_lesson_has_one_name_everywhere():
    numbers = {p.name[:2] for p in config.solution_paths()}
    assert numbers == set(config.LESSON_SLUGS), "course/config.py's LESSON_SLUGS must list every solution notebook"
    for number, slug in config.LESSON_SLUGS.items():
        for path in (f"utils/{slug}.py", f"utils/checks/{slug}.py", f"tests/test_{slug}.py"):
            assert (ROOT / path).is_file(), f"lesson {number} ({slug}) has no {path}"
    check_modules = {p.stem for p in (ROOT / "utils" / "checks").glob("*.py")} - {"__init__", "core"}
    assert check_modules == set(config.LESSON_SLUGS.values()), "every checks module is named after its lesson"


def test_authoring_guide_shows_the_same_lesson_table():
    guide = (ROOT / "docs" / "AUTHORING.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| (\d\d) \| `solutions/\d\d_\w+\.ipynb` \| `(\w+)` \|", guide, re.M))
    assert rows == set(config.LESSON_SLUGS.items())


def test_each_notebook_checks_its_own_lessons_exercises():
    import utils.checks
    from course.notebook import read_notebook, source_text

    for path in config.solution_paths():
        slug = config.LESSON_SLUGS[path.name[:2]]
        nb = read_notebook(path)
        assert nb["metadata"][config.METADATA_KEY] == {"lesson": path.name[:2], "slug": slug}
        used = set(re.findall(r"utils\.checks\.(\w+)\(", "".join(source_text(c) for c in nb["cells"])))
        used -= {"hint"}  # utils.checks.hint("name") prints an exercise's stronger hint: not a check
        assert used, f"{path.name} calls no check"
        for exercise in used:
            check = utils.checks.CHECKS.get(exercise)
            assert check is not None, f"{path.name} calls utils.checks.{exercise}, which does not exist"
            assert check.lesson == slug and callable(check.reference())
