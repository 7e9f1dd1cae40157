"""The API reference page (api.md) documents every pdltlib module, and every public function
and class says what it computes and which equation of the book it implements."""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import pdltlib

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(m.name for m in pkgutil.iter_modules(pdltlib.__path__))
# an equation "(4.118)", "(∞.12)", "(B.3)", a range "4.104-4.105", a section, or a utility
CITES_BOOK = re.compile(
    r"\((?:\d+|∞|ε|[AB])\.\d+\)|\b(?:eqs?\.|section|sections|ch\.|chapter|chapters)\s*[\d∞ε(]"
    r"|\b\d+\.\d+-\d+\.\d+|Not\s+in\s+the\s+book",
    re.I,
)


def test_every_module_is_on_the_api_page():
    page = (ROOT / "api.md").read_text()
    documented = set(re.findall(r"^\.\. automodule:: pdltlib\.(\w+)$", page, re.M))
    assert documented == set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_public_names_cite_the_book(name):
    module = importlib.import_module(f"pdltlib.{name}")
    assert module.__doc__ and CITES_BOOK.search(module.__doc__), f"pdltlib.{name}: module doc"
    assert hasattr(module, "__all__"), f"pdltlib.{name} has no __all__"
    for public in module.__all__:
        obj = getattr(module, public)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        doc = inspect.getdoc(obj) or ""
        assert doc, f"pdltlib.{name}.{public} has no docstring"
        assert CITES_BOOK.search(doc), (
            f"pdltlib.{name}.{public}: say which book equation it implements, or 'Not in the "
            f"book: ...' for a utility"
        )
