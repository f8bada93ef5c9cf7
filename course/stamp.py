"""The generated cells every notebook carries: Colab/Kaggle badges and the setup cell."""
from __future__ import annotations

import json
from pathlib import Path

from .config import BADGES_TAG, BRANCH, LESSON_SLUGS, METADATA_KEY, REPO, SETUP_TAG
from .notebook import set_source

SETUP_TEMPLATE = Path(__file__).with_name("setup_cell.txt")
RUNTIME_SOURCE = Path(__file__).resolve().parent.parent / "utils" / "runtime.py"  # read, never imported
# Shown as its first line: JupyterLab/Notebook 7 (jupyter.source_hidden), Colab (cellView form, with the
# template's "# @title" line), Kaggle's viewer (_kg_hide-input).
SETUP_METADATA = {"tags": [SETUP_TAG], "jupyter": {"source_hidden": True}, "cellView": "form", "_kg_hide-input": True}

BADGES_TEMPLATE = (
    "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
    "(https://colab.research.google.com/github/{repo}/blob/{branch}/{folder}/{name}) "
    "[![Open in Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)]"
    "(https://kaggle.com/kernels/welcome?src=https://github.com/{repo}/blob/{branch}/{folder}/{name})")


def platform_source() -> str:
    """``utils.runtime.platform``'s code, read (not imported) so the setup cell and utils share one definition."""
    import ast

    text = RUNTIME_SOURCE.read_text(encoding="utf-8")
    node = next(n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef) and n.name == "platform")
    return ast.get_source_segment(text, node).replace("def platform(", "def _platform(", 1)


def setup_source() -> str:
    """The setup cell's code: the template with ``{repo}``, ``{branch}`` and ``{platform}`` filled in."""
    text = SETUP_TEMPLATE.read_text(encoding="utf-8").rstrip("\n")
    return text.replace("{repo}", REPO).replace("{branch}", BRANCH).replace("{platform}", platform_source())


def badges_source(folder: str, name: str) -> str:
    return BADGES_TEMPLATE.format(repo=REPO, branch=BRANCH, folder=folder, name=name)


def glossary_line(folder: str) -> str:
    """Every lesson links the bilingual glossary (an absolute address, so it works on Colab and Kaggle too)."""
    label = ("Glosarium istilah (Inggris–Indonesia)" if folder.endswith("/id")
             else "Glossary of terms (English–Indonesian)")
    return f"📖 [{label}](https://github.com/{REPO}/blob/{BRANCH}/docs/GLOSSARY.md)"


def lesson_metadata(name: str) -> dict:
    """What the notebook says about itself, so tools identify a lesson even when the file is renamed."""
    number = name[:2]
    meta = {"lesson": number}
    if number in LESSON_SLUGS:
        meta["slug"] = LESSON_SLUGS[number]
    return meta


def stamp(nb: dict, folder: str, name: str) -> dict:
    """Put the generated badges and setup cells in place (after the title), replacing old ones."""
    generated = {SETUP_TAG, BADGES_TAG}
    old = {t: c for c in nb["cells"] for t in c.get("metadata", {}).get("tags", []) if t in generated}
    cells = [c for c in nb["cells"] if not (generated & set(c.get("metadata", {}).get("tags", [])))]
    title_at = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"), -1)
    badges = {"cell_type": "markdown", "id": old.get(BADGES_TAG, {}).get("id", "badges"),
              "metadata": {"tags": [BADGES_TAG]}, "source": []}
    set_source(badges, badges_source(folder, name) + "\n\n" + glossary_line(folder))
    setup = {"cell_type": "code", "id": old.get(SETUP_TAG, {}).get("id", "setup"),
             "metadata": json.loads(json.dumps(SETUP_METADATA)), "source": [], "outputs": [], "execution_count": None}
    set_source(setup, setup_source())
    # setup goes after the "what you will learn" cell when there is one, else right after the badges
    has_objectives = len(cells) > title_at + 1 and cells[title_at + 1]["cell_type"] == "markdown"
    cells.insert(title_at + 2 if has_objectives else title_at + 1, setup)
    cells.insert(title_at + 1, badges)
    nb["cells"] = cells
    nb.setdefault("metadata", {})[METADATA_KEY] = lesson_metadata(name)
    return nb
