"""Reading, writing, stripping and tagging notebooks (plain JSON dicts, nbformat 4)."""
from __future__ import annotations

import json
from pathlib import Path


def read_notebook(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SystemExit(f"{path} is not a readable notebook ({exc}).") from None


def dumps_notebook(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def source_text(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def set_source(cell: dict, text: str) -> None:
    cell["source"] = text.splitlines(keepends=True)


def tags(cell: dict) -> list:
    return cell.setdefault("metadata", {}).setdefault("tags", [])


def has_tag(cell: dict, tag: str) -> bool:
    return tag in cell.get("metadata", {}).get("tags", [])


def add_tag(cell: dict, tag: str) -> None:
    if tag not in tags(cell):
        tags(cell).append(tag)


def strip_outputs(nb: dict) -> dict:
    """Outputs, execution counts and run metadata removed; the notebook metadata reset to a plain kernel."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cell.get("metadata", {}).pop("execution", None)
        if not cell.get("metadata", {}).get("tags"):
            cell.get("metadata", {}).pop("tags", None)
    nb["metadata"] = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return nb


def has_outputs(nb: dict) -> bool:
    return any(c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count")) for c in nb["cells"])
