"""Paired bootstrap of the difference between two LMs' sWUGGY / sBLIMP accuracies."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest

from spokenlm_plugin.ulm.discrimination import lexical_accuracy, paired_difference, syntactic_accuracy


def _gold(path: Path, n_ids: int, voices: int = 2) -> list[tuple[str, str]]:
    """A lexical gold.csv; returns (word file, non-word file) per (id, voice)."""
    pairs = []
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "filename", "voice", "frequency", "correct"])
        for i in range(n_ids):
            for v in range(voices):
                w.writerow([i, f"w{i}_{v}", f"v{v}", 3, 1])
                w.writerow([i, f"n{i}_{v}", f"v{v}", "", 0])
                pairs.append((f"w{i}_{v}", f"n{i}_{v}"))
    return pairs


def _scores(pairs: list[tuple[str, str]], p_right: float, rng: random.Random) -> dict[str, float]:
    out = {}
    for word, nonword in pairs:
        right = rng.random() < p_right
        out[word], out[nonword] = (0.0, -1.0) if right else (-1.0, 0.0)
    return out


def _slow_paired(a: dict, b: dict, resamples: int, seed: int) -> tuple[float, float]:
    """The paired percentile bootstrap written out: one draw of ids per resample, both means on it."""
    ids = sorted(a)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        drawn = rng.integers(0, len(ids), size=len(ids))
        values.append(np.mean([b[ids[j]] - a[ids[j]] for j in drawn]))
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def test_paired_interval_matches_a_slow_reference(tmp_path: Path) -> None:
    pairs = _gold(tmp_path / "gold.csv", 60)
    rng = random.Random(0)
    a = lexical_accuracy(tmp_path / "gold.csv", _scores(pairs, 0.6, rng))
    b = lexical_accuracy(tmp_path / "gold.csv", _scores(pairs, 0.8, rng))
    d = paired_difference(a, b, resamples=300, seed=3)
    assert d.difference == pytest.approx(b.all - a.all)
    assert d.ci == pytest.approx(_slow_paired(a.per_id, b.per_id, 300, 3))
    assert d.n_ids == 60


def test_a_shared_hard_core_cancels_in_the_paired_interval(tmp_path: Path) -> None:
    """Two LMs that agree on most ids and differ on a few: the accuracies' own intervals overlap,
    the paired interval of the difference excludes 0."""
    pairs = _gold(tmp_path / "gold.csv", 200, voices=1)
    rng = random.Random(1)
    shared = _scores(pairs, 0.6, rng)
    better = dict(shared)
    for word, nonword in pairs[:40]:  # b gets 40 ids right that a may have wrong
        better[word], better[nonword] = 0.0, -1.0
    a = lexical_accuracy(tmp_path / "gold.csv", shared)
    b = lexical_accuracy(tmp_path / "gold.csv", better)
    assert a.all_ci is not None and b.all_ci is not None and a.all_ci[1] > b.all_ci[0]  # overlapping
    d = paired_difference(a, b)
    assert d.difference > 0 and d.ci is not None and d.ci[0] > 0
    same = paired_difference(a, a)
    assert (same.difference, same.ci) == (0.0, (0.0, 0.0))


def test_results_on_other_pair_sets_are_refused(tmp_path: Path) -> None:
    pairs = _gold(tmp_path / "a.csv", 10)
    other = _gold(tmp_path / "b.csv", 12)
    rng = random.Random(2)
    a = lexical_accuracy(tmp_path / "a.csv", _scores(pairs, 0.5, rng))
    b = lexical_accuracy(tmp_path / "b.csv", _scores(other, 0.5, rng))
    with pytest.raises(ValueError, match="other pair ids"):
        paired_difference(a, b)


def test_syntactic_results_carry_their_per_id_scores(tmp_path: Path) -> None:
    with (tmp_path / "gold.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "filename", "voice", "type", "subtype", "correct"])
        for i in range(3):
            w.writerow([i, f"g{i}", "v", "agreement", "s", 1])
            w.writerow([i, f"b{i}", "v", "agreement", "s", 0])
    r = syntactic_accuracy(tmp_path / "gold.csv", {"g0": 0, "b0": -1, "g1": -1, "b1": 0, "g2": 0, "b2": 0})
    assert r.per_id == {("agreement", "s", "0"): 1.0, ("agreement", "s", "1"): 0.0, ("agreement", "s", "2"): 0.5}
