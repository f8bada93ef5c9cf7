"""The contract every exercise check follows.

A check body receives a ``Check`` helper and the learner's function; the exercise's name comes from
the body's own name (``check_kl_divergence`` checks ``kl_divergence``):

    @exercise_check
    def check_gaussian_log_density(c, fn):
        out = c.call(fn, x, mean, var)
        c.shape(out, (4,), "one log-density per row of x", mistakes={(4, 3): SUM_OVER_ROWS})
        c.close(out, expected, mistakes={MISSING_HALF: wrong})

The decorated ``check_<exercise>(fn) -> bool`` prints one line, a pass or what is wrong with a hint.
It never raises on a wrong answer: an exception inside the learner's code, a wrong shape, an input
changed in place are all reported as failures. It raises only when misused (not given a function).

``utils.checks.<exercise>(fn)`` runs the same check and returns the function the lesson should go on
with: the learner's when it passes, otherwise the reference ``utils.<lesson>.<exercise>``.

Hints come in two levels. The printed line names the **symptom** ("your KL is negative for some
inputs"). A ``Hint`` constant also carries a stronger one, ``Hint(symptom, more=...)``, and each check
module has ``SECOND_HINTS = {exercise: ...}`` for when no specific mistake was recognised;
``utils.checks.hint("kl_divergence")`` prints the stronger hint for the learner's last failed try.
Only ``solutions/`` holds the answer itself.

When the environment variable ``GENAI_CHECK_LOG`` names a file, every check also appends one JSON
line there: ``{"exercise", "lesson", "status", "message"}`` with status ``passed``, ``failed`` or
``not attempted``. Graders read that file; nobody parses the printed lines.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import json
import math
import os

import torch

from ..language import translate

PASS, FAIL = "\u2705", "\u274c"
LOG_ENV = "GENAI_CHECK_LOG"
PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"
NOT_IMPLEMENTED = "not implemented yet: replace `raise NotImplementedError()` with your code."
NO_RETURN = "is None: did you forget a `return`?"
VALUES_OFF = "the values are off"
RAISED = "your code raised"
IN_PLACE = ("your function changed its input `{}` in place, so the caller's tensor is no longer what it passed in: "
            "leave the inputs as they are and build new tensors for the result.")


class Hint(str):
    """A first hint (the symptom, what the check prints) that carries a stronger one in ``more``.

    It is a ``str``, so it works wherever a hint does: ``c.fail(HINT)``, ``mistakes={HINT: wrong}``.
    """

    def __new__(cls, symptom: str, more: str = ""):
        hint = super().__new__(cls, symptom)
        hint.more = more
        return hint


class Failure(Exception):
    """A wrong answer, with the one-line explanation to print. Raised by ``Check.fail``.

    ``more`` is the stronger hint for this mistake (empty when only the exercise's general one applies).
    """

    def __init__(self, message: str, status: str = FAILED, more: str = ""):
        super().__init__(message)
        self.status = status
        self.more = more or getattr(message, "more", "")


def _argument_names(fn, args, kwargs) -> list[str]:
    """The parameter name each positional argument binds to (``#1``, ``#2``... when unknown)."""
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs)
        names = {id(value): name for name, value in bound.arguments.items()}
    except (TypeError, ValueError):
        names = {}
    return [names.get(id(a), f"#{i + 1}") for i, a in enumerate(args)]


class Check:
    """Helpers a check body uses; each failing helper stops the check with one clear sentence."""

    def __init__(self, name: str):
        self.name = name
        self.cases = 0

    def fail(self, message: str, more: str = ""):
        raise Failure(message, more=more)

    def call(self, fn, *args, error_hints: dict | None = None, **kwargs):
        """Call the learner's function and return what it returns.

        Its exceptions become a failure that quotes them, with the hint from ``error_hints`` (message
        fragment -> hint) whose fragment appears in the message. Tensor arguments must come back
        unchanged: an answer that edits its caller's tensor in place fails, naming the argument.
        """
        self.cases += 1
        snapshots = [(name, a, a.detach().clone()) for name, a in zip(_argument_names(fn, args, kwargs), args)
                     if isinstance(a, torch.Tensor)]
        snapshots += [(name, a, a.detach().clone()) for name, a in kwargs.items() if isinstance(a, torch.Tensor)]
        try:
            out = fn(*args, **kwargs)
        except NotImplementedError:
            raise Failure(NOT_IMPLEMENTED, NOT_ATTEMPTED) from None
        except Failure:
            raise
        except Exception as exc:  # the learner's bug, reported rather than raised
            message = f"{RAISED} {type(exc).__name__}: {exc}"
            for fragment, hint in (error_hints or {}).items():
                if fragment in str(exc):
                    self.fail(f"{message}. {hint}", more=getattr(hint, "more", ""))
            self.fail(message)
        for name, tensor, before in snapshots:
            if tensor.shape != before.shape or not torch.equal(tensor.detach(), before):
                self.fail(IN_PLACE.format(name))
        return out

    def tensor(self, out, what: str = "the result") -> torch.Tensor:
        if out is None:
            self.fail(f"{what} {NO_RETURN}")
        if isinstance(out, torch.Tensor):
            return out
        try:
            return torch.as_tensor(out)
        except Exception:
            self.fail(f"{what} should be a tensor, not {type(out).__name__}.")

    def shape(self, out, expected: tuple, hint: str = "", mistakes: dict | None = None) -> torch.Tensor:
        """Fail unless ``out`` has the ``expected`` shape; ``mistakes`` maps a wrong shape to its hint."""
        out = self.tensor(out)
        got = tuple(out.shape)
        if got != tuple(expected):
            for wrong_shape, mistake_hint in (mistakes or {}).items():
                if got == tuple(wrong_shape):
                    self.fail(mistake_hint)
            self.fail(f"the result has shape {got}, expected {tuple(expected)}" + (f": {hint}" if hint else "."),
                      more=getattr(hint, "more", ""))
        return out

    def finite(self, out, hint: str = "") -> torch.Tensor:
        out = self.tensor(out)
        if out.is_floating_point() and not torch.isfinite(out).all():
            self.fail("the result contains NaN or inf" + (f": {hint}" if hint else "."), more=getattr(hint, "more", ""))
        return out

    def close(self, out, expected, mistakes: dict | None = None, hint: str = "",
              atol: float = 1e-4, rtol: float = 1e-4) -> None:
        """Pass if ``out`` matches ``expected``; otherwise name the first known mistake it matches.

        ``mistakes`` maps a hint to the value that mistake would produce, or to a predicate called with
        the learner's output (on the CPU, float64 answers given as float32 so that the predicate can
        compare them with float32 tensors) that says whether it shows that mistake.
        Everything else is compared in float64, so float32 and float64 answers are judged alike.
        """
        original = self.tensor(out).detach().cpu()
        out = original.to(torch.float64)
        expected = torch.as_tensor(expected).detach().to("cpu", torch.float64)
        if out.shape != expected.shape:
            if out.numel() == expected.numel():
                self.fail(f"the result has shape {tuple(out.shape)}, expected {tuple(expected.shape)} "
                          f"(same numbers, arranged differently?).")
            self.fail(f"the result has shape {tuple(out.shape)}, expected {tuple(expected.shape)}.")
        if torch.allclose(out, expected, atol=atol, rtol=rtol, equal_nan=False):
            return
        for mistake_hint, wrong in (mistakes or {}).items():
            if callable(wrong):
                if _shows(wrong, original):
                    self.fail(mistake_hint)
                continue
            wrong = torch.as_tensor(wrong).detach().to("cpu", torch.float64)
            if wrong.shape == out.shape and torch.allclose(out, wrong, atol=atol, rtol=rtol):
                self.fail(mistake_hint)
        worst = (out - expected).abs().max().item()
        self.fail(f"{VALUES_OFF} (largest difference {worst:.3g})" + (f". Hint: {hint}" if hint else "."),
                  more=getattr(hint, "more", ""))

    def true(self, condition: bool, message: str) -> None:
        if not condition:
            self.fail(message)

    # ---------------------------------------------------------------- build exercises (a module, a loop)
    def module(self, make, *args, **kwargs) -> torch.nn.Module:
        """Build the learner's module, ``make(*args)``; anything but an ``nn.Module`` is a failure."""
        module = self.call(make, *args, **kwargs)
        if not isinstance(module, torch.nn.Module):
            self.fail(f"building it gave a {type(module).__name__}, not an nn.Module: does the class "
                      f"inherit from nn.Module and call super().__init__()?")
        return module

    def same_weights(self, module: torch.nn.Module, reference: torch.nn.Module, hint: str = "") -> None:
        """Copy the reference's weights into the learner's module; names a missing or extra layer."""
        mine, theirs = module.state_dict(), reference.state_dict()
        missing = [k for k in theirs if k not in mine]
        extra = [k for k in mine if k not in theirs]
        if missing or extra:
            what = (f"it has no `{missing[0]}`" if missing else f"it has a `{extra[0]}` that the reference has not")
            self.fail(f"your module's layers are not the ones the exercise names: {what}"
                      + (f" ({hint})" if hint else "."))
        for key, value in theirs.items():
            if mine[key].shape != value.shape:
                self.fail(f"your `{key}` has shape {tuple(mine[key].shape)}, the reference's "
                          f"{tuple(value.shape)}: check the sizes you built it with.")
        module.load_state_dict(theirs)

    def gradients_reach(self, module: torch.nn.Module, loss: torch.Tensor, hint: str = "") -> None:
        """``loss.backward()`` must give every parameter of ``module`` a gradient that is not all zero."""
        self.true(isinstance(loss, torch.Tensor) and loss.requires_grad,
                  "the loss carries no gradient: was something detached, or computed under torch.no_grad()?")
        module.zero_grad(set_to_none=True)
        loss.backward()
        for name, p in module.named_parameters():
            if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0):
                self.fail(f"no gradient reaches `{name}`: is that layer used in forward, and is nothing "
                          f"detached on the way?" + (f" {hint}" if hint else ""))

    def learns(self, losses: list[float], hint: str, factor: float = 0.9) -> None:
        """A few steps on a small fixed batch must lower the loss (the last below ``factor`` × the first)."""
        losses = [float(x) for x in losses]
        if not all(math.isfinite(x) for x in losses):
            self.fail("the loss became NaN or inf during the steps: " + hint)
        if not losses[-1] < factor * losses[0]:
            self.fail(f"the loss does not go down in {len(losses)} steps ({losses[0]:.3g} -> {losses[-1]:.3g}): {hint}")


