"""The language of the course's feedback: English, or a translated edition's (``GENAI_LANG=id``).

A translated notebook's setup cell sets ``GENAI_LANG``. The exercise checks' one-line messages and hints
are English constants in ``utils/checks/``; their translations live in one message catalogue per
language, ``utils/messages/<lang>/*.json`` (a file per checks module), each a flat object
``{"English text": "translation"}``. ``translate`` replaces every catalogued English text inside a message
(longest first), so a message built from several constants, with numbers between them, is translated
piece by piece; an entry with ``{}`` (a template such as "your function changed its input `{}`") matches
any text there and carries it into the translation's ``{}``. Text without an entry stays English, which
is also what happens for any language without a catalogue.
"""
from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

LANGUAGE_ENV = "GENAI_LANG"
ENGLISH = "en"
CATALOGUE_DIR = Path(__file__).with_name("messages")


def language() -> str:
    return os.environ.get(LANGUAGE_ENV, "").strip().lower() or ENGLISH


@functools.lru_cache(maxsize=None)
def catalogue(lang: str) -> dict[str, str]:
    """``{english: translation}`` for ``lang``; empty for English or without a catalogue; a broken file is skipped."""
    if lang == ENGLISH:
        return {}
    entries = {}
    for path in sorted((CATALOGUE_DIR / lang).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict):
            entries.update({k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str) and k and v})
    return entries


@functools.lru_cache(maxsize=None)
def _patterns(lang: str) -> list[tuple[re.Pattern, str]]:
    """The catalogue as (pattern, translation) pairs, longest English first; ``{}`` matches any text."""
    pairs = []
    for english, translated in sorted(catalogue(lang).items(), key=lambda kv: len(kv[0]), reverse=True):
        pattern = re.escape(english).replace(re.escape("{}"), "(.+?)")
        pairs.append((re.compile(pattern), translated))
    return pairs


def translate(message: str, lang: str | None = None) -> str:
    """``message`` in ``lang`` (default: the learner's), piece by piece from the catalogue."""
    for pattern, translated in _patterns(lang or language()):
        def fill(found, translated=translated):
            parts = iter(found.groups())
            return re.sub(r"\{\}", lambda _: next(parts, ""), translated)
        message = pattern.sub(fill, message)
    return message
