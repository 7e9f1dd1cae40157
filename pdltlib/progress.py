"""Progress bars for long ensemble and training runs: one look for the whole library.

Bars use ``tqdm.auto`` (widgets in Jupyter/Colab when ipywidgets is installed, text otherwise)
and appear only for runs longer than three seconds, so quick calls and executed book pages stay
clean. Setting the environment variable ``PDLT_PROGRESS=text`` forces text bars: a notebook
executed without a browser (nbmake, the book build; ``tools/_env.sh`` sets it) cannot update a
widget, and would keep a stale widget snapshot instead of the finished bar. Not in the book: a
utility.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from typing import TypeVar

if os.environ.get("PDLT_PROGRESS") == "text":
    from tqdm.std import tqdm
else:
    with warnings.catch_warnings():
        # without ipywidgets tqdm.auto warns once and falls back to text bars, as wanted
        warnings.simplefilter("ignore")
        from tqdm.auto import tqdm

__all__ = ["progress_bar"]

T = TypeVar("T")


def progress_bar(iterable: Iterable[T], desc: str, enabled: bool = True) -> Iterator[T]:
    """Iterate over ``iterable`` with a progress bar labelled ``desc`` (shown after 3 s).

    Not in the book: a utility.
    """
    return iter(tqdm(iterable, desc=desc, disable=not enabled, delay=3.0))
