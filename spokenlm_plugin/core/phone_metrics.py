"""Phone recognition metrics of a frame classifier: frame accuracy and greedy phone error rate.

PER decoding is greedy and needs no lexicon or LM: take the most likely class of every frame,
collapse runs of the same class into one phone, drop SIL. The reference is the frame labels
processed the same way (runs collapsed, SIL dropped), i.e. the ``.phnseq`` of the utterance, so
a phone repeated across a word boundary counts once on both sides. PER = edit distance / number
of reference phones, summed over utterances before dividing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import editdistance
import torch


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

    def add(self, predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, sil: int | None) -> None:
        """Add a batch: ``predicted`` and ``target`` class indices ``(B, T)``, ``mask`` of labelled frames."""
        self.frames += int(mask.sum())
        self.correct += int(((predicted == target) & mask).sum())
        for p, t, m in zip(predicted.cpu(), target.cpu(), mask.cpu()):
            p, t = p[m], t[m]
            interior = torch.zeros_like(t, dtype=torch.bool)
            interior[1:-1] = (t[1:-1] == t[:-2]) & (t[1:-1] == t[2:])
            self.interior_frames += int(interior.sum())
            self.interior_correct += int(((p == t) & interior).sum())
            e, n = phone_errors(p, t, sil=sil)
            self.edits += e
            self.ref_phones += n
            self.utterances += 1
