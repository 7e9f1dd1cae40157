"""Sphinx extension: show pdltlib's docstrings on the API page as the plain text they are.

pdltlib's docstrings write the book's mathematics in plain text (``|M - T| <= k s``,
``z^(l)_{i;a}``, indented formula lines), which reads well in ``help()`` and in an editor but
is not reStructuredText: ``|...|`` would be a substitution, ``a_`` a link target and an
indented formula a definition list. This extension hands autodoc each docstring as a literal
block, so the API page shows exactly what ``help(pdltlib.<function>)`` shows, under the
signature with its type hints.
"""

from __future__ import annotations


def _literal(app, what, name, obj, options, lines: list[str]) -> None:
    if any(line.strip() for line in lines):
        lines[:] = [".. code-block:: text", ""] + [f"   {line}" for line in lines] + [""]


def setup(app):
    app.connect("autodoc-process-docstring", _literal)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
