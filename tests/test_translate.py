"""Translated editions: the file format, the generated notebooks, and the check that notices drift."""
import json
import shutil

import pytest

from course import build, config, translate
from course.notebook import read_notebook, source_text

LESSON = config.solution_paths()[0]


def fake_translation(cell) -> str:
    """A stand-in translation that changes only what a translator may change."""
    text = source_text(cell)
    if cell["cell_type"] == "markdown":  # a title "# 01 · Name" keeps its number: "# 01 · [id] Name"
        return text.replace("· ", "· [id] ", 1) if text.startswith("# ") else "[id] " + text
    return "\n".join(line.replace("# ", "# [id] ", 1) if line.lstrip().startswith("# ") else line
                     for line in text.splitlines())


@pytest.fixture
def edition(tmp_path, monkeypatch):
    """A temporary copy of lesson 01 and a complete translation of it."""
    solution = tmp_path / "solutions" / LESSON.name
    solution.parent.mkdir()
    shutil.copy(LESSON, solution)
    monkeypatch.setattr(translate, "TRANSLATIONS", tmp_path / "translations")
    monkeypatch.setattr(config, "SOLUTIONS", solution.parent)
    monkeypatch.setattr(config, "EDITIONS", {"id": "Bahasa Indonesia"})
    todo = translate.parse(translate.worklist(LESSON.stem, "id"))
    cells = {c["id"]: c for c in read_notebook(solution)["cells"]}
    entries = [translate.Entry(e.cell_id, e.kind, e.english_hash, fake_translation(cells[e.cell_id])) for e in todo.values()]
    path = translate.translation_path(LESSON.stem, "id")
    path.parent.mkdir(parents=True)
    path.write_text(translate.render(entries), encoding="utf-8")
    return solution, path


def edit_cell(solution, cell_id, new_text):
    nb = json.loads(solution.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if c["id"] == cell_id)
    cell["source"] = new_text
    solution.write_text(json.dumps(nb), encoding="utf-8")


def test_parse_and_render_round_trip():
    entries = [translate.Entry("abc", "markdown", "0123456789ab", "## Judul\n\nTeks."),
               translate.Entry("def", "code", "ba9876543210", "x = 1  # satu")]
    assert list(translate.parse(translate.render(entries, "a title")).values()) == entries


@pytest.mark.parametrize("text, problem", [
    ("@@@ cell a markdown en=0123456789ab\nx\n@@@ cell a markdown en=0123456789ab\ny", "two entries"),
    ("@@@ cell a prose en=0123456789ab\nx", "a marker line reads"),
    ("stray text\n@@@ cell a markdown en=0123456789ab\nx", "before the first"),
])
def test_a_malformed_translation_file_is_one_sentence(text, problem):
    with pytest.raises(ValueError, match=problem):
        translate.parse(text, "t.md")


def test_the_code_signature_ignores_comments_and_docstrings_only():
    code = 'def f(x):\n    """Add one."""\n    ### BEGIN SOLUTION\n    return x + 1  # one\n    ### END SOLUTION\n'
    same = 'def f(x):\n    """Tambah satu."""\n    ### BEGIN SOLUTION\n    return x + 1  # satu\n    ### END SOLUTION\n'
    assert translate.code_signature(code) == translate.code_signature(same)
    assert translate.code_signature(code) != translate.code_signature(code.replace("x + 1", "x + 2"))
    assert translate.code_signature(code) != translate.code_signature(code.replace("    ### END SOLUTION\n", ""))


def test_a_complete_translation_has_no_problems(edition):
    solution, _ = edition
    assert translate.problems("id", [solution]) == []


def test_a_changed_english_cell_fails_the_check_naming_the_cell(edition):
    solution, _ = edition
    cell = next(c for c in read_notebook(solution)["cells"] if c["cell_type"] == "markdown" and c["id"] != "badges")
    edit_cell(solution, cell["id"], source_text(cell) + "\nOne more sentence.")
    found = translate.problems("id", [solution])
    assert len(found) == 1 and cell["id"] in found[0] and "changed in English" in found[0]
    assert translate.parse(translate.worklist(LESSON.stem, "id")).keys() == {cell["id"]}  # the worklist has it


def test_a_new_cell_without_translation_and_a_removed_cell_are_named(edition):
    solution, path = edition
    nb = json.loads(solution.read_text(encoding="utf-8"))
    gone = next(c for c in nb["cells"] if c["cell_type"] == "markdown" and c["id"] != "badges")
    gone["id"] = "brand-new"
    solution.write_text(json.dumps(nb), encoding="utf-8")
    found = "\n".join(translate.problems("id", [solution]))
    assert "cell brand-new (markdown) has no translation" in found
    assert "no longer in the English notebook" in found


