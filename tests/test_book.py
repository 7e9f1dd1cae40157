"""The book's structure: chapters, table of contents, Colab notebooks and links."""

import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import check_build  # noqa: E402
import sync_notebooks  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("ch*.md"))
INSTALL_GUARD = re.compile(
    r"try:\n\s+import pdltlib  # noqa: F401\nexcept ImportError:\n"
    r"\s+%pip install -q \"pdltlib @ git\+(\S+)\"",
)


def test_there_are_chapters():
    assert len(CHAPTERS) >= 3


def test_toc_lists_exactly_the_existing_chapters():
    listed = [f for f in check_build.toc_files() if f.startswith("chapters/")]
    assert sorted(listed) == [f"chapters/{c.stem}" for c in CHAPTERS]
    for name in check_build.toc_files():
        assert (ROOT / f"{name}.md").exists(), name


def test_colab_notebooks_are_in_sync_with_the_chapters():
    assert sync_notebooks.main(["--check"]) == 0


def test_generated_notebook_defines_the_macros_and_has_no_outputs():
    for chapter in CHAPTERS:
        nb = nbformat.read(ROOT / "notebooks" / f"{chapter.stem}.ipynb", as_version=4)
        assert "\\newcommand{\\E}" in nb.cells[0].source
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_every_chapter_links_to_its_colab_notebook_and_installs_pdltlib_when_missing():
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    for chapter in CHAPTERS:
        text = chapter.read_text()
        link = check_build.colab_prefix() + f"notebooks/{chapter.stem}.ipynb"
        assert f"[Open in Colab]({link})" in text, chapter.name
        guard = INSTALL_GUARD.search(text)
        assert guard and guard.group(1) == repo, chapter.name


def test_every_chapter_follows_the_template():
    for chapter in CHAPTERS:
        text = chapter.read_text()
        assert "{exercise}" in text and ("{solution}" in text or "{solution-start}" in text)
        assert "assert_checks(" in text, f"{chapter.name} has no honest check"
        assert "plotting." in text, f"{chapter.name} has no shared-style figure"
        assert re.search(r"\$\$ \(eq-ch\d+-", text), f"{chapter.name} has no numbered equation"
        assert re.search(r"\{cite[:a-z]*\}`[^`]*roberts2022principles", text), chapter.name
