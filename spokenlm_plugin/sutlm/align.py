"""Word alignments mapped onto deduplicated unit positions: the paired data of the joint LM.

Units are 50 Hz frames (frame ``i`` covers ``[0.02 i, 0.02 (i + 1))``, the project's label
convention). Deduplication collapses runs of a repeated unit; run ``r`` covers frames
``[a_r, b_r)`` and its centre is at ``0.02 (a_r + b_r) / 2`` s. A word starting at ``s`` seconds
starts at deduplicated position ``cut(s)`` = the number of runs whose centre lies before ``s``: a
run straddling a word boundary goes to the side holding its centre. The first word starts at 0
and the last ends at the last run, so leading / trailing silence goes with the first / last word
and word spans tile the utterance (``units[cuts[k]:cuts[k + 1]]`` is word ``k``; a very short word
can get no run of its own).

Coverage check: the alignment's last word must end within :data:`TOLERANCE_S` of the units' end,
and the units must not outlast the audio the alignment describes (``num_samples``; a TextGrid's
tier end) by more: otherwise the units and the alignment are not of the same utterance.

Word alignments come from the corpus JSON (``alignments/<utt_id>.json``, ``"words"``) or from
Montreal Forced Aligner TextGrids (the ``words`` tier, silent intervals dropped, read by
:func:`spokenlm_plugin.data.alignments.read_textgrid_words`): :class:`WordAlignments`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from ..core.errors import AlignmentError, LabelMismatchError
from ..core.io import read_lines, read_manifest
from ..core.phones import SAMPLE_RATE
from ..data.alignments import Alignments, read_textgrid_words
from ..core.km import deduplicate, read_km

FRAME_S = 0.02
#: Two frames: HuBERT's ``floor((n - 400) / 320) + 1`` frames stop up to 1.5 frames before the audio ends.
TOLERANCE_S = 2 * FRAME_S


@dataclass(frozen=True)
class AlignedUtterance:
    """An utterance's transcript and deduplicated units, word ``k`` = ``units[cuts[k]:cuts[k + 1]]``."""

    utt_id: str
    words: tuple[str, ...]
    units: tuple[int, ...]
    cuts: tuple[int, ...]

    def word_units(self, first: int, last: int) -> list[int]:
        """Units of words ``first .. last - 1``."""
        return list(self.units[self.cuts[first]:self.cuts[last]])


def word_cuts(run_lengths: Sequence[int], word_starts: Sequence[float]) -> list[int]:
    """Deduplicated start position of every word, plus the end: ``len(word_starts) + 1`` cuts."""
    centres, frame = [], 0
    for n in run_lengths:
        centres.append(FRAME_S * (frame + n / 2))
        frame += n
    cuts = [0]
    for s in word_starts[1:]:
        cuts.append(max(cuts[-1], sum(1 for c in centres if c < s)))
    cuts.append(len(run_lengths))
    return cuts


def align_utterance(
    *, utt_id: str, frame_units: Sequence[int], words: Sequence[tuple[float, float, str]],
    num_samples: int | None = None, where: str = "", source: str = "its word alignment",
) -> AlignedUtterance:
    """Deduplicate ``frame_units`` (50 Hz) and cut them at the word starts of ``words`` (read from ``source``)."""
    if not words:
        raise AlignmentError(f"{where}: utterance {utt_id!r} has no word in its alignment ({source})")
    if not frame_units:
        raise AlignmentError(f"{where}: utterance {utt_id!r} has no unit")
    units_end = FRAME_S * len(frame_units)
    last_end = max(end for _, end, _ in words)
    if last_end > units_end + TOLERANCE_S:
        raise AlignmentError(
            f"{where}: the alignment of {utt_id!r} ends at {last_end:.3f} s but its units cover only "
            f"{units_end:.3f} s ({len(frame_units)} frames at 50 Hz): the alignment ({source}) does not match these "
            "units; give the .km made from the same manifest"
        )
    if num_samples is not None and units_end > num_samples / SAMPLE_RATE + TOLERANCE_S:
        raise AlignmentError(
            f"{where}: the units of {utt_id!r} cover {units_end:.3f} s but its alignment describes "
            f"{num_samples / SAMPLE_RATE:.3f} s of audio: the alignment ({source}) does not cover the units; "
            "give the .km made from the same manifest"
        )
    starts = [s for s, _, _ in words]
    if any(b < a for a, b in zip(starts, starts[1:])):
        raise AlignmentError(f"{where}: the words of {utt_id!r} are not in time order")
    units, runs = deduplicate(list(frame_units))
    return AlignedUtterance(utt_id=utt_id, words=tuple(w for _, _, w in words), units=tuple(units),
                            cuts=tuple(word_cuts(runs, starts)))


