"""sWUGGY / sBLIMP accuracies (ZeroSpeech 2021 sLM21) from per-utterance LM scores.

A ``gold.csv`` lists every utterance (``filename``, without folder nor extension) with the pair
it belongs to. Rows are paired by explicit keys, never by file order:

lexical (sWUGGY)
    columns ``id, filename, voice, frequency, correct`` (+ ``word``, ``phones``, ``length`` in
    the real sLM21 files); the word (``correct`` 1) and the non-word (``correct`` 0) of a pair
    share ``(voice, id)``. A pair scores 1 if the word's score is higher, 0.5 on a tie, else 0;
    scores are averaged over the voices of an ``id``, then over ids ("all"). "in-vocab" keeps the
    ids whose word has ``frequency >= 1`` (``frequency`` 0 is the out-of-vocabulary band, as the
    sLM21 leaderboard's ``oov``).
syntactic (sBLIMP)
    columns ``id, filename, voice, type, subtype, correct``; a pair shares
    ``(type, subtype, id, voice)``; averaged over voices, then over ``(type, subtype, id)``.

This follows ``zerospeech2021`` (``lexical.py``, ``syntactic.py``, ``leaderboard.py``) and the
``zerospeech/benchmarks`` package, which merges words and non-words on ``(voice, id)``.

Confidence intervals: every accuracy (all, in-vocab, each frequency band, each sBLIMP type) comes
with a 95 % percentile bootstrap interval over pair ids: the ids (``id``, or ``(type, subtype, id)``,
each with all its voices) are resampled with replacement ``resamples`` times (1000, numpy
``default_rng(seed)``, seed 0), each accuracy is recomputed from the resample the same way (mean
of the per-id scores of the resampled ids that fall in its subset; a resample without any is
skipped), and the interval is the 2.5th and 97.5th percentiles of those values.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping

import numpy as np

from ..core.errors import ManifestError
from ..core.io import utt_key

PairTask = Literal["lexical", "syntactic"]
#: A confidence interval (low, high) of an accuracy.
Interval = tuple[float, float]

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "lexical": ("id", "filename", "voice", "frequency", "correct"),
    "syntactic": ("id", "filename", "voice", "type", "subtype", "correct"),
}

#: Bootstrap of the accuracies over pair ids: resamples, seed, interval level.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95

#: sLM21 frequency bands (counts in LibriSpeech), lower bounds inclusive.
FREQUENCY_BANDS: tuple[tuple[str, float, float], ...] = (
    ("oov", 0, 1), ("1-5", 1, 5), ("6-20", 5, 20), ("21-100", 20, 100), (">100", 100, float("inf")),
)


def pair_score(good: float, bad: float) -> float:
    """1 if the grammatical / real item scores higher, 0.5 on a tie, 0 otherwise."""
    return 1.0 if good > bad else 0.5 if good == bad else 0.0


@dataclass(frozen=True)
class GoldRow:
    filename: str
    key: tuple[str, ...]  # the pair key: (voice, id) or (type, subtype, id, voice)
    group: tuple[str, ...]  # what is averaged over voices: (id,) or (type, subtype, id)
    correct: bool
    frequency: float | None = None  # lexical only


def read_gold(path: str | os.PathLike, *, task: PairTask) -> list[GoldRow]:
    """Rows of an sLM21 ``gold.csv`` (any column order; extra columns ignored)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: gold file not found")
    try:
        return _read_gold(path, task=task)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ManifestError(f"{path}: not a readable CSV file ({type(e).__name__}: {e}); give the gold.csv") from None


