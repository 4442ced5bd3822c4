"""Real words, their pronunciations, and phonotactically legal non-words (for sWUGGY-style pairs).

The vocabulary is every single-word lemma and inflected form of WordNet 3.0 plus the words of its
example sentences (about 88,000), pronounced by flite (CMU lexicon, letter-to-sound rules for the
rest). English phonotactics is read off the pronunciations of the example sentences' 21,000 words:
an onset, coda or medial consonant cluster, a first onset + vowel and a last vowel + coda are
legal when at least :data:`MIN_COUNT` of them have it (a word-final vowel, :data:`MIN_FINAL_COUNT`).

A non-word changes one phone of a legal real word into another of the same
:data:`SUBSTITUTION_CLASSES` class whose intrinsic duration (:data:`INTRINSIC_MS`) is within
:data:`MAX_DURATION_GAP_MS` of it, keeps every cluster legal, and is not the pronunciation of any
real word. The classes cross manner with length and voicing: a lax vowel only for a lax vowel, a
long monophthong for a long monophthong, a diphthong for a diphthong; a voiceless stop for a
voiceless stop, a voiced sibilant for a voiced sibilant, ...; so word and non-word have the same
number of phones and, phone for phone, similar durations (``synth-pairs`` balances what is left).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .flite import Flite
from .text import POS_FILES, Sentence, load_sentences, wordnet_dir

Pron = tuple[str, ...]

VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})
#: Short (lax) vowels, long monophthongs and diphthongs. AE is lax in the phonological sense but
#: among the longest American English vowels (Peterson & Lehiste 1960; 181 ms in flite, below).
LAX_VOWELS = frozenset({"AH", "EH", "IH", "UH"})
LONG_VOWELS = frozenset({"AA", "AE", "AO", "ER", "IY", "UW"})
DIPHTHONGS = frozenset({"AW", "AY", "EY", "OW", "OY"})
#: Substitution classes: a non-word swaps a phone only within its class (manner x length / voicing).
SUBSTITUTION_CLASSES: tuple[frozenset[str], ...] = (
    LAX_VOWELS,
    LONG_VOWELS,
    DIPHTHONGS,
    frozenset({"P", "T", "K"}),  # voiceless stops
    frozenset({"B", "D", "G"}),  # voiced stops
    frozenset({"CH"}),
    frozenset({"JH"}),
    frozenset({"S", "SH"}),  # voiceless sibilants
    frozenset({"Z", "ZH"}),  # voiced sibilants
    frozenset({"F", "TH"}),  # voiceless non-sibilant fricatives
    frozenset({"V", "DH"}),  # voiced non-sibilant fricatives
    frozenset({"HH"}),
    frozenset({"M", "N", "NG"}),
    frozenset({"L", "R"}),
    frozenset({"W", "Y"}),
)
#: Mean duration (ms) of each phone inside words spoken from their phone strings by flite's slt,
#: rms and awb voices (400 random legal words of 4-10 phones, 1,200 utterances; 6-993 tokens per
#: phone). Within a class, a substitute must be at most :data:`MAX_DURATION_GAP_MS` away.
INTRINSIC_MS: dict[str, float] = {
    "HH": 56.9, "DH": 63.8, "UH": 65.1, "V": 65.8, "D": 65.9, "B": 66.5, "G": 71.0, "R": 72.2, "N": 74.9,
    "W": 77.8, "T": 78.3, "M": 81.8, "K": 90.4, "UW": 92.0, "IH": 92.0, "P": 94.2, "Y": 95.5, "ZH": 98.2,
    "AH": 99.7, "TH": 102.0, "F": 104.3, "L": 104.4, "NG": 107.8, "AO": 112.7, "EH": 114.2, "CH": 119.0,
    "SH": 125.3, "Z": 129.5, "AA": 129.8, "JH": 130.2, "OW": 130.7, "IY": 143.4, "S": 145.3, "ER": 158.3,
    "AE": 181.4, "EY": 182.2, "AW": 192.3, "AY": 192.5, "OY": 198.2,
}
MAX_DURATION_GAP_MS = 35.0
_CLASS_OF = {p: c for c in SUBSTITUTION_CLASSES for p in c}


def substitutes(phone: str) -> list[str]:
    """The phones that may replace ``phone`` in a non-word: same class, similar duration (sorted)."""
    return sorted(
        q for q in _CLASS_OF.get(phone, frozenset())
        if q != phone and abs(INTRINSIC_MS[q] - INTRINSIC_MS[phone]) <= MAX_DURATION_GAP_MS
    )

#: How many real words must show a cluster for it to count as legal.
MIN_COUNT = 3
#: Word-final vowels need more support: lax vowels (IH, EH, AE, UH) end English words only in a
#: few letter-to-sound accidents.
MIN_FINAL_COUNT = 10
_LEMMA = re.compile(r"[a-z]+")

#: A rough respelling, so that a non-word row of gold.csv has a readable ``word``.
_RESPELL = {
    "AA": "o", "AE": "a", "AH": "u", "AO": "aw", "AW": "ow", "AY": "igh", "B": "b", "CH": "ch", "D": "d",
    "DH": "th", "EH": "e", "ER": "er", "EY": "ay", "F": "f", "G": "g", "HH": "h", "IH": "i", "IY": "ee",
    "JH": "j", "K": "k", "L": "l", "M": "m", "N": "n", "NG": "ng", "OW": "oa", "OY": "oy", "P": "p", "R": "r",
    "S": "s", "SH": "sh", "T": "t", "TH": "th", "UH": "oo", "UW": "oo", "V": "v", "W": "w", "Y": "y", "Z": "z",
    "ZH": "zh",
}


def respell(phones: Sequence[str]) -> str:
    return "".join(_RESPELL[p] for p in phones)


@dataclass(frozen=True)
class Shape:
    """The parts of a pronunciation that phonotactics constrains."""

    onset: Pron
    medials: tuple[Pron, ...]
    coda: Pron
    #: The first syllable's onset with its vowel, and the last vowel with its coda (English
    #: restricts these, e.g. /bj/ only before /u/, /ŋ/ never after /aɪ/).
    head: Pron
    rhyme: Pron
    final_vowel: str | None

    @classmethod
    def of(cls, pron: Pron) -> "Shape | None":
        nuclei = [i for i, p in enumerate(pron) if p in VOWELS]
        if not nuclei:
            return None
        first, last = nuclei[0], nuclei[-1]
        return cls(
            onset=pron[:first],
            medials=tuple(pron[a + 1 : b] for a, b in zip(nuclei, nuclei[1:])),
            coda=pron[last + 1 :],
            head=pron[: first + 1],
            rhyme=pron[last:],
            final_vowel=pron[-1] if last == len(pron) - 1 else None,
        )


@dataclass
class Phonotactics:
    """Counts of the onsets, medial clusters, codas, heads, rhymes and final vowels of real words."""

    onsets: Counter = field(default_factory=Counter)
    medials: Counter = field(default_factory=Counter)
    codas: Counter = field(default_factory=Counter)
    heads: Counter = field(default_factory=Counter)
    rhymes: Counter = field(default_factory=Counter)
    finals: Counter = field(default_factory=Counter)

    @classmethod
    def learn(cls, prons: Iterable[Pron]) -> "Phonotactics":
        table = cls()
        for pron in prons:
            shape = Shape.of(pron)
            if shape is None:
                continue
            table.onsets[shape.onset] += 1
            table.medials.update(shape.medials)
            table.codas[shape.coda] += 1
            table.heads[shape.head] += 1
            table.rhymes[shape.rhyme] += 1
            if shape.final_vowel is not None:
                table.finals[shape.final_vowel] += 1
        return table

    def legal(self, pron: Pron) -> bool:
        shape = Shape.of(pron)
        return shape is not None and (
            all(self.medials[m] >= MIN_COUNT for m in shape.medials)
            and all(table[part] >= MIN_COUNT for table, part in (
                (self.onsets, shape.onset), (self.codas, shape.coda), (self.heads, shape.head), (self.rhymes, shape.rhyme),
            ))
            and (shape.final_vowel is None or self.finals[shape.final_vowel] >= MIN_FINAL_COUNT)
        )


def wordnet_lemmas() -> set[str]:
    """Single-word lemmas and inflected forms (``*.exc``) of WordNet."""
    folder = wordnet_dir()
    words: set[str] = set()
    for data in POS_FILES:
        pos = data.split(".")[1]
        for name in (f"index.{pos}", f"{pos}.exc"):
            path = folder / name
            if not path.is_file():
                continue
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith(" "):  # licence header
                    continue
                # index: the lemma is the first field; exc: every field is a word form.
                fields = line.split()[:1] if name.startswith("index") else line.split()
                words.update(w for w in fields if _LEMMA.fullmatch(w))
    return words


class Lexicon:
    """Pronunciations of the real-word vocabulary, its phonotactics, and non-word generation.

    Every WordNet lemma and example-sentence word counts as a real word (a non-word may sound like
    none of them); phonotactics are learnt from the sentence words only, since rare lemmas
    (``nor'easter``, loanwords) pronounced by letter-to-sound rules attest odd clusters.
    """

    def __init__(self, engine: Flite, sentences: Sequence[Sentence] | None = None, *, extra_words: Iterable[str] = ()) -> None:
        """``sentences``: every WordNet example sentence (:func:`.text.load_sentences`, read if not given);
        ``extra_words``: more real words (the story world's), which do not change the phonotactics."""
        self.engine = engine
        sentences = sentences if sentences is not None else load_sentences()
        common = {w for s in sentences for w in s.words if _LEMMA.fullmatch(w)}
        extra = {w for w in extra_words if _LEMMA.fullmatch(w)}
        self.prons: dict[str, Pron] = {w: engine.pronounce(w) for w in sorted(wordnet_lemmas() | common | extra)}
        self.real: frozenset[Pron] = frozenset(self.prons.values())
        self.phonotactics = Phonotactics.learn(self.prons[w] for w in common)

    def pronounce(self, word: str) -> Pron:
        return self.prons.get(word) or self.engine.pronounce(word)

    def is_word(self, pron: Pron) -> bool:
        return tuple(pron) in self.real

    def nonwords(self, pron: Pron) -> list[Pron]:
        """Every legal non-word one :func:`substitutes` phone away from ``pron``, in phone order
        (none if ``pron`` itself is not legal)."""
        if not self.phonotactics.legal(pron):
            return []
        candidates = ((*pron[:i], q, *pron[i + 1 :]) for i in range(len(pron)) for q in substitutes(pron[i]))
        return [c for c in candidates if c not in self.real and self.phonotactics.legal(c)]

    def nonword(self, pron: Pron, rng: random.Random) -> Pron | None:
        """One of :meth:`nonwords`, drawn with ``rng`` (None if there is none)."""
        options = self.nonwords(pron)
        return rng.choice(options) if options else None
