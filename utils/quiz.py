"""Predict-then-run questions and the end-of-lesson quiz.

The questions live in one data file per lesson, ``quizzes/<NN>_<slug>.json``, not in code:

    {"lesson": "03", "questions": [
        {"id": "beta-sharpness", "kind": "predict",            # "predict" (before the evidence) or "quiz"
         "question": "With beta = 4, are the VAE's samples sharper or blurrier than with beta = 1?",
         "choices": [{"text": "Sharper", "correct": false, "why": "..."},
                     {"text": "Blurrier", "correct": true, "why": "..."}]}]}

Every question has exactly one right choice and a ``why`` for every choice (``problems`` says what is
wrong with a file). ``answer`` is the pure function behind the widget: it takes the question and the
learner's choice and says whether it is right, and why. ``ask`` shows one question as a widget (a
plain-text question without ipywidgets, answered by calling ``answer``); ``quiz`` shows all of a
lesson's ``"quiz"`` questions.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .language import ENGLISH, language
from .runtime import REPO_ROOT
from .widgets import STATIC_ENV, _widgets

QUIZ_DIR = REPO_ROOT / "quizzes"
KINDS = ("predict", "quiz")
LETTERS = "abcdefgh"
CSS_CLASS = "genai-quiz"  # lets the browser test tell a question from an explorer


class QuizError(Exception):
    """A missing or malformed quiz file, or a question or choice that does not exist."""


@dataclass(frozen=True)
class Choice:
    text: str
    correct: bool
    why: str


@dataclass(frozen=True)
class Question:
    lesson: str
    id: str
    kind: str
    question: str
    choices: tuple[Choice, ...]

    @property
    def right(self) -> int:
        return next(i for i, choice in enumerate(self.choices) if choice.correct)


@dataclass(frozen=True)
class Feedback:
    correct: bool
    chosen: str
    explanation: str

    def __str__(self) -> str:
        verdict = "\u2705 Right." if self.correct else "\u274c Not quite."
        return f"{verdict} {self.explanation}"

    def __repr__(self) -> str:  # what a notebook cell ending in answer(...) shows
        return str(self)


def problems(data) -> list[str]:
    """Everything wrong with one lesson's quiz data, one sentence each (empty when it is valid)."""
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        return ["the file must hold an object with a list of 'questions'."]
    found, seen = [], set()
    for n, q in enumerate(data["questions"], 1):
        where = f"question {n} ({q.get('id', '?') if isinstance(q, dict) else '?'})"
        if not isinstance(q, dict):
            found.append(f"{where} is not an object.")
            continue
        for key in ("id", "question"):
            if not isinstance(q.get(key), str) or not q[key].strip():
                found.append(f"{where} has no {key!r}.")
        if q.get("id") in seen:
            found.append(f"{where}: the id is used twice.")
        seen.add(q.get("id"))
        if q.get("kind") not in KINDS:
            found.append(f"{where}: 'kind' must be one of {', '.join(KINDS)}.")
        choices = q.get("choices")
        if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
            found.append(f"{where} needs between 2 and {len(LETTERS)} choices.")
            continue
        if any(not isinstance(c, dict) for c in choices):
            found.append(f"{where}: every choice is an object with 'text', 'correct' and 'why'.")
            continue
        right = [c for c in choices if c.get("correct") is True]
        if len(right) != 1:
            found.append(f"{where} has {len(right)} right choices; it needs exactly one.")
        for letter, c in zip(LETTERS, choices):
            if not isinstance(c.get("text"), str) or not c["text"].strip():
                found.append(f"{where}, choice ({letter}) has no text.")
            if not isinstance(c.get("why"), str) or not c["why"].strip():
                found.append(f"{where}, choice ({letter}) has no explanation ('why').")
            if not isinstance(c.get("correct"), bool):
                found.append(f"{where}, choice ({letter}): 'correct' must be true or false.")
        if len({c.get("text") for c in choices}) != len(choices):
            found.append(f"{where} lists the same choice twice.")
    return found


def quiz_path(lesson: str) -> Path:
    """The lesson's quiz file: the learner's language's (``quizzes/<lang>/``) when there is one, else English."""
    lang = language()
    matches = sorted((QUIZ_DIR / lang).glob(f"{lesson}_*.json")) if lang != ENGLISH else []
    matches = matches or sorted(QUIZ_DIR.glob(f"{lesson}_*.json"))
    if not matches:
        raise QuizError(f"There is no quiz file for lesson {lesson} in {QUIZ_DIR}.")
    return matches[0]


def load(lesson: str) -> list[Question]:
    """All of a lesson's questions, in the file's order; a broken file is one clear sentence."""
    path = quiz_path(lesson)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QuizError(f"The quiz file {path.name} cannot be read ({exc}).") from None
    wrong = problems(data)
    if wrong:
        raise QuizError(f"The quiz file {path.name} is malformed: {wrong[0]}")
    return [Question(lesson, q["id"], q["kind"], q["question"],
                     tuple(Choice(c["text"], c["correct"], c["why"]) for c in q["choices"]))
            for q in data["questions"]]


