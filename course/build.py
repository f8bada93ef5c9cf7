"""``build`` writes lessons/ (and stamps solutions/) from solutions/; ``check`` fails when anything is stale."""
from __future__ import annotations

from pathlib import Path

from . import config
from .lesson import make_lesson
from .nbgrader import mark
from .notebook import dumps_notebook, has_outputs, read_notebook, strip_outputs
from .readme import expected_readmes
from .stamp import stamp
from . import translate


def expected_notebooks() -> dict[Path, str]:
    """Every notebook the build writes, path -> exact text."""
    result = {}
    for path in config.solution_paths():
        solution = mark(stamp(strip_outputs(read_notebook(path)), "solutions", path.name))
        result[path] = dumps_notebook(solution)
        result[config.LESSONS / path.name] = dumps_notebook(make_lesson(solution, path.name))
        for lang in translate.languages():  # the translated editions: solutions/<lang>/ and lessons/<lang>/
            try:
                entries = translate.load_entries(path.stem, lang)
            except ValueError:
                continue  # check names the malformed file
            if entries is None:
                continue
            solution_edition = translate.translated(
                mark(stamp(strip_outputs(read_notebook(path)), f"solutions/{lang}", path.name)), entries)
            lesson_edition = make_lesson(solution_edition, path.name, f"lessons/{lang}")
            result[config.SOLUTIONS / lang / path.name] = dumps_notebook(translate.with_language(solution_edition, lang))
            result[config.LESSONS / lang / path.name] = dumps_notebook(translate.with_language(lesson_edition, lang))
    return result


def build() -> int:
    config.LESSONS.mkdir(exist_ok=True)
    for readme_path, readme in expected_readmes().items():
        if readme != readme_path.read_text(encoding="utf-8"):
            readme_path.write_text(readme, encoding="utf-8")
            print(f"wrote {readme_path.name} (lesson table)")
    written = 0
    for path, text in expected_notebooks().items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(config.ROOT)}")
            written += 1
    print(f"build: {written} notebook(s) written, everything else already up to date.")
    return 0


def problems() -> list[str]:
    found = []
    expected = expected_notebooks()
    for path, text in expected.items():
        rel = path.relative_to(config.ROOT)
        if not path.exists():
            found.append(f"{rel} is missing: run `make build`.")
        elif has_outputs(read_notebook(path)):
            found.append(f"{rel} carries outputs: run `make build` to strip them.")
        elif path.read_text(encoding="utf-8") != text:
            found.append(f"{rel} is stale (lesson, badges or setup cell differ from the build): run `make build`.")
    for path in sorted(config.LESSONS.glob("*.ipynb")):
        if path not in expected:
            found.append(f"{path.relative_to(config.ROOT)} has no solution notebook: lessons are generated from solutions/.")
    for lang in translate.languages():
        for folder in (config.LESSONS / lang, config.SOLUTIONS / lang):
            found += [f"{p.relative_to(config.ROOT)} has no English source: editions are generated from solutions/."
                      for p in sorted(folder.glob("*.ipynb")) if p not in expected]
        found += translate.problems(lang)
    for readme_path, readme in expected_readmes().items():
        if readme != readme_path.read_text(encoding="utf-8"):
            found.append(f"{readme_path.name}'s lesson table is stale: run `make build`.")
    return found


def check() -> int:
    found = problems()
    for problem in found:
        print(problem)
    print("check: OK" if not found else f"check: {len(found)} problem(s).")
    return 1 if found else 0
