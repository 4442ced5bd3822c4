"""``spokenlm unit-quality``: phone purity, cluster purity and PNMI of units against frame labels.

Definitions of fairseq's ``examples/hubert/measure_teacher_quality.py`` (HuBERT paper): with
``p(y, z)`` the joint distribution of the phone ``y`` and the unit ``z`` of the same frame,

- phone purity   = sum_z max_y p(y, z)  (how well a unit predicts its phone),
- cluster purity = sum_y max_z p(y, z)  (how well a phone predicts its unit),
- PNMI           = I(y; z) / H(y)      (phone-normalised mutual information, 0..1).

Entropies skip zero cells (0 log 0 = 0) where fairseq adds 1e-8 inside the logarithm; the two
agree to about 1e-7. Units (from HuBERT, ``num_frames(n)`` frames) and labels (frame centres) may
differ by a frame at the end of an utterance: both are cut to the shorter one, like fairseq; a
larger difference is an error (``max_frame_diff``).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.errors import ConfigError, DictionaryError, LabelMismatchError
from ..core.io import atomic_write, read_lines
from ..core.km import UnitRow, read_km_arrays


@dataclass(frozen=True)
class UnitQuality:
    """Unit quality against phone labels (entropies in nats)."""

    phone_purity: float
    cluster_purity: float
    pnmi: float
    mutual_information: float
    phone_entropy: float
    unit_entropy: float
    frames: int
    utterances: int
    trimmed_frames: int  # frames cut from the longer of units / labels
    units_used: int
    phones_used: int


def joint_counts(
    units: Sequence[UnitRow],
    labels: Sequence[Sequence[str]],
    *,
    max_frame_diff: int = 1,
    phones: Sequence[str] | None = None,
    vocab_size: int | None = None,
) -> tuple[np.ndarray, list[str], np.ndarray, int]:
    """Counts of (phone, unit) over frames: ``(counts [phones x units], phones, unit ids, trimmed)``.

    Rows are the phones seen (in ``phones`` order when given, which then must cover every label);
    columns the units seen, ascending. Units must be ``0..vocab_size-1`` (non-negative when
    ``vocab_size`` is ``None``).
    """
    if len(units) != len(labels):
        raise LabelMismatchError(
            f"{len(units)} unit lines but {len(labels)} label lines; both must follow the same manifest"
        )
    phone_list = list(phones) if phones is not None else sorted({p for row in labels for p in row})
    index = {p: i for i, p in enumerate(phone_list)}
    ys, zs, trimmed = [], [], 0
    for n, (u, y) in enumerate(zip(units, labels)):
        diff = abs(len(u) - len(y))
        if diff > max_frame_diff:
            raise LabelMismatchError(
                f"line {n + 1}: {len(u)} unit frames but {len(y)} label frames (more than {max_frame_diff} apart); "
                "units and labels must come from the same audio at 50 Hz"
            )
        m = min(len(u), len(y))
        trimmed += diff
        _check_units(u, line=n + 1, vocab_size=vocab_size)
        try:
            ys.append(np.fromiter((index[p] for p in y[:m]), dtype=np.int64, count=m))
        except KeyError as e:
            raise DictionaryError(f"line {n + 1}: phone {e.args[0]!r} is not in the phone dictionary") from None
        zs.append(np.asarray(u[:m], dtype=np.int64))
    y_all, z_all = np.concatenate(ys or [np.zeros(0, np.int64)]), np.concatenate(zs or [np.zeros(0, np.int64)])
    unit_ids, z_idx = np.unique(z_all, return_inverse=True)
    counts = np.bincount(y_all * len(unit_ids) + z_idx, minlength=len(phone_list) * len(unit_ids))
    return counts.reshape(len(phone_list), len(unit_ids)), phone_list, unit_ids, trimmed


def _check_units(units: UnitRow, *, line: int, vocab_size: int | None) -> None:
    """Refuse a unit id that no quantizer makes (negative, or ``>= vocab_size``)."""
    if not len(units):
        return
    lo, hi = int(np.min(units)), int(np.max(units))
    if lo < 0:
        raise LabelMismatchError(f"line {line}: unit {lo} is negative; units are cluster indices 0..K-1")
    if vocab_size is not None and hi >= vocab_size:
        raise LabelMismatchError(
            f"line {line}: unit {hi} is outside 0..{vocab_size - 1} (--vocab-size {vocab_size}); "
            "give the number of clusters of the k-means that made the units"
        )


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def quality_from_counts(counts: np.ndarray, *, utterances: int = 0, trimmed: int = 0) -> UnitQuality:
    """Purities and PNMI of a phones x units count matrix."""
    total = counts.sum()
    if total == 0:
        raise LabelMismatchError("no frames to compare: the units and labels are empty")
    p = counts / total
    py, pz = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(py, pz)[nz])).sum())
    h_y = _entropy(py)
    return UnitQuality(
        phone_purity=float(p.max(axis=0).sum()),
        cluster_purity=float(p.max(axis=1).sum()),
        pnmi=mi / h_y if h_y > 0 else 1.0,  # a single phone is perfectly "predicted"
        mutual_information=mi,
        phone_entropy=h_y,
        unit_entropy=_entropy(pz),
        frames=int(total),
        utterances=utterances,
        trimmed_frames=trimmed,
        units_used=int((pz > 0).sum()),
        phones_used=int((py > 0).sum()),
    )


def unit_quality(
    units: Sequence[UnitRow],
    labels: Sequence[Sequence[str]],
    *,
    max_frame_diff: int = 1,
    phones: Sequence[str] | None = None,
    vocab_size: int | None = None,
) -> UnitQuality:
    """Phone purity, cluster purity and PNMI of ``units`` against frame ``labels`` (line by line)."""
    counts, _, _, trimmed = joint_counts(units, labels, max_frame_diff=max_frame_diff, phones=phones,
                                         vocab_size=vocab_size)
    return quality_from_counts(counts, utterances=len(units), trimmed=trimmed)


def read_phone_dict(path: str | os.PathLike) -> list[str]:
    """Phones of a fairseq dictionary file (``PHONE COUNT`` per line)."""
    phones = [line.split()[0] for line in read_lines(path) if line.strip()]
    if not phones:
        raise DictionaryError(f"{path}: empty phone dictionary")
    return phones


def markdown_table(q: UnitQuality) -> str:
    return "\n".join([
        "| phone purity | cluster purity | PNMI | H(phone) | H(unit) | units used | frames |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {q.phone_purity:.4f} | {q.cluster_purity:.4f} | {q.pnmi:.4f} | {q.phone_entropy:.3f} | "
        f"{q.unit_entropy:.3f} | {q.units_used} | {q.frames} |",
    ])


# ----------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--units", required=True, type=Path, help="units .km (one line per manifest row)")
    parser.add_argument("--labels", required=True, type=Path, help="frame phone labels .phn (same rows, 50 Hz)")
    parser.add_argument("--dict", type=Path, help="phone dictionary (dict.phn.txt); labels must be in it")
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="K, the number of k-means clusters: units must be 0..K-1 (default: not checked "
                             "beyond being non-negative)")
    parser.add_argument("--max-frame-diff", type=int, default=1,
                        help="allowed length difference per utterance, cut off at the end (default 1)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")


def run(args: argparse.Namespace) -> int:
    units = read_km_arrays(args.units)
    labels = [line.split() for line in read_lines(args.labels)]
    phones = read_phone_dict(args.dict) if args.dict is not None else None
    if args.vocab_size is not None and args.vocab_size < 1:
        raise ConfigError(f"--vocab-size {args.vocab_size}: must be >= 1")
    try:
        q = unit_quality(units, labels, max_frame_diff=args.max_frame_diff, phones=phones,
                         vocab_size=args.vocab_size)
    except (LabelMismatchError, DictionaryError) as e:
        with_dict = f" ({args.dict})" if args.dict is not None and isinstance(e, DictionaryError) else ""
        raise type(e)(f"{args.units} vs {args.labels}: {e}{with_dict}") from None
    print(markdown_table(q))
    if args.json is not None:
        with atomic_write(args.json) as f:
            json.dump({"units": str(args.units), "labels": str(args.labels), **asdict(q)}, f, indent=2)
    return 0
