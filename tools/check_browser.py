"""Check the built HTML book as a reader sees it, in headless Chromium.

Serves ``_build/html`` on localhost, opens every page of ``_toc.yml`` in Debian's Chromium
(driven by Playwright, which otter-grader's nbconvert already installs; Playwright's own browser
download is never used), waits for MathJax, and fails when

* math is left unrendered: a Sphinx math element without typeset output (a TeX syntax error
  leaves the source), a MathJax error (``mjx-merror``) or an undefined macro (which MathJax
  prints in red), or raw TeX delimiters in the text;
* a figure is missing: an ``<img>`` that did not load, or a chapter page without a figure;
* an "Open in Colab" link points to a notebook that does not exist in the repository, or
  to another repository, or a chapter page lacks its link to ``notebooks/<chapter>.ipynb``.

It saves a screenshot of one chapter next to the built HTML
(``_build/html/_screenshots/<chapter>.png``).

    python tools/check_browser.py                  # after jupyter-book build .
    python tools/check_browser.py --chromium PATH  # another Chromium binary

Chromium comes from Debian: ``apt-get install chromium`` (CI and tools/run_tests.sh install it
when it is missing; see CONTRIBUTING.md).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
sys.path.insert(0, str(ROOT / "tools"))
from check_build import colab_prefix, toc_files  # noqa: E402

SCREENSHOT_CHAPTER = "chapters/ch02_neural_networks"
# the flags of a closed network: no background connections, no first-run or sync traffic
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

# Evaluated in the page once MathJax is done: everything the checks need, as plain data.
PAGE_REPORT = """() => {
  const skip = "pre, code, script, style, mjx-container, .highlight, textarea";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const texts = [];
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.parentElement.closest(skip)) texts.push(node.textContent);
  }
  return {
    math: document.querySelectorAll(".math").length,
    untypeset: [...document.querySelectorAll(".math")]
      .filter(el => !el.querySelector("mjx-container"))
      .map(el => el.textContent.slice(0, 80)),
    // TeX errors, and undefined macros (MathJax's noundefined package prints them in red)
    errors: [...document.querySelectorAll('mjx-merror, mjx-mtext[style*="color: red"]')]
      .map(el => el.closest(".math").textContent.slice(0, 80)),
    text: texts.join(" "),
    images: [...document.querySelectorAll("main img, article img, .bd-article img")].map(img => ({
      src: img.getAttribute("src"), loaded: img.complete && img.naturalWidth > 0})),
    colab: [...document.querySelectorAll('a[href^="https://colab.research.google.com/"]')]
      .map(a => a.href),
  };
}"""
HAS_MATH = "() => document.querySelectorAll('.math').length > 0"
RAW_TEX = ("\\(", "\\[", "$$", "\\begin{")  # left over only where MathJax failed
# inline math $...\macro...$ that MyST did not parse
RAW_INLINE = re.compile(r"\$[^$\n]*\\[A-Za-z]+[^$\n]*\$")


def serve(directory: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the server's access log is noise here
        pass


def colab_target(url: str) -> Path | None:
    """The repository path an Open-in-Colab URL opens, or None for another repository."""
    prefix = colab_prefix()
    if not url.startswith(prefix):
        return None
    return ROOT / urlparse(url).path[len(urlparse(prefix).path) :]


def page_problems(name: str, report: dict) -> list[str]:
    """What is wrong with one page, from its in-browser report."""
    found = [f"{name}: math not typeset: {m!r}" for m in report["untypeset"][:5]]
    found += [f"{name}: MathJax error: {e!r}" for e in report["errors"][:5]]
    found += [f"{name}: raw TeX {d!r} in the text" for d in RAW_TEX if d in report["text"]]
    found += [f"{name}: raw TeX {m!r} in the text" for m in RAW_INLINE.findall(report["text"])[:5]]
    found += [
        f"{name}: image did not load: {i['src']}" for i in report["images"] if not i["loaded"]
    ]
    for url in report["colab"]:
        target = colab_target(url)
        if target is None:
            found.append(f"{name}: Colab link to another repository or branch: {url}")
        elif not target.is_file():
            found.append(f"{name}: Colab link to a notebook that does not exist: {url}")
    if name.startswith("chapters/"):
        if not any(i["loaded"] for i in report["images"]):
            found.append(f"{name}: no figure on the page")
        expected = colab_prefix() + f"notebooks/{Path(name).name}.ipynb"
        if expected not in report["colab"]:
            found.append(f"{name}: no Open-in-Colab link to {expected}")
    return found


def launch(pw, chromium: str):
    """Headless Chromium (Debian's binary) with the flags of a closed network."""
    return pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)


def page_report(page, url: str) -> dict:
    """Open ``url``, let MathJax finish, and return the page's report (PAGE_REPORT)."""
    page.goto(url, wait_until="load")
    if page.evaluate(HAS_MATH):  # Sphinx loads MathJax only on pages with math
        page.wait_for_function("window.MathJax && MathJax.startup", timeout=30_000)
        page.evaluate("MathJax.startup.promise")
    return page.evaluate(PAGE_REPORT)


def check(chromium: str, screenshot_chapter: str = SCREENSHOT_CHAPTER) -> list[str]:
    """Open every page of the book in headless Chromium and list the problems."""
    from playwright.sync_api import sync_playwright

    server = serve(HTML)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    problems, typeset = [], 0
    try:
        with sync_playwright() as pw:
            browser = launch(pw, chromium)
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            for name in toc_files():
                if not (HTML / f"{name}.html").exists():
                    problems.append(f"{name}: page missing from {HTML}")
                    continue
                report = page_report(page, base + f"{name}.html")
                typeset += report["math"] - len(report["untypeset"])
                problems += page_problems(name, report)
                if name == screenshot_chapter:
                    shot = HTML / "_screenshots" / f"{Path(name).name}.png"
                    shot.parent.mkdir(exist_ok=True)
                    page.screenshot(path=str(shot))
                    print(f"browser check: screenshot {shot.relative_to(ROOT)}")
            browser.close()
    finally:
        server.shutdown()
    print(f"browser check: {len(toc_files())} pages, {typeset} math elements typeset")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        print(f"browser check: no Chromium at {args.chromium}; install Debian's chromium")
        return 1
    problems = check(args.chromium)
    for problem in problems:
        print("browser check:", problem)
    print(f"browser check: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
