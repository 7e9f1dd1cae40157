"""Store chapter notebooks executed by nbmake in the book's jupyter-cache.

The test run executes every chapter once, in parallel, through nbmake (on copies of
``notebooks/*.ipynb`` in ``_nbexec/`` run with ``--overwrite``; nbmake skips paths containing
``_build``). This script copies those
outputs onto the chapter sources as the book build reads them (myst-nb's reader) and caches
them in ``_build/.jupyter_cache``, so ``jupyter-book build`` with ``execute_notebooks: cache``
finds every chapter executed and runs none of them again.

    python tools/cache_executions.py _nbexec
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from myst_nb.core.read import read_myst_markdown_notebook

ROOT = Path(__file__).resolve().parent.parent


def cache_chapter(chapter: Path, executed: Path, cache) -> None:
    source = read_myst_markdown_notebook(chapter.read_text(), path=chapter)
    run = nbformat.read(executed, as_version=4)
    source_code = [c for c in source.cells if c.cell_type == "code"]
    run_code = [c for c in run.cells if c.cell_type == "code"]
    if [c.source for c in source_code] != [c.source for c in run_code]:
        raise SystemExit(
            f"{executed} does not match {chapter}: run python tools/sync_notebooks.py first"
        )
    if any(c.execution_count is None for c in run_code):
        raise SystemExit(f"{executed} was not executed (did nbmake run and pass?)")
    for src, done in zip(source_code, run_code, strict=True):
        src.outputs = done.outputs
        src.execution_count = done.execution_count
    cache.cache_notebook_bundle(
        CacheBundleIn(source, str(chapter)), check_validity=False, overwrite=True
    )


def main(executed_dir: str) -> int:
    cache = get_cache(ROOT / "_build" / ".jupyter_cache")
    chapters = sorted((ROOT / "chapters").glob("ch*.md"))
    missing = []
    for chapter in chapters:
        executed = Path(executed_dir) / f"{chapter.stem}.ipynb"
        if not executed.exists():
            missing.append(chapter.name)
            continue
        cache_chapter(chapter, executed, cache)
    print(f"cached {len(chapters) - len(missing)} executed chapters")
    if missing:
        print("not executed (the book build will run them): " + ", ".join(missing))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1]))