def read_word_alignment(path: Path) -> tuple[list[tuple[float, float, str]], int | None]:
    """Words ``(start, end, word)`` and ``num_samples`` of a corpus alignment JSON (``spokenlm synth-corpus``)."""
    if not path.is_file():
        raise AlignmentError(f"{path}: word alignment not found (every utterance needs alignments/<utt_id>.json)")
    try:
        data = json.loads(path.read_text())
        words = [(float(s), float(e), str(w)) for s, e, w in data["words"]]
    except (ValueError, KeyError, TypeError) as e:
        raise AlignmentError(f"{path}: not a word alignment JSON ({type(e).__name__}); expected "
                             "{'words': [[start, end, word], ...]} as written by 'spokenlm synth-corpus'") from None
    return words, data.get("num_samples")


WordFormat = Literal["json", "textgrid"]


class WordAlignments:
    """Word alignments by utterance id: a folder of corpus JSONs or of MFA TextGrids (any depth)."""

    def __init__(self, path: str | os.PathLike, fmt: WordFormat = "json") -> None:
        self.path, self.fmt = Path(path), fmt
        # TextGrids are indexed once (MFA nests them by speaker); JSONs sit at <path>/<utt_id>.json
        self._textgrids = Alignments(self.path, "textgrid") if fmt == "textgrid" else None

    def source(self, utt_id: str) -> Path | None:
        """The file holding ``utt_id``'s words, None for a TextGrid that is missing."""
        if self._textgrids is None:
            return self.path / f"{utt_id}.json"
        return self._textgrids.file_of(utt_id)

    def words(self, utt_id: str, *, where: str) -> tuple[list[tuple[float, float, str]], int | None, Path]:
        """``(start, end, word)`` of every word, the aligned audio's samples (if known) and the file read."""
        path = self.source(utt_id)
        if path is None:
            raise AlignmentError(f"{self.path / (utt_id + '.TextGrid')}: not found (searched {self.path} recursively) "
                                 f"for utterance {utt_id!r} of {where}; align every manifest row with MFA")
        if self._textgrids is None:
            return (*read_word_alignment(path), path)
        segments, end = read_textgrid_words(path)
        return [(float(s.start), float(s.end), s.phone) for s in segments], round(end * SAMPLE_RATE), path


def load_split(
    *, corpus: str | os.PathLike, units_dir: str | os.PathLike, split: str, vocab_size: int | None = None,
    alignments: WordAlignments | None = None,
) -> list[AlignedUtterance]:
    """Aligned utterances of one split: ``units_dir/split.km`` (one line per manifest row of
    ``corpus/manifests/split.tsv``), ``corpus/transcripts/split.wrd`` and the word alignments
    (default ``corpus/alignments/*.json``). With TextGrids and no ``split.wrd``, the transcript is
    the word tier's words; with both, they must agree."""
    corpus, units_dir = Path(corpus), Path(units_dir)
    alignments = alignments or WordAlignments(corpus / "alignments", "json")
    manifest = corpus / "manifests" / f"{split}.tsv"
    km = units_dir / f"{split}.km"
    wrd = corpus / "transcripts" / f"{split}.wrd"
    ids = read_manifest(manifest).utt_ids
    rows = read_km(km, vocab_size=vocab_size, allow_empty=False)
    if len(rows) != len(ids):
        raise LabelMismatchError(f"{km}: {len(rows)} lines but {manifest} has {len(ids)} utterances; "
                                 "the .km must have one line per manifest row")
    transcripts = read_lines(wrd) if alignments.fmt == "json" or wrd.is_file() else None
    out = []
    for i, (utt_id, frame_units) in enumerate(zip(ids, rows)):
        if transcripts is not None and (i >= len(transcripts) or not transcripts[i].split()):
            raise AlignmentError(f"{wrd}:{i + 1}: transcript missing for utterance {utt_id!r} "
                                 f"(manifest row {i + 1}); every manifest row needs its words on its line")
        words, num_samples, align_path = alignments.words(utt_id, where=f"{manifest}:{i + 2}")
        if transcripts is not None and [w for _, _, w in words] != transcripts[i].split():
            raise AlignmentError(f"{wrd}:{i + 1}: transcript {transcripts[i]!r} differs from the words of {align_path}")
        out.append(align_utterance(utt_id=utt_id, frame_units=frame_units, words=words, num_samples=num_samples,
                                   where=f"{km}:{i + 1}", source=str(align_path)))
    return out
