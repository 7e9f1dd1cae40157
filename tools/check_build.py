"""Check the built HTML book as a reader would meet it (no browser needed).

For every chapter in ``_toc.yml``: its page exists, every ``<img>`` it references exists in
the build, it contains at least one executed figure, and its "Open in Colab" link points to
``notebooks/<chapter>.ipynb`` of this repository, which must exist.

    python tools/check_build.py   # after jupyter-book build .
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


def colab_prefix() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = urlparse(config["repository"]["url"]).path.strip("/")
    branch = config["repository"].get("branch", "main")
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/"


def problems() -> list[str]:
    found = []
    for name in toc_files():
        if not name.startswith("chapters/"):
            continue
        page = HTML / f"{name}.html"
        if not page.exists():
            found.append(f"{name}: page {page} missing")
            continue
        html = page.read_text()
        images = re.findall(r'<img[^>]+src="([^"]+)"', html)
        if not any(src.endswith(".png") for src in images):
            found.append(f"{name}: no executed figure on the page")
        for src in images:
            if (
                not src.startswith(("http:", "https:", "data:"))
                and not (page.parent / src).exists()
            ):
                found.append(f"{name}: image {src} missing")
        links = re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', html)
        expected = colab_prefix() + f"notebooks/{Path(name).name}.ipynb"
        if expected not in links:
            found.append(f"{name}: no Open-in-Colab link to {expected} (found {links})")
        if not (ROOT / "notebooks" / f"{Path(name).name}.ipynb").exists():
            found.append(f"{name}: notebooks/{Path(name).name}.ipynb does not exist")
    return found


def main() -> int:
    found = problems()
    for p in found:
        print("book check:", p)
    print(f"book check: {len(toc_files())} pages, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
