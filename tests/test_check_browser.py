"""The headless-browser check of the book (tools/check_browser.py) catches what a reader would
see: untypeset math, undefined macros, raw TeX, missing figures, broken Colab links."""

import shutil
import sys
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import check_browser  # noqa: E402
import vendor_mathjax  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
GOOD_LINK = check_browser.colab_prefix() + "notebooks/ch02_neural_networks.ipynb"
PAGE = """<html><head><script>window.MathJax = {{tex: {{macros: {{E: "\\\\mathbb{{E}}"}}}},
options: {{processHtmlClass: "tex2jax_process|mathjax_process|math|output_area"}}}};
</script><script defer src="mathjax/tex-chtml-full.js"></script></head><body><main>
<a href="{link}">Open in Colab</a><p>{body}</p><img src="{image}"></main></body></html>"""


def report(tmp_path, body, image="figure.png", link=GOOD_LINK):
    (tmp_path / "page.html").write_text(PAGE.format(body=body, image=image, link=link))
    server = check_browser.serve(tmp_path)
    try:
        with sync_playwright() as pw:
            browser = check_browser.launch(pw, CHROMIUM)
            url = f"http://127.0.0.1:{server.server_address[1]}/page.html"
            result = check_browser.page_report(browser.new_page(), url)
            browser.close()
    finally:
        server.shutdown()
    return check_browser.page_problems("chapters/ch02_neural_networks", result)


@pytest.fixture
def site(tmp_path):
    es5 = vendor_mathjax.source()
    shutil.copy(es5 / "tex-chtml-full.js", tmp_path / "mathjax" / "tex-chtml-full.js")
    shutil.copytree(es5 / vendor_mathjax.FONTS, tmp_path / "mathjax" / vendor_mathjax.FONTS)
    shutil.copy(ROOT / "tests" / "data" / "pixel.png", tmp_path / "figure.png")
    return tmp_path


@pytest.fixture(autouse=True)
def mathjax_dir(tmp_path):
    (tmp_path / "mathjax").mkdir()


def test_a_good_page_passes(site):
    assert report(site, r'<span class="math">\(\E[z^2] = K\)</span>') == []


@pytest.mark.parametrize(
    "body, problem",
    [
        (r'<span class="math">\(\frac{1}{\)</span>', "math not typeset"),
        (r'<span class="math">\(\undefinedmacro x\)</span>', "MathJax error"),
        (r"the kernel $\alpha K$ left as text", "raw TeX"),
    ],
)
def test_broken_math_is_caught(site, body, problem):
    found = report(site, body)
    assert any(problem in p for p in found), found


def test_a_missing_figure_is_caught(site):
    found = report(site, "no math here", image="missing.png")
    assert any("image did not load" in p for p in found), found


def test_a_colab_link_to_a_missing_notebook_is_caught(site):
    link = check_browser.colab_prefix() + "notebooks/ch99_missing.ipynb"
    found = report(site, "no math here", link=link)
    assert any("does not exist" in p for p in found), found
    assert any("no Open-in-Colab link" in p for p in found), found
