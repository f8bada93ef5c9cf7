"""Translated editions: English ``solutions/`` stay the single source; translations live beside them.

One reviewable text file per notebook and language, ``translations/<lang>/<notebook stem>.md``, keyed by
cell id. Each entry starts with a marker line that records the hash of the English cell it translates:

    @@@ cell 3f2a9c1e markdown en=5d41402abc4b
    ## Kode laten
    ...

The cells that need an entry are the prose (every markdown cell but the generated badges) and the exercise
cells (code with a ``### BEGIN SOLUTION`` region), whose comments and docstrings tell the learner what to
do. Every other code cell is copied from English unchanged. A translated code cell must be the same code:
the same syntax tree once comments and docstrings are set aside, and the same nbgrader marker lines.

``problems(lang)`` names, per cell, what is stale (the English changed since the translation was written),
missing, or different code; ``python -m course check`` fails on any of them. ``worklist(stem, lang)`` is
what ``python -m course translate NN`` writes: the English of every cell that needs (re)translating, in the
same format, ready to translate and move into the translation file.
"""
from __future__ import annotations

import ast
import copy
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from . import config
from .notebook import has_tag, read_notebook, set_source, source_text

TRANSLATIONS = config.ROOT / "translations"
MARKER = re.compile(r"^@@@ cell (?P<id>\S+) (?P<kind>markdown|code) en=(?P<hash>[0-9a-f]{12})\s*$")
LANGUAGE_ENV = "GENAI_LANG"
NAMES = {"id": "Bahasa Indonesia"}  # a language's name, for messages (config.EDITIONS declares what is built)


@dataclass(frozen=True)
class Entry:
    cell_id: str
    kind: str
    english_hash: str
    text: str


def english_hash(cell: dict) -> str:
    return hashlib.sha256(source_text(cell).encode("utf-8")).hexdigest()[:12]


def needs_translation(cell: dict) -> bool:
    if cell["cell_type"] == "markdown":
        return not has_tag(cell, config.BADGES_TAG)
    return cell["cell_type"] == "code" and config.BEGIN_SOLUTION in source_text(cell)


def translation_path(stem: str, lang: str) -> Path:
    return TRANSLATIONS / lang / f"{stem}.md"


def parse(text: str, where: str = "translation") -> dict[str, Entry]:
    """The entries of one translation file, by cell id; a malformed file is one ValueError sentence."""
    entries, current, lines = {}, None, []

    def close():
        if current is not None:
            entries[current["id"]] = Entry(current["id"], current["kind"], current["hash"],
                                           "\n".join(lines).strip("\n"))

    for number, line in enumerate(text.splitlines(), 1):
        found = MARKER.match(line)
        if found:
            close()
            current, lines = found.groupdict(), []
            if current["id"] in entries:
                raise ValueError(f"{where}, line {number}: cell {current['id']} has two entries.")
        elif line.startswith("@@@"):
            raise ValueError(f"{where}, line {number}: a marker line reads `@@@ cell <id> <markdown|code> "
                             f"en=<12 hex digits>`, not {line!r}.")
        elif current is not None:
            lines.append(line)
        elif line.strip() and not line.startswith("<!--"):
            raise ValueError(f"{where}, line {number}: text before the first `@@@ cell` marker.")
    close()
    return entries


def render(entries: list[Entry], title: str = "") -> str:
    head = f"<!-- {title} -->\n\n" if title else ""
    return head + "\n\n".join(f"@@@ cell {e.cell_id} {e.kind} en={e.english_hash}\n{e.text}" for e in entries) + "\n"


class _DropDocstrings(ast.NodeTransformer):
    def _drop(self, node):
        self.generic_visit(node)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Module = _drop


def code_signature(code: str):
    """What must not change in translation: the code without comments and docstrings, and the marker lines."""
    markers = [line.strip() for line in code.splitlines() if line.strip().startswith("### ")]
    try:
        tree = _DropDocstrings().visit(ast.parse(code))
    except SyntaxError:
        return code, markers  # not Python (a magic, say): then only the exact text is the same code
    return ast.dump(tree), markers