def question(lesson: str, question_id: str) -> Question:
    for q in load(lesson):
        if q.id == question_id:
            return q
    raise QuizError(f"Lesson {lesson} has no question {question_id!r}.")


def _index(q: Question, choice) -> int:
    """A choice given as its letter ('b'), its 0-based index (1) or its exact text."""
    if isinstance(choice, bool):
        raise QuizError(f"Answer with a letter from (a) to ({LETTERS[len(q.choices) - 1]}).")
    if isinstance(choice, int) and 0 <= choice < len(q.choices):
        return choice
    if isinstance(choice, str):
        key = choice.strip().strip("()").lower()
        if len(key) == 1 and key in LETTERS[:len(q.choices)]:
            return LETTERS.index(key)
        for i, c in enumerate(q.choices):
            if c.text.strip().lower() == choice.strip().lower():
                return i
    raise QuizError(f"{choice!r} is not one of the choices: answer with a letter from (a) to "
                    f"({LETTERS[len(q.choices) - 1]}).")


def answer(lesson_or_question, question_id=None, choice=None) -> Feedback:
    """Whether ``choice`` is right, and why: ``answer("03", "beta-sharpness", "b")`` or ``answer(q, "b")``."""
    if isinstance(lesson_or_question, Question):
        q, choice = lesson_or_question, question_id
    else:
        q = question(lesson_or_question, question_id)
    picked = q.choices[_index(q, choice)]
    explanation = picked.why
    if not picked.correct and q.kind == "predict":  # the evidence comes next, so the answer may too
        explanation += f" The answer is ({LETTERS[q.right]}) {q.choices[q.right].text}."
    return Feedback(picked.correct, picked.text, explanation)


def as_text(q: Question) -> str:
    lines = [("Predict: " if q.kind == "predict" else "") + q.question]
    lines += [f"  ({letter}) {c.text}" for letter, c in zip(LETTERS, q.choices)]
    return "\n".join(lines)


def _static_html(q: Question) -> str:
    """The website's view: the question, then the answer folded away (a static page has no kernel)."""
    import html
    items = "".join(f"<li>{html.escape(c.text)}</li>" for c in q.choices)
    why = html.escape(q.choices[q.right].why)
    return (f"<div class='{CSS_CLASS}'><p><b>{'Predict: ' if q.kind == 'predict' else ''}</b>"
            f"{html.escape(q.question)}</p><ol type='a'>{items}</ol><details><summary>Answer</summary>"
            f"<p>({LETTERS[q.right]}) {html.escape(q.choices[q.right].text)}: {why}</p></details></div>")


def _widget(q: Question, on_answer=None):
    w = _widgets()
    prompt = w.HTML(f"<b>{'Predict: ' if q.kind == 'predict' else ''}</b>{q.question}")
    options = w.RadioButtons(options=[(f"({letter}) {c.text}", i) for i, (letter, c) in
                                      enumerate(zip(LETTERS, q.choices))], index=None,
                             layout=w.Layout(width="auto"))
    button = w.Button(description="Check my answer", button_style="primary")
    feedback = w.HTML()

    def check(_):
        if options.value is None:
            feedback.value = "Pick one of the choices first."
            return
        result = answer(q, options.value)
        feedback.value = str(result)
        if on_answer is not None:
            on_answer(q, result)

    button.on_click(check)
    box = w.VBox([prompt, options, button, feedback])
    box.add_class(CSS_CLASS)
    return box


def ask(lesson: str, question_id: str) -> None:
    """Show one question: a widget in a notebook, plain text (answered with ``answer``) without one."""
    from IPython.display import HTML, display

    q = question(lesson, question_id)
    if os.environ.get(STATIC_ENV, "") == "1":
        display(HTML(_static_html(q)))
    elif _widgets() is None:
        print(as_text(q))
        print(f'Answer with: utils.quiz.answer("{lesson}", "{q.id}", "a")  (your letter)')
    else:
        display(_widget(q))


def quiz(lesson: str) -> None:
    """Show every ``"quiz"`` question of a lesson, with a running score."""
    from IPython.display import HTML, display

    questions = [q for q in load(lesson) if q.kind == "quiz"]
    w = _widgets()
    if os.environ.get(STATIC_ENV, "") == "1":
        display(HTML("".join(_static_html(q) for q in questions)))
        return
    if w is None:
        for n, q in enumerate(questions, 1):
            print(f"{n}. {as_text(q)}\n")
        print(f'Answer each with: utils.quiz.answer("{lesson}", "<id>", "a"); the ids are: '
              f"{', '.join(q.id for q in questions)}.")
        return
    score, results = w.HTML(f"Answered 0 of {len(questions)}."), {}

    def record(q, result):
        results[q.id] = result.correct
        score.value = f"Answered {len(results)} of {len(questions)}; right: {sum(results.values())}."

    box = w.VBox([_widget(q, on_answer=record) for q in questions] + [score])
    box.add_class(CSS_CLASS)
    display(box)
