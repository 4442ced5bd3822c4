"""The joint vocabulary: units as characters, SentencePiece models, modality markers.

Units go to SentencePiece as characters, ESPnet VoxtLM's convention: unit ``u`` is ``chr(0x4E00 + u)``
(CJK ideographs, disjoint from the lowercase English text), a deduplicated utterance one string
without spaces. A unit SentencePiece model is trained with ``add_dummy_prefix`` off, so its pieces
are runs of those characters and nothing else; "no SentencePiece" (``vocab_size`` 0) means one
token per unit, i.e. the characters themselves. Text has its own SentencePiece model (pieces of
lowercase words, ``▁``-prefixed). A joint token is therefore a unit token iff its first character
is a unit character, a marker iff it is ``[SPEECH]`` / ``[TEXT]``, and text otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Literal, Sequence

from ..core.errors import DictionaryError, SpokenLMError

SPEECH = "[SPEECH]"
TEXT = "[TEXT]"
MARKERS = (SPEECH, TEXT)
Modality = Literal["speech", "text"]
MARKER_OF: dict[str, str] = {"speech": SPEECH, "text": TEXT}
#: First unit character (CJK Unified Ideographs block: 20,992 code points, so K <= 20992).
UNIT_BASE = 0x4E00
MAX_UNITS = 0x9FFF - UNIT_BASE + 1


class SentencePieceError(SpokenLMError):
    """A string cannot be encoded by a SentencePiece model (a unit or character it never saw)."""


def unit_char(u: int) -> str:
    if not 0 <= u < MAX_UNITS:
        raise DictionaryError(f"unit {u} cannot be a character (0 <= unit < {MAX_UNITS})")
    return chr(UNIT_BASE + u)


def units_to_string(units: Sequence[int]) -> str:
    return "".join(unit_char(u) for u in units)


def string_to_units(text: str) -> list[int]:
    return [ord(c) - UNIT_BASE for c in text]


def is_unit_token(token: str) -> bool:
    return bool(token) and UNIT_BASE <= ord(token[0]) < UNIT_BASE + MAX_UNITS


def modality_of(token: str) -> Modality | None:
    """``speech`` / ``text`` for a content token, ``None`` for a marker."""
    if token in MARKERS:
        return None
    return "speech" if is_unit_token(token) else "text"


def train_sentencepiece(
    lines: Iterable[str], prefix: str | os.PathLike, *, vocab_size: int, kind: Literal["units", "text"],
) -> Path:
    """Train a SentencePiece model (unigram) on ``lines``; write ``prefix.model`` / ``.vocab``.

    ``hard_vocab_limit`` is off: on the demo's scale a requested size may exceed what the data
    supports, and SentencePiece then stops at the largest it can make (the size used is recorded).
    Character coverage is 1: every unit / letter seen in training stays encodable.
    """
    import sentencepiece as spm

    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    data = [line for line in lines if line]
    # SentencePiece needs at least as many distinct characters + 3 specials as the vocabulary.
    chars = len({c for line in data for c in line})
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(data), model_prefix=str(prefix), vocab_size=max(vocab_size, chars + 4),
        model_type="unigram", character_coverage=1.0, hard_vocab_limit=False,
        add_dummy_prefix=kind == "text", split_by_whitespace=kind == "text",
        max_sentencepiece_length=16, input_sentence_size=0, shuffle_input_sentence=False,
        num_threads=1, minloglevel=2, bos_id=-1, eos_id=-1, unk_id=0,
        # units: a deduplicated utterance can be thousands of characters
        max_sentence_length=1 << 20,
    )
    return prefix.with_suffix(".model")


class Tokenizer:
    """A SentencePiece model (or, for units without one, one token per unit character)."""

    def __init__(self, model: str | os.PathLike | None, *, kind: Literal["units", "text"]) -> None:
        self.kind = kind
        self.path = Path(model) if model is not None else None
        self._sp = None
        if model is not None:
            import sentencepiece as spm

            if not Path(model).is_file():
                raise SentencePieceError(f"{model}: SentencePiece model not found; make it with 'spokenlm sutlm-data'")
            self._sp = spm.SentencePieceProcessor(model_file=str(model))

    def pieces(self) -> list[str]:
        """The model's pieces, control and unknown symbols excluded (raw units: none; the caller lists them)."""
        if self._sp is None:
            return []
        sp = self._sp
        return [sp.id_to_piece(i) for i in range(sp.get_piece_size())
                if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i))]

    def encode(self, text: str, *, where: str = "") -> list[str]:
        """Pieces of ``text``; a character the model never saw is a :class:`SentencePieceError` naming ``where``."""
        if self._sp is None:
            return list(text)
        ids = self._sp.encode(text, out_type=int)
        if any(self._sp.is_unknown(i) for i in ids):
            bad = sorted({c for c in text if self._sp.piece_to_id(c) == self._sp.unk_id() and c != " "})
            what = f"units {[ord(c) - UNIT_BASE for c in bad]}" if self.kind == "units" else f"characters {bad}"
            raise SentencePieceError(
                f"{where or self.path}: {what} are outside the SentencePiece model {self.path}; "
                "encode units of the k-means (and text) the model was trained on, or retrain it with 'spokenlm sutlm-data'"
            )
        return [self._sp.id_to_piece(i) for i in ids]

    def encode_units(self, units: Sequence[int], *, where: str = "") -> list[str]:
        bad = [u for u in units if not 0 <= u < MAX_UNITS]
        if bad:  # named here, with the line, before unit_char's message without one
            raise DictionaryError(f"{where or self.path}: unit {bad[0]} is outside the units a joint LM can hold "
                                  f"(0..{MAX_UNITS - 1}); use the units of the k-means the LM was trained on")
        return self.encode(units_to_string(units), where=where) if units else []

    def encode_words(self, words: Sequence[str], *, where: str = "") -> list[str]:
        return self.encode(" ".join(words), where=where) if words else []


def decode_units(tokens: Iterable[str]) -> list[int]:
    """Unit ids of unit tokens (pieces are runs of unit characters)."""
    return [u for t in tokens if is_unit_token(t) for u in string_to_units(t)]


def decode_text(tokens: Iterable[str]) -> list[str]:
    """Words of text pieces (SentencePiece's ``▁`` marks a word start)."""
    return "".join(t for t in tokens if modality_of(t) == "text").replace("\u2581", " ").split()
