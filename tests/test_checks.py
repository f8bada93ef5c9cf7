"""The check contract itself: names, the fall-back, hints for errors and shapes, inputs changed in place, logs."""
import ast
import importlib
import inspect
import json
import re
import textwrap

import pytest
import torch

import utils
import utils.checks
from utils.checks.core import ExerciseCheck, NOT_IMPLEMENTED, VALUES_OFF, exercise_check
from utils.vae import kl_divergence as reference_kl


def test_the_exercise_name_comes_from_the_check_itself():
    check = utils.checks.check_kl_divergence
    assert isinstance(check, ExerciseCheck) and check.exercise == "kl_divergence" and check.lesson == "vae"
    assert check.reference() is reference_kl
    assert set(utils.checks.CHECKS) == {c.exercise for c in utils.checks.CHECKS.values()}
    assert len(utils.checks.CHECKS) >= 20


def test_use_returns_the_learners_function_when_right_and_the_reference_when_not(capsys):
    def mine(mu, logvar):
        return -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)

    def wrong(mu, logvar):
        return 0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)

    def todo(mu, logvar):
        raise NotImplementedError()

    assert utils.checks.kl_divergence(mine) is mine
    assert capsys.readouterr().out.startswith("\u2705 kl_divergence")
    for answer in (wrong, todo):
        assert utils.checks.kl_divergence(answer) is reference_kl
        out = capsys.readouterr().out
        assert out.count("\n") == 1 and out.startswith("\u274c kl_divergence")  # still one line
        assert "goes on with the reference, utils.vae.kl_divergence" in out


def _demo_check(body):
    body.__module__ = "utils.checks.vae"
    return exercise_check(body)


def test_error_hints_and_shape_mistakes_are_named(capsys):
    @_demo_check
    def check_demo(c, fn):
        out = c.call(fn, torch.ones(2, 3), error_hints={"size of tensor": "HINT-BROADCAST"})
        c.shape(out, (2,), "one per row", mistakes={(3,): "HINT-WRONG-AXIS"})

    assert not check_demo(lambda x: x + torch.ones(4))
    assert "HINT-BROADCAST" in capsys.readouterr().out
    assert not check_demo(lambda x: x.sum(0))
    assert "HINT-WRONG-AXIS" in capsys.readouterr().out
    assert not check_demo(lambda x: x.sum())
    assert "expected (2,): one per row" in capsys.readouterr().out
    assert check_demo(lambda x: x.sum(1))


def test_an_answer_that_changes_its_input_in_place_fails_naming_it(capsys):
    @_demo_check
    def check_scale(c, fn):
        logits = torch.tensor([[1.0, 2.0]])
        c.close(c.call(fn, logits, 2.0), torch.tensor([[0.5, 1.0]]))

    def in_place(logits, temperature):
        logits /= temperature
        return logits

    assert not check_scale(in_place)
    assert "changed its input `logits` in place" in capsys.readouterr().out
    assert check_scale(lambda logits, temperature: logits / temperature)


def test_float64_answers_are_judged_like_float32(capsys):
    assert utils.checks.check_kl_divergence(lambda mu, lv: reference_kl(mu.double(), lv.double()))


def test_checks_write_structured_records_for_graders(tmp_path, monkeypatch, capsys):
    log = tmp_path / "checks.jsonl"
    monkeypatch.setenv("GENAI_CHECK_LOG", str(log))

    def todo(mu, logvar):
        raise NotImplementedError()

    utils.checks.check_kl_divergence(reference_kl)
    utils.checks.check_kl_divergence(lambda mu, lv: 0.5 * reference_kl(mu, lv))
    utils.checks.check_kl_divergence(todo)
    utils.checks.check_kl_divergence(lambda mu, lv: 1 / 0)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["status"] for r in records] == ["passed", "failed", "not attempted", "failed"]
    assert all(r["exercise"] == "kl_divergence" and r["lesson"] == "vae" for r in records)
    assert records[0]["message"] == "" and records[2]["message"] == NOT_IMPLEMENTED
    assert "0.5" in records[1]["message"] and "ZeroDivisionError" in records[3]["message"]


def test_every_check_accepts_its_reference_in_float32_and_float64(capsys):
    from checking import in_float64, passes
    for check in utils.checks.CHECKS.values():
        passes(check, check.reference(), capsys)
        passes(check, in_float64(check.reference()), capsys)


def test_every_check_runs_in_under_a_second_on_the_reference(capsys):
    import time
    for check in utils.checks.CHECKS.values():
        start = time.perf_counter()
        check(check.reference())
        seconds = time.perf_counter() - start
        assert seconds < 1.0, f"{check.exercise} took {seconds:.2f} s"
    capsys.readouterr()


