"""The quiz data of every lesson is valid, and the questions work as widgets and as plain text."""
import json

import pytest

import utils.quiz as quiz
from course import config

QUIZ_FILES = sorted(quiz.QUIZ_DIR.glob("*.json"))


def good_question(**changes):
    q = {"id": "q1", "kind": "quiz", "question": "Which?",
         "choices": [{"text": "this", "correct": True, "why": "because"},
                     {"text": "that", "correct": False, "why": "because not"}]}
    q.update(changes)
    return q


@pytest.mark.parametrize("path", QUIZ_FILES, ids=lambda p: p.name)
def test_every_quiz_file_is_valid(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    assert quiz.problems(data) == []
    number = path.name[:2]
    assert number in config.LESSON_SLUGS and path.stem == f"{number}_{config.LESSON_SLUGS[number]}"
    assert data["lesson"] == number
    kinds = [q["kind"] for q in data["questions"]]
    assert 4 <= kinds.count("quiz") <= 6, "a lesson ends with a quiz of 4-6 questions"
    assert kinds.count("predict") >= 2, "a lesson asks at least two predict-then-run questions"


@pytest.mark.parametrize("path", QUIZ_FILES, ids=lambda p: p.name)
def test_the_notebook_asks_every_predict_question_and_the_quiz(path):
    number = path.name[:2]
    notebook, = config.SOLUTIONS.glob(f"{number}_*.ipynb")
    code = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code")
    for q in quiz.load(number):
        if q.kind == "predict":
            assert f'utils.quiz.ask("{number}", "{q.id}")' in code, f"{notebook.name} never asks {q.id}"
    assert f'utils.quiz.quiz("{number}")' in code


@pytest.mark.parametrize("broken, problem", [
    ({"questions": "none"}, "list of 'questions'"),
    ({"questions": [good_question(kind="poll")]}, "'kind' must be one of"),
    ({"questions": [good_question(choices=[{"text": "a", "correct": True, "why": "w"},
                                           {"text": "b", "correct": True, "why": "w"}])]}, "2 right choices"),
    ({"questions": [good_question(choices=[{"text": "a", "correct": False, "why": "w"},
                                           {"text": "b", "correct": False, "why": "w"}])]}, "0 right choices"),
    ({"questions": [good_question(choices=[{"text": "a", "correct": True, "why": "w"},
                                           {"text": "b", "correct": False, "why": ""}])]}, "no explanation"),
    ({"questions": [good_question(choices=[{"text": "a", "correct": True, "why": "w"}])]}, "between 2 and"),
    ({"questions": [good_question(), good_question()]}, "used twice"),
    ({"questions": [good_question(question="")]}, "has no 'question'"),
])
def test_problems_names_what_is_wrong(broken, problem):
    found = quiz.problems(broken)
    assert any(problem in sentence for sentence in found), found


@pytest.fixture
def one_lesson(tmp_path, monkeypatch):
    data = {"lesson": "99", "questions": [
        good_question(id="p", kind="predict", question="Up or down?",
                      choices=[{"text": "up", "correct": False, "why": "it only looks that way"},
                               {"text": "down", "correct": True, "why": "the loss falls"}]),
        good_question(id="q")]}
    (tmp_path / "99_demo.json").write_text(json.dumps(data))
    monkeypatch.setattr(quiz, "QUIZ_DIR", tmp_path)
    return tmp_path


def test_answer_accepts_a_letter_an_index_or_the_text_and_explains(one_lesson):
    for choice in ("b", "(B)", 1, "down"):
        feedback = quiz.answer("99", "p", choice)
        assert feedback.correct and feedback.explanation == "the loss falls"
    wrong = quiz.answer("99", "p", "a")
    assert not wrong.correct and "it only looks that way" in str(wrong) and "(b) down" in str(wrong)
    assert "(a)" not in quiz.answer("99", "q", "b").explanation  # a quiz question leaves the learner to retry
    with pytest.raises(quiz.QuizError, match="letter from"):
        quiz.answer("99", "p", "z")
    with pytest.raises(quiz.QuizError, match="no question"):
        quiz.answer("99", "nope", "a")


def test_a_broken_or_missing_file_is_one_sentence(one_lesson):
    (one_lesson / "98_bad.json").write_text("{not json")
    with pytest.raises(quiz.QuizError, match="cannot be read"):
        quiz.load("98")
    (one_lesson / "97_bad.json").write_text(json.dumps({"questions": [good_question(kind="x")]}))
    with pytest.raises(quiz.QuizError, match="malformed"):
        quiz.load("97")
    with pytest.raises(quiz.QuizError, match="no quiz file"):
        quiz.load("42")


def test_without_ipywidgets_the_question_is_plain_text(one_lesson, monkeypatch, capsys):
    monkeypatch.setattr(quiz, "_widgets", lambda: None)
    quiz.ask("99", "p")
    out = capsys.readouterr().out
    assert "Predict: Up or down?" in out and "(a) up" in out and 'utils.quiz.answer("99", "p", "a")' in out
    quiz.quiz("99")
    out = capsys.readouterr().out
    assert "Which?" in out and "Up or down?" not in out and "the ids are: q" in out


def test_the_static_site_shows_the_answer_folded(one_lesson, monkeypatch):
    shown = []
    monkeypatch.setenv("GENAI_STATIC_WIDGETS", "1")
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    quiz.ask("99", "p")
    assert "<details>" in shown[0].data and "(b) down" in shown[0].data


def test_the_widget_gives_feedback_when_answered(one_lesson):
    pytest.importorskip("ipywidgets")
    q = quiz.question("99", "p")
    got = []
    box = quiz._widget(q, on_answer=lambda q, result: got.append(result))
    prompt, options, button, feedback = box.children
    assert quiz.CSS_CLASS in box._dom_classes
    button.click()
    assert "Pick one" in feedback.value and not got
    options.value = 1
    button.click()
    assert feedback.value.startswith("\u2705") and got[0].correct
    options.value = 0
    button.click()
    assert feedback.value.startswith("\u274c") and "(b) down" in feedback.value
