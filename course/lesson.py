"""Student versions: each answer region becomes a stub, hidden tests are dropped."""
from __future__ import annotations

import copy

from .config import (BEGIN_HIDDEN, BEGIN_SOLUTION, CODE_STUB, END_HIDDEN, END_SOLUTION, EXERCISE_TAG,
                     MARKDOWN_STUB, SETUP_TAG)
from .notebook import add_tag, has_tag, set_source, source_text
from .stamp import stamp


def replace_regions(text: str, begin: str, end: str, stub: list | None, where: str) -> tuple[str, int]:
    """Replace each begin..end region (marker lines included) by ``stub`` at the marker's indent."""
    out, count, inside, indent = [], 0, False, ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == begin:
            if inside:
                raise ValueError(f"{where}: '{begin}' inside another region.")
            inside, indent, count = True, line[: len(line) - len(line.lstrip())], count + 1
            out.extend(indent + s for s in (stub or []))
        elif stripped == end:
            if not inside:
                raise ValueError(f"{where}: '{end}' without a '{begin}' before it.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: '{begin}' is never closed by '{end}'.")
    return "\n".join(out), count


def make_lesson(solution: dict, name: str, folder: str = "lessons") -> dict:
    """The student version of a solution notebook (which must already be stamped and stripped)."""
    nb = copy.deepcopy(solution)
    for i, cell in enumerate(nb["cells"]):
        cell.get("metadata", {}).pop("nbgrader", None)  # nbgrader's marks belong to the instructor's copy
        if has_tag(cell, SETUP_TAG):
            continue
        where = f"{name}, cell {i}"
        text, hidden = replace_regions(source_text(cell), BEGIN_HIDDEN, END_HIDDEN, None, where)
        stub = CODE_STUB if cell["cell_type"] == "code" else MARKDOWN_STUB
        text, solved = replace_regions(text, BEGIN_SOLUTION, END_SOLUTION, stub, where)
        if solved and cell["cell_type"] == "code":
            add_tag(cell, EXERCISE_TAG)
        if solved or hidden:
            set_source(cell, text)
    stamp(nb, folder, name)
    return nb
