"""The contract every exercise check follows.

``check_<exercise>(fn, ...) -> bool`` runs the learner's function on cases with known answers
and prints one line: a pass, or what is wrong plus a hint. It never raises on a wrong answer
(an exception inside the learner's code is reported as a failure with its message); it raises
only when it is misused, for example when given something that is not a function.

A check is written as a body that receives a ``Check`` helper:

    @exercise_check("gaussian_log_density")
    def check_gaussian_log_density(c, fn):
        out = c.call(fn, x, mean, var)
        c.shape(out, (4,), "one log-density per row of x")
        c.close(out, expected, mistakes={"you forgot the 0.5 in front of the sum": wrong})
"""
from __future__ import annotations

import functools
import math

import torch

PASS, FAIL = "\u2705", "\u274c"


class _Failure(Exception):
    """A wrong answer, with the one-line explanation to print."""


class Check:
    """Helpers a check body uses; each failing helper stops the check with one clear sentence."""

    def __init__(self, name: str):
        self.name = name
        self.cases = 0

    def fail(self, message: str):
        raise _Failure(message)

    def call(self, fn, *args, **kwargs):
        """Call the learner's function, turning its exceptions into a failure that quotes them."""
        self.cases += 1
        try:
            return fn(*args, **kwargs)
        except NotImplementedError:
            self.fail("not implemented yet: replace `raise NotImplementedError()` with your code.")
        except Exception as exc:  # the learner's bug, reported rather than raised
            self.fail(f"your code raised {type(exc).__name__}: {exc}")

    def tensor(self, out, what: str = "the result") -> torch.Tensor:
        if out is None:
            self.fail(f"{what} is None: did you forget a `return`?")
        if isinstance(out, torch.Tensor):
            return out
        try:
            return torch.as_tensor(out)
        except Exception:
            self.fail(f"{what} should be a tensor, not {type(out).__name__}.")

    def shape(self, out, expected: tuple, hint: str = "") -> torch.Tensor:
        out = self.tensor(out)
        if tuple(out.shape) != tuple(expected):
            self.fail(f"the result has shape {tuple(out.shape)}, expected {tuple(expected)}"
                      + (f": {hint}" if hint else "."))
        return out

    def finite(self, out, hint: str = "") -> torch.Tensor:
        out = self.tensor(out)
        if out.is_floating_point() and not torch.isfinite(out).all():
            self.fail("the result contains NaN or inf" + (f": {hint}" if hint else "."))
        return out

    def close(self, out, expected, mistakes: dict | None = None, hint: str = "",
              atol: float = 1e-4, rtol: float = 1e-4) -> None:
        """Pass if ``out`` matches ``expected``; otherwise name the first known mistake it matches.

        ``mistakes`` maps a hint to the value that mistake would produce, or to a predicate called with
        the learner's output (as returned, on the CPU) that says whether it shows that mistake.
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
                if wrong(original):
                    self.fail(mistake_hint)
                continue
            wrong = torch.as_tensor(wrong).detach().to("cpu", torch.float64)
            if wrong.shape == out.shape and torch.allclose(out, wrong, atol=atol, rtol=rtol):
                self.fail(mistake_hint)
        worst = (out - expected).abs().max().item()
        self.fail(f"the values are off (largest difference {worst:.3g})" + (f". Hint: {hint}" if hint else "."))

    def true(self, condition: bool, message: str) -> None:
        if not condition:
            self.fail(message)


def exercise_check(exercise: str):
    """Turn a check body ``(c, fn, *args)`` into the public ``check_<exercise>(fn, *args) -> bool``."""

    def decorate(body):
        @functools.wraps(body)
        def check(fn, *args, **kwargs) -> bool:
            if not callable(fn):
                raise TypeError(f"{body.__name__} expects your function itself (e.g. "
                                f"{body.__name__}({exercise})), not a {type(fn).__name__}.")
            c = Check(exercise)
            try:
                with torch.random.fork_rng():
                    body(c, fn, *args, **kwargs)
            except _Failure as failure:
                print(f"{FAIL} {exercise}: {failure}")
                return False
            print(f"{PASS} {exercise}: correct ({c.cases} test case{'s' * (c.cases != 1)} passed).")
            return True

        check.exercise = exercise
        return check

    return decorate


def log_normal_const(d: int) -> float:
    return 0.5 * d * math.log(2 * math.pi)
