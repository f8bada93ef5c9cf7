"""Assertions shared by the exercise-check tests: a check passes, or fails with a specific hint."""


def passes(check, fn, capsys):
    ok = check(fn)
    out = capsys.readouterr().out
    assert ok, out
    assert "\u2705" in out


def fails_with(check, fn, capsys, *fragments):
    ok = check(fn)
    out = capsys.readouterr().out
    assert not ok, f"the check accepted a wrong answer: {out}"
    for fragment in fragments:
        assert fragment in out, f"expected {fragment!r} in {out!r}"
