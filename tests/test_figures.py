"""Every chapter figure follows the shared style: pdltlib.plotting, labelled axes, a legend."""

import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("ch*.md"))
MAKES_FIGURE = re.compile(r"plt\.(figure|subplots)\(|plotting\.figure\(")
XLABEL = re.compile(r"set_xlabel\(|xlabel=|supxlabel\(")
YLABEL = re.compile(r"set_ylabel\(|ylabel=|supylabel\(")


def figure_cells(chapter: Path) -> list[str]:
    cells = jupytext.read(chapter).cells
    return [c.source for c in cells if c.cell_type == "code" and MAKES_FIGURE.search(c.source)]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_figures_use_the_shared_style_and_are_labelled(chapter):
    text = chapter.read_text()
    assert "plotting.use_style()" in text, f"{chapter.name} does not call plotting.use_style()"
    cells = figure_cells(chapter)
    assert cells, f"{chapter.name} has no figure"
    for source in cells:
        first = source.strip().splitlines()[0]
        assert "plt.figure(" not in source and "plt.subplots(" not in source, (
            f"{chapter.name}: make figures with plotting.figure (shared size and style): {first}"
        )
        assert XLABEL.search(source), f"{chapter.name}: a figure without an x label: {first}"
        assert YLABEL.search(source), f"{chapter.name}: a figure without a y label: {first}"
        assert "legend(" in source, f"{chapter.name}: a figure without a legend: {first}"
