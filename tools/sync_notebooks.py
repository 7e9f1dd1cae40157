"""Generate the Colab notebooks ``notebooks/<chapter>.ipynb`` from ``chapters/<chapter>.md``.

The MyST markdown chapters are the source. Colab opens only ``.ipynb`` files, so each chapter
has a generated twin (jupytext) with a first markdown cell that defines the book's MathJax
macros (taken from ``_config.yml``), because Colab's renderer does not know them. Cell ids are
deterministic so regenerating an unchanged chapter changes nothing.

    python tools/sync_notebooks.py          # (re)write every notebook
    python tools/sync_notebooks.py --check  # exit 1 if any notebook is missing or stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"
NOTEBOOKS = ROOT / "notebooks"


def mathjax_macros() -> dict[str, str]:
    """The book's MathJax macros as defined in ``_config.yml``."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["sphinx"]["config"]["mathjax3_config"]["tex"]["macros"]


def macros_cell() -> nbformat.NotebookNode:
    lines = [f"\\newcommand{{\\{name}}}{{{body}}}" for name, body in mathjax_macros().items()]
    source = "$$\n" + "\n".join(lines) + "\n$$"
    return nbformat.v4.new_markdown_cell(source, metadata={"tags": ["macros"]})


def notebook_for(chapter: Path) -> nbformat.NotebookNode:
    """The Colab notebook generated from one chapter source."""
    nb = jupytext.read(chapter)
    nb.metadata.pop("jupytext", None)
    nb.metadata["colab"] = {"provenance": [], "name": chapter.stem + ".ipynb"}
    nb.cells.insert(0, macros_cell())
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{chapter.stem[:4]}-{i:03d}"
        if cell.cell_type == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def chapter_sources() -> list[Path]:
    return sorted(CHAPTERS.glob("ch*.md"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args(argv)
    NOTEBOOKS.mkdir(exist_ok=True)
    stale = []
    for chapter in chapter_sources():
        target = NOTEBOOKS / f"{chapter.stem}.ipynb"
        text = render(notebook_for(chapter))
        if target.exists() and target.read_text() == text:
            continue
        stale.append(target.relative_to(ROOT))
        if not args.check:
            target.write_text(text)
    orphans = sorted(
        p.relative_to(ROOT)
        for p in NOTEBOOKS.glob("*.ipynb")
        if not (CHAPTERS / f"{p.stem}.md").exists()
    )
    if args.check:
        for path in stale:
            print(f"stale or missing: {path} (run python tools/sync_notebooks.py)")
        for path in orphans:
            print(f"orphan notebook without a chapter: {path}")
        return 1 if stale or orphans else 0
    for path in stale:
        print(f"wrote {path}")
    for path in orphans:
        print(f"warning: orphan notebook without a chapter: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