def cell_problems(cell: dict, entry: Entry | None, where: str) -> list[str]:
    if entry is None:
        return [f"{where}: cell {cell['id']} ({cell['cell_type']}) has no translation: translate it "
                f"(`python -m course translate` lists it)."]
    if entry.kind != cell["cell_type"]:
        return [f"{where}: cell {cell['id']} is {cell['cell_type']} in English but {entry.kind} in the translation."]
    found = []
    if entry.english_hash != english_hash(cell):
        found.append(f"{where}: cell {cell['id']} changed in English since it was translated: re-translate it "
                     f"(its English starts {source_text(cell)[:50]!r}) and set en={english_hash(cell)}.")
    if cell["cell_type"] == "code" and code_signature(entry.text) != code_signature(source_text(cell)):
        found.append(f"{where}: cell {cell['id']}'s translated code differs from the English code: translate only "
                     f"comments and docstrings.")
    if not entry.text.strip():
        found.append(f"{where}: cell {cell['id']}'s translation is empty.")
    return found


def load_entries(stem: str, lang: str) -> dict[str, Entry] | None:
    path = translation_path(stem, lang)
    if not path.exists():
        return None
    return parse(path.read_text(encoding="utf-8"), f"translations/{lang}/{path.name}")


def languages() -> list[str]:
    """The editions the build writes and the check holds to: those declared in ``config.EDITIONS``."""
    return sorted(config.EDITIONS)


def problems(lang: str, solutions: list[Path] | None = None) -> list[str]:
    """Every stale, missing or wrong translated cell of ``lang``, one sentence each."""
    found = []
    for path in solutions if solutions is not None else config.solution_paths():
        where = f"translations/{lang}/{path.stem}.md"
        try:
            entries = load_entries(path.stem, lang)
        except ValueError as exc:
            found.append(str(exc))
            continue
        if entries is None:
            found.append(f"{where} is missing: every lesson has its {NAMES.get(lang, lang)} edition "
                         f"(`python -m course translate {path.name[:2]}` writes the list of cells to translate).")
            continue
        cells = read_notebook(path)["cells"]
        for cell in cells:
            if needs_translation(cell):
                found += cell_problems(cell, entries.get(cell.get("id")), where)
        ids = {c.get("id") for c in cells if needs_translation(c)}
        found += [f"{where}: cell {cell_id} is no longer in the English notebook: delete its entry."
                  for cell_id in entries if cell_id not in ids]
    return found


def translated(solution: dict, entries: dict[str, Entry]) -> dict:
    """The solution notebook with its translated cells replaced; every other cell as in English."""
    nb = copy.deepcopy(solution)
    for cell in nb["cells"]:
        entry = entries.get(cell.get("id"))
        if entry is not None and needs_translation(cell):
            set_source(cell, entry.text)
    return nb


def with_language(nb: dict, lang: str) -> dict:
    """Mark a stamped notebook as ``lang``'s edition: its setup cell makes the checks speak that language."""
    for cell in nb["cells"]:
        if has_tag(cell, config.SETUP_TAG):  # appended, so Colab's "# @title" line stays first
            set_source(cell, source_text(cell).rstrip("\n") + f'\nos.environ["{LANGUAGE_ENV}"] = "{lang}"  '
                             f'# exercise feedback in {NAMES.get(lang, lang)}\n')
    nb.setdefault("metadata", {}).setdefault(config.METADATA_KEY, {})["lang"] = lang
    return nb


def worklist(stem: str, lang: str) -> str:
    """The English of every cell of ``stem`` whose translation is missing or stale, in the file's format."""
    path = config.SOLUTIONS / f"{stem}.ipynb"
    entries = load_entries(stem, lang) or {}
    todo = []
    for cell in read_notebook(path)["cells"]:
        entry = entries.get(cell.get("id"))
        if needs_translation(cell) and (entry is None or entry.english_hash != english_hash(cell)):
            todo.append(Entry(cell["id"], cell["cell_type"], english_hash(cell), source_text(cell)))
    return render(todo, f"{stem}: {len(todo)} cell(s) to translate into {NAMES.get(lang, lang)}; replace each "
                        f"English text below, keep the marker lines, then move the entries into {stem}.md")