def test_a_check_restores_the_thread_count_and_the_random_state():
    threads, state = torch.get_num_threads(), torch.random.get_rng_state()
    utils.checks.check_reparameterize(utils.vae.reparameterize)
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), state)


def test_a_mistake_predicate_that_cannot_judge_an_answer_does_not_raise(capsys):
    @_demo_check
    def check_demo(c, fn):
        c.close(c.call(fn), torch.ones(3), mistakes={"HINT-NEVER": lambda out: 1 / 0})

    assert not check_demo(lambda: torch.zeros(3, dtype=torch.float64))
    out = capsys.readouterr().out
    assert VALUES_OFF in out and "HINT-NEVER" not in out


# ------------------------------------------------------------------ two levels of hints
from utils.checks.core import Hint

CODE_SPAN = re.compile(r"`([^`]*)`")


def _first_hints(module) -> dict[str, str]:
    """Every module-level hint sentence a check may print first (Hint or plain str constants)."""
    return {name: value for name, value in vars(module).items()
            if isinstance(value, str) and name.isupper() and not name.startswith("_")}


def _reference_fragments(reference) -> set[str]:
    """The reference's code, as whitespace-free expressions of 12 or more characters."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(reference)))
    fragments = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.BinOp, ast.Call, ast.Compare, ast.UnaryOp, ast.Subscript)):
            text = re.sub(r"\s+", "", ast.unparse(node))
            if len(text) >= 12:
                fragments.add(text)
    return fragments


def _converted_modules():
    """The check modules written with two levels of hints (they define SECOND_HINTS)."""
    names = sorted({check.body.__module__ for check in utils.checks.CHECKS.values()})
    return [m for m in map(importlib.import_module, names) if hasattr(m, "SECOND_HINTS")]


@pytest.mark.parametrize("module", _converted_modules(), ids=lambda m: m.__name__)
def test_first_hints_name_the_symptom_not_the_code(module):
    hints = _first_hints(module)
    checks = [c for c in utils.checks.CHECKS.values() if c.body.__module__ == module.__name__]
    fragments = set().union(*(_reference_fragments(c.reference()) for c in checks))
    for name, text in hints.items():
        flat = re.sub(r"\s+", "", text).replace("`", "")
        leaked = [f for f in fragments if f in flat]
        assert not leaked, f"{module.__name__}.{name} quotes the reference's code {leaked[0]!r}: move it to `more`"
        calls = [span for span in CODE_SPAN.findall(text) if "(" in span or "=" in span]
        assert not calls, f"{module.__name__}.{name} gives code ({calls[0]!r}) in the first hint: move it to `more`"


@pytest.mark.parametrize("module", _converted_modules(), ids=lambda m: m.__name__)
def test_every_exercise_has_a_stronger_hint(module):
    for check in utils.checks.CHECKS.values():
        if check.body.__module__ == module.__name__:
            assert len(module.SECOND_HINTS.get(check.exercise, "")) > 20, f"{check.exercise} has no SECOND_HINTS entry"
    for name, text in _first_hints(module).items():
        if isinstance(text, Hint):
            assert text.more and text.more != str(text), f"{name}'s stronger hint says nothing more"


def test_hint_prints_the_stronger_hint_for_the_last_mistake(capsys):
    @_demo_check
    def check_demo_hints(c, fn):
        c.close(c.call(fn, torch.ones(3)), torch.full((3,), 2.0),
                mistakes={Hint("the result is half what it should be", more="SECRET-FIX"): torch.ones(3)})

    utils.checks.CHECKS["demo_hints"] = check_demo_hints
    try:
        assert not check_demo_hints(lambda x: x.clone())
        line = capsys.readouterr().out
        assert "half what it should be" in line and "SECRET-FIX" not in line  # the first hint keeps the fix back
        utils.checks.hint("demo_hints")
        assert "SECRET-FIX" in capsys.readouterr().out
        def demo_hints(x):  # the learner's own function names its exercise too
            return x
        for exercise in (demo_hints, check_demo_hints):
            utils.checks.hint(exercise)
            assert "SECRET-FIX" in capsys.readouterr().out
        assert check_demo_hints(lambda x: 2 * x)
        capsys.readouterr()
        utils.checks.hint("demo_hints")
        assert "already passes" in capsys.readouterr().out
    finally:
        del utils.checks.CHECKS["demo_hints"]
    utils.checks.hint("no_such_exercise")
    assert "no exercise named 'no_such_exercise'" in capsys.readouterr().out
