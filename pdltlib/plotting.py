"""The shared figure style: every chapter's theory-versus-Monte-Carlo figure looks the same.

Theory is a solid line; Monte Carlo estimates are points with 1-sigma error bars (the standard
errors of :class:`pdltlib.stats.Estimate`); colours follow one cycle. Not in the book: the
companion's figure style.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["use_style", "figure", "theory_line", "mc_points", "COLORS"]

COLORS = ("#1b6ca8", "#d1495b", "#2e933c", "#edae49", "#66429b", "#00798c", "#8c5a3c")

_STYLE = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(color=COLORS),
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "errorbar.capsize": 2.5,
}


def use_style() -> None:
    """Apply the companion's matplotlib style (call once at the top of a chapter).

    Not in the book: the companion's figure style.
    """
    mpl.rcParams.update(_STYLE)


def figure(ncols: int = 1, nrows: int = 1, *, width: float = 6.4, height: float = 4.0, **kw):
    """A figure with ``nrows x ncols`` axes in the companion's style (returns fig, axes).

    Not in the book: the companion's figure style.
    """
    use_style()
    return plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), constrained_layout=True, **kw
    )


def theory_line(ax, x: Sequence[float], y: Sequence[float], label: str = "theory", **kw):
    """Draw a theory curve as a solid line.

    Not in the book: the companion's figure style.
    """
    return ax.plot(np.asarray(x), np.asarray(y), "-", label=label, **kw)


def mc_points(ax, x: Sequence[float], estimate, label: str = "Monte Carlo", **kw):
    """Draw Monte Carlo estimates (an Estimate or (values, errors)) with 1-sigma error bars.

    Not in the book: the companion's figure style.
    """
    values, errors = (estimate.value, estimate.stderr) if hasattr(estimate, "stderr") else estimate
    kw.setdefault("fmt", "o")
    kw.setdefault("markersize", 4)
    return ax.errorbar(
        np.asarray(x), np.asarray(values), yerr=np.asarray(errors), label=label, **kw
    )