def _read_gold(path: Path, *, task: PairTask) -> list[GoldRow]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS[task] if c not in columns]
        if missing:
            raise ManifestError(
                f"{path}: not a {task} gold.csv: columns {missing} missing (has {columns}); "
                f"expected at least {', '.join(REQUIRED_COLUMNS[task])}"
            )
        rows = []
        for rec in reader:
            lineno = reader.line_num
            if None in rec.values():  # csv.DictReader fills the columns of a short row with None
                got = sum(v is not None for k, v in rec.items() if k is not None)
                raise ManifestError(
                    f"{path}:{lineno}: {got} fields but the header has {len(columns)}; "
                    "every row needs one value per column (quote values that hold commas)"
                )
            correct = rec["correct"].strip()
            if correct not in {"0", "1"}:
                raise ManifestError(f"{path}:{lineno}: correct must be 0 or 1, got {correct!r}")
            if task == "lexical":
                key: tuple[str, ...] = (rec["voice"], rec["id"])
                group: tuple[str, ...] = (rec["id"],)
                frequency = _frequency(rec["frequency"], path=path, lineno=lineno, required=correct == "1")
            else:
                key = (rec["type"], rec["subtype"], rec["id"], rec["voice"])
                group = (rec["type"], rec["subtype"], rec["id"])
                frequency = None
            rows.append(GoldRow(utt_key(rec["filename"]), key, group, correct == "1", frequency))
    if not rows:
        raise ManifestError(f"{path}: no rows")
    return rows


def _frequency(text: str, *, path: Path, lineno: int, required: bool) -> float | None:
    text = (text or "").strip()
    if not text:
        # sLM21 leaves the frequency of non-words empty; only the word's is used.
        if required:
            raise ManifestError(f"{path}:{lineno}: the word of a pair needs a frequency (0 = out of vocabulary)")
        return None
    try:
        return float(text)
    except ValueError:
        raise ManifestError(f"{path}:{lineno}: frequency must be a number, got {text!r}") from None


def _pairs(rows: list[GoldRow], *, source: str) -> list[tuple[GoldRow, GoldRow]]:
    by_key: dict[tuple[str, ...], list[GoldRow]] = defaultdict(list)
    for row in rows:
        by_key[row.key].append(row)
    pairs = []
    for key, members in by_key.items():
        good = [r for r in members if r.correct]
        bad = [r for r in members if not r.correct]
        if len(good) != 1 or len(bad) != 1:
            raise ManifestError(
                f"{source}: pair {key} has {len(good)} correct and {len(bad)} incorrect utterances; "
                "each key must have exactly one of each"
            )
        pairs.append((good[0], bad[0]))
    if not pairs:  # read_gold refuses an empty file; this is an empty list of rows
        raise ManifestError(f"{source}: no pairs to score")
    return pairs


def _check_scores(rows: list[GoldRow], scores: Mapping[str, float], *, source: str) -> None:
    missing = sorted({r.filename for r in rows if r.filename not in scores})
    if missing:
        raise ManifestError(
            f"{source}: {len(missing)} of its {len(rows)} files have no score "
            f"(e.g. {', '.join(missing[:5])}); score the units of every file it lists"
        )


def _mean(xs) -> float | None:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None


def _group_scores(pairs: list[tuple[GoldRow, GoldRow]], scores: Mapping[str, float]) -> dict[tuple[str, ...], float]:
    per_group: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for good, bad in pairs:
        per_group[good.group].append(pair_score(scores[good.filename], scores[bad.filename]))
    return {g: sum(v) / len(v) for g, v in per_group.items()}


