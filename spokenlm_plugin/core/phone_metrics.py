"""Phone recognition metrics of a frame classifier: frame accuracy and phone error rate (PER).

PER decoding needs no lexicon or LM: pick a class for every frame, collapse runs of the same class
into one phone, drop SIL. Frames are picked greedily (the most likely class of every frame), or by
:func:`viterbi_frames`, the best path under a two-parameter phone-duration model (stay or switch),
which keeps a one-frame flicker of the classifier inside a phone from counting as inserted phones;
:func:`switch_probability` measures its parameter on training labels. The reference is the frame labels
processed the same way (runs collapsed, SIL dropped), i.e. the ``.phnseq`` of the utterance, so
a phone repeated across a word boundary counts once on both sides. PER = edit distance / number
of reference phones, summed over utterances before dividing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Sequence

import editdistance
import numpy as np
import torch

from .errors import ConfigError, LabelMismatchError
from .io import read_lines

#: Range :func:`switch_probability` clips to: at least one switch in 1000 frames (20 s), at most one
#: in 2 (phones of one 20 ms frame on average would make any smoothing pointless).
SWITCH_PROB_RANGE: tuple[float, float] = (1e-3, 0.5)


def collapse(frames: Sequence[int] | torch.Tensor, *, drop: int | None = None) -> list[int]:
    """Class sequence with runs of the same class merged and ``drop`` (SIL) removed."""
    values = frames.tolist() if isinstance(frames, torch.Tensor) else list(frames)
    out: list[int] = []
    prev = None
    for v in values:
        if v != prev and v != drop:
            out.append(v)
        prev = v
    return out


def viterbi_frames(log_probs: np.ndarray | torch.Tensor, *, switch_prob: float) -> list[int]:
    """The most likely class path of ``log_probs`` (``T x K`` per-frame log posteriors, the emission
    scores) under a first-order model that keeps the class of the previous frame with probability
    ``1 - switch_prob`` and moves to each other class with ``switch_prob / (K - 1)``.

    ``switch_prob`` must lie in ``(0, 1)``; ``(K - 1) / K`` (all transitions equal) gives the frame
    argmax, smaller values merge short excursions into the surrounding class. Ties go to staying, then
    to the lowest class index. O(T K) time: the best move into a class comes from the best previous
    class, or the second best when that is the class itself.
    """
    if not 0 < switch_prob < 1:
        raise ConfigError(f"switch probability {switch_prob}: must lie strictly between 0 and 1")
    scores = log_probs.detach().cpu().double().numpy() if isinstance(log_probs, torch.Tensor) else \
        np.asarray(log_probs, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"log_probs must be T x K, got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("log_probs holds NaN")
    n_frames, k = scores.shape
    if n_frames == 0:
        return []
    if k == 1:
        return [0] * n_frames
    stay, move = math.log1p(-switch_prob), math.log(switch_prob / (k - 1))
    back = np.empty((n_frames, k), dtype=np.int32)
    classes = np.arange(k)
    delta = scores[0].copy()
    for t in range(1, n_frames):
        first = int(np.argmax(delta))
        from_other = np.full(k, delta[first] + move)
        back_other = np.full(k, first, dtype=np.int32)
        rest = delta.copy()
        rest[first] = -np.inf
        second = int(np.argmax(rest))  # the best move into ``first`` comes from elsewhere
        from_other[first], back_other[first] = delta[second] + move, second
        from_self = delta + stay
        keep = from_self >= from_other
        back[t] = np.where(keep, classes, back_other)
        delta = np.where(keep, from_self, from_other) + scores[t]
    path = [int(np.argmax(delta))]
    for t in range(n_frames - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


def _label_rows(labels: str | os.PathLike | Iterable[Sequence[str]]) -> tuple[list[Sequence[str]], str]:
    """Rows of frame labels and a name for messages, from a ``.phn`` file or the rows themselves."""
    if isinstance(labels, (str, os.PathLike)):
        return [line.split() for line in read_lines(labels)], str(labels)
    return list(labels), "frame labels"


def switch_probability(labels: str | os.PathLike | Iterable[Sequence[str]], *,
                       clip: tuple[float, float] = SWITCH_PROB_RANGE) -> float:
    """``1 / mean run length`` of gold frame labels: the share of frames whose label differs from the
    previous frame's, the maximum-likelihood ``switch_prob`` of :func:`viterbi_frames`.

    ``labels``: a ``.phn`` file (one utterance a line, one phone a 20 ms frame) or its rows. Measure
    it on the training labels, never on the labels being scored. Runs end at utterance ends; the
    result is clipped to ``clip``.
    """
    rows, name = _label_rows(labels)
    frames = sum(len(r) for r in rows)
    if frames == 0:
        raise LabelMismatchError(f"{name}: no frame labels; give the training .phn (one line of phones per utterance)")
    runs = sum(sum(1 for i, p in enumerate(r) if i == 0 or r[i - 1] != p) for r in rows)
    lo, hi = clip
    return float(min(max(runs / frames, lo), hi))


def phone_errors(predicted: Sequence[int], reference: Sequence[int], *, sil: int | None) -> tuple[int, int]:
    """(edit distance, reference length) between greedy decodings of two frame sequences."""
    hyp, ref = collapse(predicted, drop=sil), collapse(reference, drop=sil)
    return editdistance.eval(hyp, ref), len(ref)


@dataclass
class PhoneScores:
    """Totals over a set of utterances; the rates are derived."""

    frames: int = 0
    correct: int = 0
    edits: int = 0
    ref_phones: int = 0
    utterances: int = 0
    #: Frames whose two neighbours carry the same label (away from phone boundaries), and how many
    #: of them are right: separates placing boundaries from recognising phones.
    interior_frames: int = 0
    interior_correct: int = 0
    #: Edits of the Viterbi-smoothed decoding (:func:`viterbi_frames`), when it was computed.
    smoothed_edits: int | None = None

    @property
    def frame_accuracy(self) -> float:
        return self.correct / self.frames if self.frames else float("nan")

    @property
    def interior_accuracy(self) -> float:
        return self.interior_correct / self.interior_frames if self.interior_frames else float("nan")

    @property
    def boundary_share(self) -> float:
        """Share of the frames next to a phone boundary."""
        return 1 - self.interior_frames / self.frames if self.frames else float("nan")

    @property
    def per(self) -> float:
        return self.edits / self.ref_phones if self.ref_phones else float("nan")

    @property
    def per_smoothed(self) -> float | None:
        """PER of the Viterbi-smoothed decoding, or None if it was not computed."""
        if self.smoothed_edits is None:
            return None
        return self.smoothed_edits / self.ref_phones if self.ref_phones else float("nan")

    def add(self, predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, sil: int | None,
            log_probs: torch.Tensor | None = None, switch_prob: float | None = None) -> None:
        """Add a batch: ``predicted`` and ``target`` class indices ``(B, T)``, ``mask`` of labelled frames;
        with ``log_probs`` ``(B, T, K)`` and ``switch_prob``, also the Viterbi-smoothed PER."""
        if (log_probs is None) != (switch_prob is None):
            raise ValueError("log_probs and switch_prob go together")
        self.frames += int(mask.sum())
        self.correct += int(((predicted == target) & mask).sum())
        smoothed = [None] * len(predicted) if log_probs is None else log_probs.detach().cpu()
        for p, t, m, lp in zip(predicted.cpu(), target.cpu(), mask.cpu(), smoothed):
            p, t = p[m], t[m]
            if lp is not None and switch_prob is not None:
                path = viterbi_frames(lp[m], switch_prob=switch_prob)
                self.smoothed_edits = (self.smoothed_edits or 0) + phone_errors(path, t, sil=sil)[0]
            interior = torch.zeros_like(t, dtype=torch.bool)
            interior[1:-1] = (t[1:-1] == t[:-2]) & (t[1:-1] == t[2:])
            self.interior_frames += int(interior.sum())
            self.interior_correct += int(((p == t) & interior).sum())
            e, n = phone_errors(p, t, sil=sil)
            self.edits += e
            self.ref_phones += n
            self.utterances += 1
