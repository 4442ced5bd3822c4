"""CRA and PELM's companions: definitions, and the bootstrap interval of an accuracy.

CRA, context retrieval accuracy (the paper's definition, REFERENCE.md): held-out paired items cut
into a context (prompt) and a continuation; in a candidate set of C items, continuation j is
scored after every context i, ``s[i, j] = log p(continuation_j | context_i)``, and counts as
retrieved when its own context scores highest (``argmax_i s[i, j] == j``; a tie counts 1 / (number
tied)). Chance = the mean over scored items of 1 / (size of its set): 1 / C when every set holds C.
The interval is the 2.5 / 97.5 percentiles of the accuracy over bootstrap resamples of the continuations.

Candidate sets (:func:`candidate_sets`): ``consecutive`` cuts the items, in order, into sets of C,
whoever speaks them; ``same-speaker`` draws every set from one speaker's items, so that a u2u
continuation cannot be retrieved by its voice or recording (a set mixing speakers lets an LM match
the speaker instead of the language).

Prompt-copy rate: the share of a continuation's word bigrams that also occur in its prompt's
transcript (PELM rewards copying the prompt, so it is printed beside it). distinct-n: distinct word
n-grams over all n-grams of all continuations of a condition.
"""

from __future__ import annotations

import random
from typing import Literal, Sequence

import numpy as np

CandidatePool = Literal["consecutive", "same-speaker"]
CANDIDATE_POOLS: tuple[CandidatePool, ...] = ("same-speaker", "consecutive")


def retrieved(scores: np.ndarray) -> np.ndarray:
    """Per continuation j (columns), 1 if its own context i = j scores highest, 1/k on a k-way tie."""
    scores = np.asarray(scores, dtype=np.float64)
    best = scores.max(axis=0)
    own = np.diag(scores)
    ties = (scores == best[None, :]).sum(axis=0)
    return np.where(own == best, 1.0 / ties, 0.0)


def candidate_sets(speakers: Sequence[str], *, size: int, pool: CandidatePool, seed: int = 0) -> list[list[int]]:
    """CRA's candidate sets: lists of item indices (``speakers[i]``: item ``i``'s speaker), each of 2 to ``size``.

    ``consecutive``: the items in order, cut into sets of ``min(size, n)``; the last ``n mod`` that are in no set.
    ``same-speaker``: each speaker's items, shuffled by ``random.Random(f"{seed}:{speaker}")`` (a speaker's
    sets do not depend on the other speakers), cut into sets of ``size``; a speaker's last set holds the
    rest, and a lone item (a speaker's only one, or one left over) is in no set. Sets are listed by
    speaker name, their items in item order.
    """
    if size < 2:
        raise ValueError(f"candidate sets need at least 2 items, not {size}")
    if pool == "consecutive":
        c = min(size, len(speakers))
        return [list(range(b, b + c)) for b in range(0, len(speakers) - len(speakers) % c, c)] if c >= 2 else []
    if pool != "same-speaker":
        raise ValueError(f"unknown candidate pool {pool!r}; use one of {', '.join(CANDIDATE_POOLS)}")
    by_speaker: dict[str, list[int]] = {}
    for i, s in enumerate(speakers):
        by_speaker.setdefault(s, []).append(i)
    sets = []
    for spk in sorted(by_speaker):
        items = by_speaker[spk]
        # shuffled: a corpus may list a speaker's consecutive sentences (one story) together
        random.Random(f"{seed}:{spk}").shuffle(items)
        sets += [sorted(items[b:b + size]) for b in range(0, len(items), size) if len(items) - b >= 2]
    return sets


def bootstrap_ci(hits: np.ndarray, *, resamples: int = 1000, seed: int = 0) -> tuple[float, float] | None:
    """95 % percentile interval of ``mean(hits)`` over resamples of the items."""
    hits = np.asarray(hits, dtype=np.float64)
    if resamples <= 0 or hits.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = hits[rng.integers(0, hits.size, size=(resamples, hits.size))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def copy_rate(prompts: Sequence[Sequence[str]], continuations: Sequence[Sequence[str]], *, n: int = 2) -> float | None:
    """Share of continuation n-grams found in their own prompt (over all continuations)."""
    hit = total = 0
    for p, c in zip(prompts, continuations):
        seen = set(ngrams(p, n))
        grams = ngrams(c, n)
        hit += sum(g in seen for g in grams)
        total += len(grams)
    return hit / total if total else None


def distinct_n(continuations: Sequence[Sequence[str]], *, n: int) -> float | None:
    grams = [g for c in continuations for g in ngrams(c, n)]
    return len(set(grams)) / len(grams) if grams else None


def paired_difference_ci(a: np.ndarray, b: np.ndarray, *, resamples: int = 1000,
                         seed: int = 0) -> tuple[float, float] | None:
    """95 % percentile interval of ``mean(b - a)`` over resamples of the items both were scored on
    (``a``, ``b``: per-item scores in the same item order)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same items: {a.shape} vs {b.shape}")
    return bootstrap_ci(b - a, resamples=resamples, seed=seed)
