"""Human-readable outputs shared by the stages: figures written atomically, percentages for reports.

matplotlib is imported inside the functions only: the CLI must start without it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def use_agg() -> None:
    """Select matplotlib's Agg backend (files only, no display needed); call before importing pyplot."""
    import matplotlib

    matplotlib.use("Agg")


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int) -> Path:
    """Write ``fig`` to ``path`` (format from its suffix) under a temporary name renamed when complete,
    so an interrupted save leaves no partial picture; the figure is closed, saved or not."""
    import matplotlib
    import matplotlib.pyplot as plt

    path = Path(path)
    # The temporary name keeps the suffix, but an explicit format also covers a path without one.
    fmt = path.suffix[1:] or matplotlib.rcParams["savefig.format"]
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=fmt)
    finally:
        plt.close(fig)
    return path


def pct(value: float | None, ci: Sequence[float] | None = None, *, digits: int = 1, signed: bool = False) -> str:
    """A fraction as a percentage with ``digits`` decimals, followed by `` [low, high]`` when an interval
    ``ci`` (fractions) is given; ``signed`` writes the sign of positive numbers too (differences).
    A missing (``None``) or undefined (NaN) value is ``n/a``."""
    if value is None or math.isnan(value):
        return "n/a"
    spec = f"{'+' if signed else ''}.{digits}f"
    text = f"{100 * value:{spec}}"
    if ci is not None:
        text += f" [{100 * ci[0]:{spec}}, {100 * ci[1]:{spec}}]"
    return text
