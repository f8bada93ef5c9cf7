"""The language of the course's feedback: English, or a translated edition's (``GENAI_LANG=id``).

A translated notebook's setup cell sets ``GENAI_LANG``. The exercise checks' one-line messages and hints
are English constants in ``utils/checks/``; their translations live in one message catalogue per
language, ``utils/messages/<lang>.json``, a flat object ``{"English text": "translation"}``.
``translate`` replaces every catalogued English text inside a message (longest first), so a message built
from several constants, with numbers between them, is translated piece by piece. Text without an entry
stays English, which is also what happens for any language without a catalogue.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

LANGUAGE_ENV = "GENAI_LANG"
ENGLISH = "en"
CATALOGUE_DIR = Path(__file__).with_name("messages")


def language() -> str:
    return os.environ.get(LANGUAGE_ENV, "").strip().lower() or ENGLISH


@functools.lru_cache(maxsize=None)
def catalogue(lang: str) -> dict[str, str]:
    """``{english: translation}`` for ``lang``; empty for English, or when the catalogue is missing or broken."""
    if lang == ENGLISH:
        return {}
    path = CATALOGUE_DIR / f"{lang}.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in entries.items() if isinstance(k, str) and isinstance(v, str) and k and v}


def translate(message: str, lang: str | None = None) -> str:
    """``message`` in ``lang`` (default: the learner's), piece by piece from the catalogue."""
    entries = catalogue(lang or language())
    if not entries:
        return message
    for english in sorted(entries, key=len, reverse=True):
        if english in message:
            message = message.replace(english, entries[english])
    return message
