"""Real words, their pronunciations, and phonotactically legal non-words (for sWUGGY-style pairs).

The vocabulary is every single-word lemma and inflected form of WordNet 3.0 plus the words of its
example sentences (about 88,000), pronounced by flite (CMU lexicon, letter-to-sound rules for the
rest). English phonotactics is read off the pronunciations of the example sentences' 21,000 words:
an onset, coda or medial consonant cluster, a first onset + vowel and a last vowel + coda are
legal when at least :data:`MIN_COUNT` of them have it (a word-final vowel, :data:`MIN_FINAL_COUNT`). A non-word changes one phone of a legal real word
into another of the same class (vowel for vowel, stop for stop, ...), keeps every cluster legal,
and is not the pronunciation of any real word.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .flite import Flite
from .text import POS_FILES, load_sentences, wordnet_dir

Pron = tuple[str, ...]

VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})
#: Substitution classes: a non-word swaps a phone only within its class.
PHONE_CLASSES: tuple[frozenset[str], ...] = (
    VOWELS,
    frozenset({"P", "B", "T", "D", "K", "G"}),
    frozenset({"CH", "JH"}),
    frozenset({"F", "V", "TH", "DH", "S", "Z", "SH", "ZH", "HH"}),
    frozenset({"M", "N", "NG"}),
    frozenset({"L", "R", "W", "Y"}),
)
_CLASS_OF = {p: c for c in PHONE_CLASSES for p in c}
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

    def __init__(self, engine: Flite) -> None:
        self.engine = engine
        common = {w for s in load_sentences() for w in s.words if _LEMMA.fullmatch(w)}
        self.prons: dict[str, Pron] = {w: engine.pronounce(w) for w in sorted(wordnet_lemmas() | common)}
        self.real: frozenset[Pron] = frozenset(self.prons.values())
        self.phonotactics = Phonotactics.learn(self.prons[w] for w in common)

    def pronounce(self, word: str) -> Pron:
        return self.prons.get(word) or self.engine.pronounce(word)

    def is_word(self, pron: Pron) -> bool:
        return tuple(pron) in self.real

    def nonword(self, pron: Pron, rng: random.Random) -> Pron | None:
        """A legal non-word one same-class phone away from ``pron`` (None if ``pron`` itself is not
        legal, or no substitution is)."""
        if not self.phonotactics.legal(pron):
            return None
        positions = list(range(len(pron)))
        rng.shuffle(positions)
        for i in positions:
            options = sorted(_CLASS_OF.get(pron[i], frozenset()) - {pron[i]})
            rng.shuffle(options)
            for phone in options:
                candidate = (*pron[:i], phone, *pron[i + 1 :])
                if candidate not in self.real and self.phonotactics.legal(candidate):
                    return candidate
        return None
