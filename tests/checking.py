"""Assertions shared by the exercise-check tests: a check passes, or fails with a specific hint.

Hints are imported from the checks module (``from utils.checks.vae import KL_SIGN``), never typed again:

    fails_with(check_kl_divergence, wrong_answer, capsys, KL_SIGN)
"""
import torch


def _printed_line(check, fn, capsys):
    ok = check(fn)
    out = capsys.readouterr().out
    assert out.count("\n") == 1, f"a check prints exactly one line, got: {out!r}"
    return ok, out


def passes(check, fn, capsys):
    ok, out = _printed_line(check, fn, capsys)
    assert ok, out
    assert "\u2705" in out


def fails_with(check, fn, capsys, *hints):
    ok, out = _printed_line(check, fn, capsys)
    assert not ok, f"the check accepted a wrong answer: {out}"
    for hint in hints:
        assert hint in out, f"expected {hint!r} in {out!r}"


def _to_float64(value):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.double()
    if isinstance(value, dict):
        return {k: _to_float64(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_to_float64(v) for v in value)
    return value


def in_float64(fn):
    """The same answer, returning float64 tensors (as a learner's code with float64 constants would)."""
    def answer(*args, **kwargs):
        return _to_float64(fn(*args, **kwargs))
    return answer
