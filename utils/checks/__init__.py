"""Exercise checks, one module per lesson (``utils/checks/<lesson>.py``, named like ``utils/<lesson>.py``).

Two ways to call each one, gathered here from every module:

- ``utils.checks.check_<exercise>(fn) -> bool`` prints one line and says whether ``fn`` is right;
- ``utils.checks.<exercise>(fn)`` prints the same line and returns the function to go on with: ``fn``
  when it is right, else the reference ``utils.<lesson>.<exercise>``. A check cell is one line:
  ``kl_divergence = utils.checks.kl_divergence(kl_divergence)``.

Importing this package imports every lesson's checks, and so every lesson module they test.
"""
import importlib
import pkgutil

from ..language import translate
from .core import Check, ExerciseCheck, Failure, Hint, exercise_check

__all__ = ["Check", "ExerciseCheck", "Failure", "Hint", "exercise_check", "CHECKS"]
CHECKS: dict[str, ExerciseCheck] = {}  # exercise name -> its check

for _module in pkgutil.iter_modules(__path__):
    if _module.name == "core":
        continue
    _mod = importlib.import_module(f".{_module.name}", __name__)
    for _check in vars(_mod).values():
        if isinstance(_check, ExerciseCheck) and _check.lesson == _module.name:
            if _check.exercise in CHECKS or _check.exercise in globals():
                raise ImportError(f"two checks, or a check and a module, share the name {_check.exercise!r}.")
            CHECKS[_check.exercise] = _check
            globals()[f"check_{_check.exercise}"] = _check
            globals()[_check.exercise] = _check.use
            __all__ += [f"check_{_check.exercise}", _check.exercise]


def hint(exercise: str) -> None:
    """Print the stronger hint for ``exercise``: for the mistake its last check found, else the general one."""
    name = getattr(exercise, "exercise", None) or getattr(exercise, "__name__", exercise)  # a check, your function, or a name
    check = CHECKS.get(name)
    if check is None:
        print(translate(f"There is no exercise named {exercise!r}; the exercises are: {', '.join(sorted(CHECKS))}."))
        return
    print(translate(check.stronger_hint()))


__all__ += ["hint"]