def bootstrap_intervals(
    group_scores: np.ndarray,
    subsets: Mapping[str, np.ndarray],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = CI_LEVEL,
) -> dict[str, Interval | None]:
    """Percentile bootstrap interval of the mean of ``group_scores`` over each boolean ``subsets`` mask.

    One resample draws ``len(group_scores)`` groups (ids) with replacement; every subset's mean is
    recomputed on it (the resampled ids that fall in the subset, counted as often as drawn). ``None``
    for an empty subset or ``resamples`` = 0.
    """
    scores = np.asarray(group_scores, dtype=np.float64)
    n = len(scores)
    names = list(subsets)
    masks = np.stack([np.asarray(subsets[k], dtype=np.float64) for k in names], axis=1) if names else np.zeros((n, 0))
    if resamples <= 0 or n == 0 or not names:
        return {k: None for k in names}
    if not 0 < level < 1:
        raise ValueError(f"level {level}: must be in (0, 1)")
    rng = np.random.default_rng(seed)
    weighted = masks * scores[:, None]
    values = np.empty((resamples, len(names)))
    chunk = max(1, min(resamples, 2_000_000 // max(n, 1)))  # bounds the (chunk x n) count matrix
    for start in range(0, resamples, chunk):
        m = min(chunk, resamples - start)
        drawn = rng.integers(0, n, size=(m, n))
        counts = np.bincount((drawn + n * np.arange(m)[:, None]).ravel(), minlength=m * n).reshape(m, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            values[start : start + m] = (counts @ weighted) / (counts @ masks)
    tail = 100 * (1 - level) / 2
    out: dict[str, Interval | None] = {}
    for j, k in enumerate(names):
        v = values[:, j][np.isfinite(values[:, j])]
        out[k] = None if not len(v) else (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail)))
    return out


@dataclass(frozen=True)
class LexicalResult:
    """sWUGGY accuracy: ``all`` over ids, ``in_vocab`` over ids with frequency >= 1, per frequency
    band, with their bootstrap intervals (``*_ci``)."""

    all: float
    in_vocab: float | None
    n_ids: int
    n_in_vocab_ids: int
    n_pairs: int
    by_frequency: dict[str, dict[str, float]] = field(default_factory=dict)
    all_ci: Interval | None = None
    in_vocab_ci: Interval | None = None
    by_frequency_ci: dict[str, Interval | None] = field(default_factory=dict)
    #: The score of each id (mean over its voices): what :func:`paired_difference` compares.
    per_id: dict[tuple[str, ...], float] = field(default_factory=dict, repr=False)
    ci_level: float = CI_LEVEL
    ci_resamples: int = BOOTSTRAP_RESAMPLES
    ci_seed: int = BOOTSTRAP_SEED


@dataclass(frozen=True)
class SyntacticResult:
    """sBLIMP accuracy over (type, subtype, id), and per type, with bootstrap intervals."""

    all: float
    n_ids: int
    n_pairs: int
    by_type: dict[str, float] = field(default_factory=dict)
    all_ci: Interval | None = None
    by_type_ci: dict[str, Interval | None] = field(default_factory=dict)
    #: The score of each (type, subtype, id) (mean over its voices).
    per_id: dict[tuple[str, ...], float] = field(default_factory=dict, repr=False)
    ci_level: float = CI_LEVEL
    ci_resamples: int = BOOTSTRAP_RESAMPLES
    ci_seed: int = BOOTSTRAP_SEED


def lexical_accuracy(
    gold: str | os.PathLike | list[GoldRow], scores: Mapping[str, float], *, source: str = "gold.csv",
    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = CI_LEVEL,
) -> LexicalResult:
    """sWUGGY accuracy of ``scores`` (filename -> log-probability) on a lexical ``gold.csv``, with
    bootstrap intervals over ids (``resamples`` = 0: none)."""
    if not isinstance(gold, list):
        source, gold = str(gold), read_gold(gold, task="lexical")
    _check_scores(gold, scores, source=source)
    pairs = _pairs(gold, source=source)
    per_id = _group_scores(pairs, scores)
    frequency: dict[tuple[str, ...], float] = {}
    for good, _ in pairs:
        if good.frequency is None:  # read_gold requires it; a list of rows may lack it
            raise ManifestError(f"{source}: the word {good.filename} has no frequency")
        if frequency.setdefault(good.group, good.frequency) != good.frequency:
            raise ManifestError(f"{source}: id {good.group[0]} has different word frequencies across voices")
    in_vocab = [s for g, s in per_id.items() if frequency[g] >= 1]
    freq = np.array([frequency[g] for g in per_id], dtype=np.float64)
    subsets = {"all": np.ones(len(freq), dtype=bool), "in_vocab": freq >= 1}
    bands = {}
    for name, lo, hi in FREQUENCY_BANDS:
        band = [s for g, s in per_id.items() if lo <= frequency[g] < hi]
        if band:
            bands[name] = {"n": len(band), "score": sum(band) / len(band)}
            subsets[name] = (lo <= freq) & (freq < hi)
    ci = bootstrap_intervals(np.array(list(per_id.values())), subsets, resamples=resamples, seed=seed, level=level)
    return LexicalResult(
        all=sum(per_id.values()) / len(per_id), in_vocab=_mean(in_vocab), n_ids=len(per_id),
        n_in_vocab_ids=len(in_vocab), n_pairs=len(pairs), by_frequency=bands,
        all_ci=ci["all"], in_vocab_ci=ci["in_vocab"], by_frequency_ci={b: ci[b] for b in bands}, per_id=per_id,
        ci_level=level, ci_resamples=resamples, ci_seed=seed,
    )


def syntactic_accuracy(
    gold: str | os.PathLike | list[GoldRow], scores: Mapping[str, float], *, source: str = "gold.csv",
    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = CI_LEVEL,
) -> SyntacticResult:
    """sBLIMP accuracy of ``scores`` (filename -> log-probability) on a syntactic ``gold.csv``, with
    bootstrap intervals over (type, subtype, id) (``resamples`` = 0: none)."""
    if not isinstance(gold, list):
        source, gold = str(gold), read_gold(gold, task="syntactic")
    _check_scores(gold, scores, source=source)
    pairs = _pairs(gold, source=source)
    per_group = _group_scores(pairs, scores)
    by_type: dict[str, list[float]] = defaultdict(list)
    for (type_, _, _), s in per_group.items():
        by_type[type_].append(s)
    types = np.array([g[0] for g in per_group], dtype=object)
    subsets = {"all": np.ones(len(types), dtype=bool)} | {f"type:{t}": types == t for t in sorted(by_type)}
    ci = bootstrap_intervals(np.array(list(per_group.values())), subsets, resamples=resamples, seed=seed, level=level)
    return SyntacticResult(
        all=sum(per_group.values()) / len(per_group), n_ids=len(per_group), n_pairs=len(pairs),
        by_type={t: sum(v) / len(v) for t, v in sorted(by_type.items())},
        all_ci=ci["all"], by_type_ci={t: ci[f"type:{t}"] for t in sorted(by_type)}, per_id=per_group,
        ci_level=level, ci_resamples=resamples, ci_seed=seed,
    )


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of ``b`` minus accuracy of ``a`` on the same pair ids, with its bootstrap interval."""

    difference: float
    ci: Interval | None
    n_ids: int


def paired_difference(
    a: LexicalResult | SyntacticResult, b: LexicalResult | SyntacticResult, *,
    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = CI_LEVEL,
) -> PairedDifference:
    """``b.all - a.all`` with a paired percentile bootstrap over ids: each resample draws ids with
    replacement and recomputes both accuracies on them, so what the two systems share (hard ids,
    easy ids) cancels and the interval is that of the difference, not of either accuracy."""
    if set(a.per_id) != set(b.per_id):
        only = sorted(set(a.per_id) ^ set(b.per_id))
        raise ValueError(f"paired difference of results on other pair ids (e.g. {only[:3]})")
    ids = sorted(a.per_id)
    diff = np.array([b.per_id[g] - a.per_id[g] for g in ids], dtype=np.float64)
    ci = bootstrap_intervals(diff, {"all": np.ones(len(ids), dtype=bool)}, resamples=resamples, seed=seed,
                             level=level)["all"]
    return PairedDifference(difference=float(diff.mean()), ci=ci, n_ids=len(ids))
