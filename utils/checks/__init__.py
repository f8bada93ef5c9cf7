"""Exercise checks: ``utils.checks.check_<exercise>(fn) -> bool``.

Each lesson's checks live in their own module here; every ``check_*`` function of every module
is gathered into this namespace, so notebooks call ``utils.checks.check_attention(attention)``.
"""
import importlib
import pkgutil

from .core import Check, exercise_check

__all__ = ["Check", "exercise_check"]
for _module in pkgutil.iter_modules(__path__):
    if _module.name == "core":
        continue
    _mod = importlib.import_module(f".{_module.name}", __name__)
    for _name in dir(_mod):
        if _name.startswith("check_"):
            globals()[_name] = getattr(_mod, _name)
            __all__.append(_name)