def test_translated_code_that_differs_fails(edition):
    solution, path = edition
    entries = translate.parse(path.read_text(encoding="utf-8"))
    exercise = next(e for e in entries.values() if e.kind == "code")
    broken = translate.Entry(exercise.cell_id, "code", exercise.english_hash, exercise.text + "\nprint('extra')")
    path.write_text(translate.render([broken if e is exercise else e for e in entries.values()]), encoding="utf-8")
    found = translate.problems("id", [solution])
    assert any(exercise.cell_id in p and "differs from the English code" in p for p in found)


def test_a_missing_translation_file_is_named(edition):
    solution, path = edition
    path.unlink()
    assert "is missing" in translate.problems("id", [solution])[0]


def test_the_build_writes_both_editions_with_translated_prose_and_the_same_code(edition, monkeypatch, tmp_path):
    solution, _ = edition
    monkeypatch.setattr(config, "solution_paths", lambda: [solution])
    monkeypatch.setattr(config, "LESSONS", tmp_path / "lessons")
    notebooks = build.expected_notebooks()
    edition_solution = json.loads(notebooks[solution.parent / "id" / solution.name])
    edition_lesson = json.loads(notebooks[tmp_path / "lessons" / "id" / solution.name])
    english = json.loads(notebooks[solution])
    assert edition_solution["metadata"][config.METADATA_KEY]["lang"] == "id"
    for nb in (edition_solution, edition_lesson):
        setup = next(c for c in nb["cells"] if config.SETUP_TAG in c["metadata"].get("tags", []))
        text = source_text(setup)
        assert text.startswith("# @title") and f'os.environ["{translate.LANGUAGE_ENV}"] = "id"' in text
        badges = next(c for c in nb["cells"] if config.BADGES_TAG in c["metadata"].get("tags", []))
        assert "/id/" in source_text(badges) and "Glosarium" in source_text(badges) and "GLOSSARY.md" in source_text(badges)
    english_badges = next(c for c in english["cells"] if config.BADGES_TAG in c["metadata"].get("tags", []))
    assert "Glossary of terms" in source_text(english_badges) and "GLOSSARY.md" in source_text(english_badges)
    pairs = list(zip(english["cells"], edition_solution["cells"]))
    prose = [(e, t) for e, t in pairs if e["cell_type"] == "markdown" and e["id"] != "badges"]
    assert prose and all(source_text(t) == fake_translation(e) for e, t in prose)
    plain_code = [(e, t) for e, t in pairs if e["cell_type"] == "code" and config.SETUP_TAG not in e["metadata"].get("tags", [])
                  and config.BEGIN_SOLUTION not in source_text(e)]
    assert plain_code and all(source_text(e) == source_text(t) for e, t in plain_code)
    stubs = [c for c in edition_lesson["cells"] if config.EXERCISE_TAG in c["metadata"].get("tags", [])]
    assert stubs and all(config.BEGIN_SOLUTION not in source_text(c) for c in stubs)  # answers removed there too


def test_an_undeclared_language_is_neither_built_nor_checked(edition, monkeypatch, tmp_path):
    solution, _ = edition
    monkeypatch.setattr(config, "EDITIONS", {})
    monkeypatch.setattr(config, "solution_paths", lambda: [solution])
    monkeypatch.setattr(config, "LESSONS", tmp_path / "lessons")
    assert not any("/id/" in str(path) for path in build.expected_notebooks())


def test_ci_runs_one_edition_lesson_a_day_in_turn():
    import datetime
    import importlib.util

    spec = importlib.util.spec_from_file_location("root_conftest", config.ROOT / "conftest.py")
    root_conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root_conftest)
    day = datetime.date(2026, 12, 7)
    picks = [root_conftest.sampled_lesson(["03", "01", "02"], day + datetime.timedelta(days=k)) for k in range(3)]
    assert sorted(picks) == ["01", "02", "03"]  # three days, three different lessons
    assert root_conftest.sampled_lesson([], day) == ""


def test_the_edition_has_its_own_lesson_table_with_translated_titles_and_badges(edition, monkeypatch):
    from course import readme

    solution, _ = edition
    monkeypatch.setattr(config, "solution_paths", lambda: [solution])
    table = readme.lesson_table("id")
    assert f"lessons/id/{solution.name}" in table and "colab.research.google.com" in table
    assert "| 01 | [id] Discriminative" in table and "pelajaran" in table.splitlines()[0]
    text = f"intro\n{readme.edition_start('id')}\n{readme.edition_end('id')}\nrest"
    assert readme.lesson_table("id") in readme.replace_block(text, readme.edition_start("id"), readme.edition_end("id"),
                                                              readme.lesson_table("id"))