class PlainSGD:
    """Plain SGD with an optimiser's ``zero_grad()`` and ``step()``, for checks that take training steps.

    Not a torch.optim.Optimizer: the first step() of one of those imports torch._dynamo, which alone
    takes longer than a check may.
    """

    def __init__(self, params, lr: float = 0.1):
        self.params, self.lr = list(params), lr
        self.param_groups = [{"params": self.params, "lr": lr}]

    def zero_grad(self, set_to_none: bool = True):
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self, closure=None):
        for p in self.params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-self.lr)


def _shows(predicate, out: torch.Tensor) -> bool:
    """Whether ``out`` shows a mistake; a predicate that cannot judge this output says no, never raises."""
    if out.dtype == torch.float64:
        out = out.float()
    try:
        return bool(predicate(out))
    except Exception:
        return False


def _log(record: dict) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
    except OSError:
        pass  # a grader's log that cannot be written must not break the learner's notebook


class ExerciseCheck:
    """``check_<exercise>(fn) -> bool``, made by ``@exercise_check`` from a body ``(c, fn, *args)``."""

    def __init__(self, body):
        if not body.__name__.startswith("check_"):
            raise ValueError(f"a check body is named check_<exercise>, not {body.__name__}.")
        functools.update_wrapper(self, body)
        self.body = body
        self.exercise = body.__name__[len("check_"):]
        self.lesson = body.__module__.rsplit(".", 1)[-1]  # utils.checks.vae -> vae
        self.last: tuple[str, str, str] | None = None  # (status, message, stronger hint) of the last try

    def reference(self):
        """The course's own answer, ``utils.<lesson>.<exercise>``."""
        return getattr(importlib.import_module(f"utils.{self.lesson}"), self.exercise)

    def run(self, fn, *args, **kwargs) -> tuple[str, str]:
        """(status, message) without printing; ``self.last`` keeps them with the stronger hint."""
        if not callable(fn):
            raise TypeError(f"{self.__name__} expects your function itself (e.g. "
                            f"{self.__name__}({self.exercise})), not a {type(fn).__name__}.")
        c = Check(self.exercise)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the cases are tiny: on a busy CPU, waking a thread pool costs more than it saves
        try:
            with torch.random.fork_rng():
                self.body(c, fn, *args, **kwargs)
        except Failure as failure:
            self.last = (failure.status, str(failure), failure.more)
            return failure.status, str(failure)
        finally:
            torch.set_num_threads(threads)
        self.last = (PASSED, "", "")
        return PASSED, f"correct ({c.cases} test case{'s' * (c.cases != 1)} passed)."

    def second_hint(self) -> str:
        """The exercise's general stronger hint, from its module's ``SECOND_HINTS``."""
        return getattr(importlib.import_module(self.body.__module__), "SECOND_HINTS", {}).get(self.exercise, "")

    def stronger_hint(self) -> str:
        """What ``utils.checks.hint(exercise)`` prints: the hint for the last failed try, else the general one."""
        status, message, more = self.last or ("", "", "")
        general = self.second_hint() or "no stronger hint is written for this exercise yet."
        if status == PASSED:
            return f"{self.exercise} already passes. In general: {general}"
        if status == FAILED and more:
            return f"{self.exercise}, your last try ({translate(message).rstrip('.')}): {more}"  # whole, then cut
        return f"{self.exercise}: {general}"

    def __call__(self, fn, *args, _fallback: str = "", **kwargs) -> bool:
        status, message = self.run(fn, *args, **kwargs)
        _log({"exercise": self.exercise, "lesson": self.lesson, "status": status,
              "message": "" if status == PASSED else message})
        passed = status == PASSED
        print(f"{PASS if passed else FAIL} {self.exercise}: {translate(message + ('' if passed else _fallback))}")
        return passed

    def use(self, fn):
        """Check ``fn``; return it when it passes, else the reference (and say so on the same line)."""
        fallback = f" The lesson goes on with the reference, utils.{self.lesson}.{self.exercise}."
        return fn if self(fn, _fallback=fallback) else self.reference()


def exercise_check(body) -> ExerciseCheck:
    """Decorator: turn ``check_<exercise>(c, fn, *args)`` into the public check."""
    return ExerciseCheck(body)


def log_normal_const(d: int) -> float:
    return 0.5 * d * math.log(2 * math.pi)
