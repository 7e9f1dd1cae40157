"""Copy MathJax 3 into the book's ``_static/mathjax/`` so the HTML book typesets math offline.

The book is read online, but it is built and checked (tools/check_browser.py) on machines
without network access, where a MathJax loaded from a CDN never arrives and every page would
show raw TeX. So the book serves its own MathJax: the single-file component
``tex-chtml-full.js`` (TeX input with every extension, so nothing is autoloaded, and CommonHTML
output) and its web fonts, taken from the PyPI package ``django-static-mathjax`` (MathJax 3.2.2
as static files, no dependencies). ``_config.yml`` points Sphinx's ``mathjax_path`` at it.

    python tools/vendor_mathjax.py     # run by tools/build_book.sh and tools/run_tests.sh
"""

from __future__ import annotations

import shutil
import sys
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "_static" / "mathjax"
FILES = ("tex-chtml-full.js",)
FONTS = Path("output") / "chtml" / "fonts" / "woff-v2"


def source() -> Path:
    """The es5 folder of the installed MathJax 3 distribution."""
    spec = find_spec("mathjax")
    if spec is None or spec.origin is None:
        raise SystemExit("MathJax is missing: pip install -r requirements.txt")
    es5 = Path(spec.origin).parent / "static" / "mathjax" / "es5"
    if not (es5 / FILES[0]).exists():
        raise SystemExit(f"{es5} holds no MathJax 3 build (is django-static-mathjax installed?)")
    return es5


def main() -> int:
    es5 = source()
    TARGET.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy2(es5 / name, TARGET / name)
    shutil.copytree(es5 / FONTS, TARGET / FONTS, dirs_exist_ok=True)
    print(f"MathJax copied to {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
