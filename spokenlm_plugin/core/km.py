"""Unit files (``.km``): one line per manifest row, the space-separated unit of every frame.

``X.km`` may come with ``X.dedup.km`` (runs of a repeated unit collapsed to one) and ``X.dur``
(the run lengths, in frames), line for line. Every stage that reads, writes or deduplicates units
goes through these functions, so the format and its checks are defined once.
"""

from __future__ import annotations

import os
from itertools import groupby
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import DictionaryError, FeatureError
from .io import atomic_write

# A line of units: a list of ints or a 1-D integer array (what k-means and the readers return).
UnitRow = Sequence[int] | np.ndarray


def read_km(path: str | os.PathLike, *, vocab_size: int | None = None, allow_empty: bool = True) -> list[list[int]]:
    """Units of each line of a ``.km`` file, checked against the dictionary ``0 .. vocab_size-1``.

    Raises :class:`DictionaryError` naming the file and line of the first token that is not a unit
    id or lies outside the dictionary; :class:`FeatureError` for a missing or non-text file, or an
    empty line when ``allow_empty`` is False.
    """
    path = Path(path)
    if not path.is_file():
        raise FeatureError(f"{path}: units file not found; make it with 'spokenlm kmeans assign'")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise FeatureError(f"{path}: not a text .km file; make it with 'spokenlm kmeans assign'") from None
    rows: list[list[int]] = []
    for lineno, text in enumerate(lines, start=1):
        units = []
        for tok in text.split():
            if not tok.isdigit():
                raise DictionaryError(
                    f"{path}:{lineno}: {tok!r} is not a unit id (non-negative integer); "
                    "a .km line holds space-separated unit ids"
                )
            u = int(tok)
            if vocab_size is not None and u >= vocab_size:
                raise DictionaryError(
                    f"{path}:{lineno}: unit {u} is outside the dictionary (units 0..{vocab_size - 1}); "
                    "use the units of the k-means the LM was trained on, or a larger --vocab-size"
                )
            units.append(u)
        if not units and not allow_empty:
            raise FeatureError(f"{path}:{lineno}: empty line (no units); every line must hold at least one unit")
        rows.append(units)
    return rows


def read_km_arrays(
    path: str | os.PathLike, *, vocab_size: int | None = None, allow_empty: bool = True
) -> list[np.ndarray]:
    """:func:`read_km` with each line as an ``int64`` array (for numpy consumers)."""
    return [np.asarray(r, dtype=np.int64) for r in read_km(path, vocab_size=vocab_size, allow_empty=allow_empty)]


def deduplicate(units: Sequence[int]) -> tuple[list[int], list[int]]:
    """Collapse runs of a repeated unit: ``(units, run lengths in frames)``."""
    runs = [(u, sum(1 for _ in g)) for u, g in groupby(units)]
    return [u for u, _ in runs], [n for _, n in runs]


def dedup_paths(km: str | os.PathLike) -> tuple[Path, Path]:
    """``X.dedup.km`` and ``X.dur`` beside ``X.km``."""
    km = Path(km)
    stem = km.name.removesuffix(".km")
    return km.with_name(f"{stem}.dedup.km"), km.with_name(f"{stem}.dur")


def write_km(path: str | os.PathLike, rows: Iterable[UnitRow], *, dedup: bool = False) -> int:
    """Write a ``.km`` file atomically (and with ``dedup`` its ``.dedup.km`` / ``.dur``); return the
    line count. Rows may be lists or integer arrays."""
    def line(xs: Sequence[int]) -> str:
        return " ".join(map(str, xs)) + "\n"

    units = [list(map(int, u)) for u in rows]
    with atomic_write(path) as f:
        f.writelines(line(u) for u in units)
    if dedup:
        dedup_km, dur = dedup_paths(path)
        pairs = [deduplicate(u) for u in units]
        with atomic_write(dedup_km) as f:
            f.writelines(line(u) for u, _ in pairs)
        with atomic_write(dur) as f:
            f.writelines(line(d) for _, d in pairs)
    return len(units)
