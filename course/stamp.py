"""The generated cells every notebook carries: Colab/Kaggle badges and the setup cell."""
from __future__ import annotations

from pathlib import Path

from .config import BADGES_TAG, BRANCH, LESSON_SLUGS, METADATA_KEY, REPO, SETUP_TAG
from .notebook import set_source

SETUP_TEMPLATE = Path(__file__).with_name("setup_cell.txt")

BADGES_TEMPLATE = (
    "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
    "(https://colab.research.google.com/github/{repo}/blob/{branch}/{folder}/{name}) "
    "[![Open in Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)]"
    "(https://kaggle.com/kernels/welcome?src=https://github.com/{repo}/blob/{branch}/{folder}/{name})")


def setup_source() -> str:
    """The setup cell's code, from the template file (``{repo}``/``{branch}`` filled in, ``{{ }}`` literal)."""
    return SETUP_TEMPLATE.read_text(encoding="utf-8").rstrip("\n").format(repo=REPO, branch=BRANCH)


def badges_source(folder: str, name: str) -> str:
    return BADGES_TEMPLATE.format(repo=REPO, branch=BRANCH, folder=folder, name=name)


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
    set_source(badges, badges_source(folder, name))
    setup = {"cell_type": "code", "id": old.get(SETUP_TAG, {}).get("id", "setup"),
             "metadata": {"tags": [SETUP_TAG]}, "source": [], "outputs": [], "execution_count": None}
    set_source(setup, setup_source())
    # setup goes after the "what you will learn" cell when there is one, else right after the badges
    has_objectives = len(cells) > title_at + 1 and cells[title_at + 1]["cell_type"] == "markdown"
    cells.insert(title_at + 2 if has_objectives else title_at + 1, setup)
    cells.insert(title_at + 1, badges)
    nb["cells"] = cells
    nb.setdefault("metadata", {})[METADATA_KEY] = lesson_metadata(name)
    return nb
