"""Feedback in the learner's language: the message catalogue, the checks' lines and the quiz files."""
import json

import pytest
import torch

import utils.checks
import utils.quiz
from utils import language
from utils.checks import core


@pytest.fixture
def catalogue(tmp_path, monkeypatch):
    monkeypatch.setattr(language, "CATALOGUE_DIR", tmp_path)
    language.catalogue.cache_clear()
    language._patterns.cache_clear()
    (tmp_path / "xx").mkdir()
    (tmp_path / "xx" / "core.json").write_text(json.dumps({
        "the values are off": "nilainya meleset",
        "the values are off (largest difference": "nilainya meleset (selisih terbesar",
    }), encoding="utf-8")
    (tmp_path / "xx" / "demo.json").write_text(json.dumps({
        "correct": "benar",
        "your function changed its input `{}` in place": "fungsimu mengubah masukan `{}` di tempat",
    }), encoding="utf-8")
    yield tmp_path
    language.catalogue.cache_clear()
    language._patterns.cache_clear()


def test_english_is_the_default_and_untouched(catalogue, monkeypatch):
    monkeypatch.delenv(language.LANGUAGE_ENV, raising=False)
    assert language.language() == "en"
    assert language.translate("the values are off") == "the values are off"


def test_catalogued_texts_are_replaced_longest_first(catalogue, monkeypatch):
    monkeypatch.setenv(language.LANGUAGE_ENV, "xx")
    assert language.translate("the values are off (largest difference 0.5)") == "nilainya meleset (selisih terbesar 0.5)"
    assert language.translate("the values are off.") == "nilainya meleset."
    assert language.translate("nothing known here") == "nothing known here"


def test_a_template_entry_carries_the_text_it_matched(catalogue, monkeypatch):
    monkeypatch.setenv(language.LANGUAGE_ENV, "xx")
    assert (language.translate("your function changed its input `logvar` in place, so")
            == "fungsimu mengubah masukan `logvar` di tempat, so")


def test_a_missing_or_broken_catalogue_leaves_english(catalogue, monkeypatch):
    (catalogue / "yy").mkdir()
    (catalogue / "yy" / "core.json").write_text("{not json", encoding="utf-8")
    for lang in ("yy", "zz"):
        monkeypatch.setenv(language.LANGUAGE_ENV, lang)
        assert language.translate("the values are off") == "the values are off"


def test_a_check_prints_in_the_learners_language(catalogue, monkeypatch, capsys):
    @core.exercise_check
    def check_double(c, fn):
        c.close(c.call(fn, torch.ones(2)), torch.full((2,), 2.0))

    monkeypatch.setenv(language.LANGUAGE_ENV, "xx")
    assert not check_double(lambda x: x)
    assert "nilainya meleset (selisih terbesar 1)" in capsys.readouterr().out
    assert check_double(lambda x: 2 * x)
    assert "benar" in capsys.readouterr().out


def test_a_quiz_file_in_the_learners_language_is_preferred(tmp_path, monkeypatch):
    question = {"id": "q", "kind": "quiz", "question": "{}",
                "choices": [{"text": "a", "correct": True, "why": "w"}, {"text": "b", "correct": False, "why": "w"}]}
    for folder, words in ((tmp_path, "Which?"), (tmp_path / "xx", "Yang mana?")):
        folder.mkdir(exist_ok=True)
        data = {"lesson": "99", "questions": [dict(question, question=words)]}
        (folder / "99_demo.json").write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(utils.quiz, "QUIZ_DIR", tmp_path)
    monkeypatch.setenv(language.LANGUAGE_ENV, "xx")
    assert utils.quiz.load("99")[0].question == "Yang mana?"
    monkeypatch.setenv(language.LANGUAGE_ENV, "en")
    assert utils.quiz.load("99")[0].question == "Which?"
    monkeypatch.setenv(language.LANGUAGE_ENV, "zz")  # no edition of that quiz: English
    assert utils.quiz.load("99")[0].question == "Which?"


def english_messages() -> dict[str, str]:
    """Every fixed English text a check can print: module-level hint constants (and their stronger
    hints), SECOND_HINTS, and core's own sentences; name -> text."""
    import importlib
    import pkgutil

    found = {}
    for info in pkgutil.iter_modules(utils.checks.__path__):
        module = importlib.import_module(f"utils.checks.{info.name}")
        for name, value in vars(module).items():
            if name.isupper() and not name.startswith("_") and isinstance(value, str) and value.strip():
                if module is not core and vars(core).get(name) is value:
                    continue  # core's constants imported elsewhere are counted once, under core
                found[f"{info.name}.{name}"] = str(value)
                if getattr(value, "more", ""):
                    found[f"{info.name}.{name}.more"] = value.more
        for exercise, text in getattr(module, "SECOND_HINTS", {}).items():
            found[f"{info.name}.SECOND_HINTS[{exercise}]"] = text
    return found


def test_the_message_collector_finds_hints_and_stronger_hints():
    messages = english_messages()
    assert messages["core.VALUES_OFF"] == core.VALUES_OFF
    assert any(key.endswith(".more") for key in messages) and any("SECOND_HINTS" in key for key in messages)


@pytest.mark.parametrize("lang", sorted(__import__("course.config", fromlist=["EDITIONS"]).EDITIONS))
def test_every_message_has_an_entry_in_each_edition(lang):
    language.catalogue.cache_clear()
    entries = language.catalogue(lang)
    missing = [key for key, text in english_messages().items() if text not in entries]
    assert not missing, f"{len(missing)} message(s) have no {lang} entry in utils/messages/{lang}/, e.g. {missing[0]}"


@pytest.mark.parametrize("lang", sorted(__import__("course.config", fromlist=["EDITIONS"]).EDITIONS))
def test_each_edition_has_every_quiz_with_the_same_questions_and_answers(lang):
    english_files = sorted(utils.quiz.QUIZ_DIR.glob("*.json"))
    assert english_files
    for path in english_files:
        edition = utils.quiz.QUIZ_DIR / lang / path.name
        assert edition.exists(), f"quizzes/{lang}/{path.name} is missing"
        data = json.loads(edition.read_text(encoding="utf-8"))
        assert utils.quiz.problems(data) == []
        english = json.loads(path.read_text(encoding="utf-8"))
        shape = lambda d: [(q["id"], q["kind"], [c["correct"] for c in q["choices"]]) for q in d["questions"]]  # noqa: E731
        assert shape(data) == shape(english), f"quizzes/{lang}/{path.name} differs from the English in ids or answers"
        assert data["questions"][0]["question"] != english["questions"][0]["question"], "not translated"


def test_a_real_check_speaks_indonesian_in_the_indonesian_edition(monkeypatch, capsys):
    from utils.checks import vae as vae_checks

    monkeypatch.setenv(language.LANGUAGE_ENV, "id")
    language.catalogue.cache_clear()
    language._patterns.cache_clear()
    wrong = lambda mu, logvar: mu + logvar * torch.randn_like(mu)  # noqa: E731  (logvar used as the std)
    assert not utils.checks.check_reparameterize(wrong)
    line = capsys.readouterr().out
    english = [str(v) for k, v in vars(vae_checks).items() if k.isupper() and isinstance(v, str) and str(v) in line]
    assert not english, f"an English hint in the Indonesian edition: {english[0]!r}"
    assert language.translate("the values are off", "id") != "the values are off"
