"""Checks that a synthesized utterance's phone alignment agrees with its audio (tests/test_synth.py,
tests/test_synth_espeak.py): the label shift that best explains the energy or the frication."""

from __future__ import annotations

from typing import Callable

import numpy as np

from spokenlm_plugin.core.phones import SIL

VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}


def best_shift(samples: np.ndarray, phones: list, *, score: Callable[[np.ndarray, np.ndarray, np.ndarray], float]) -> float:
    """The label shift (s) in [-100, 100] ms that maximises ``score(frame features, labels)``."""
    hop = 80  # 5 ms analysis frames
    n = len(samples) // hop
    frames = samples[: n * hop].astype(np.float64).reshape(n, hop)
    log_rms = np.log(np.sqrt((frames**2).mean(axis=1)) + 1.0)
    zcr = (np.diff(np.sign(frames), axis=1) != 0).mean(axis=1)
    starts = np.array([p[0] for p in phones])
    names = np.array([p[2] for p in phones])
    shifts = np.arange(-0.1, 0.1001, 0.005)
    scores = []
    for shift in shifts:
        centres = (np.arange(n) * hop + hop / 2) / 16000 - shift
        labels = names[np.clip(np.searchsorted(starts, centres, side="right") - 1, 0, len(names) - 1)]
        scores.append(score(log_rms, zcr, labels))
    return float(shifts[int(np.argmax(scores))])


def energy_contrast(log_rms: np.ndarray, zcr: np.ndarray, labels: np.ndarray) -> float:
    """Vowels are louder than silence."""
    vowel = np.isin(labels, list(VOWELS))
    return log_rms[vowel].mean() - log_rms[labels == SIL].mean()


def frication_contrast(log_rms: np.ndarray, zcr: np.ndarray, labels: np.ndarray) -> float:
    """Fricatives cross zero more often than vowels."""
    fricative = np.isin(labels, ["S", "SH", "Z", "F"])
    return zcr[fricative].mean() - zcr[np.isin(labels, list(VOWELS))].mean()
