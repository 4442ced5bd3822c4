"""Sentences to speak: the example sentences of WordNet 3.0 (Debian ``wordnet-base``).

Each synset's gloss ends with double-quoted usage examples (``| a definition; "an example"``).
About 4,900 of them are clean English sentences of 6-16 words; they are normalised so that the
words a speech synthesizer reads are exactly the words of the transcript.
"""

from __future__ import annotations

import os
import random
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..core.errors import MissingToolError

#: Where Debian's ``wordnet-base`` puts the database; ``WNSEARCHDIR`` overrides it (as for ``wn``).
WORDNET_DIR = Path(os.environ.get("WNSEARCHDIR", "/usr/share/wordnet"))
POS_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")

MIN_WORDS = 6
MAX_WORDS = 16

#: Where the sentences come from: WordNet's example sentences (this module) or the generated story
#: world of :mod:`.stories`.
World = Literal["wordnet", "stories"]
WORLDS: tuple[World, ...] = ("wordnet", "stories")
#: What corpus.json says of each world.
WORLD_DESCRIPTIONS: dict[World, str] = {
    "wordnet": "WordNet 3.0 example sentences",
    "stories": "generated stories (spokenlm_plugin/synth/stories.py)",
}

#: Which corpus a sentence may be spoken in. ``pretrain`` sentences are only ever read into the
#: unlabelled pretraining corpus, ``aligned`` ones only into the aligned corpus and the minimal
#: pairs, so a model pretrained here has never heard an evaluation sentence.
Pool = Literal["aligned", "pretrain"]
#: One sentence in this many belongs to the pretraining pool.
PRETRAIN_EVERY = 4

_EXAMPLE = re.compile(r'"([^"]+)"')
#: A word: letters with inner apostrophes (don't, children's); no leading/trailing apostrophe.
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
#: Punctuation kept (it shapes the prosody) but only at the end of a word.
_TRAILING_PUNCT = re.compile(r"[,;:.!?]+$")


@dataclass(frozen=True)
class Sentence:
    """A normalised sentence: ``text`` is what the synthesizer reads, ``words`` the transcript."""

    index: int
    text: str
    words: tuple[str, ...]


def wordnet_dir(path: str | os.PathLike | None = None) -> Path:
    """The WordNet database folder, or :class:`MissingToolError` saying how to install it."""
    folder = Path(path) if path is not None else WORDNET_DIR
    if not all((folder / name).is_file() for name in POS_FILES):
        raise MissingToolError(
            f"{folder}: WordNet 3.0 database not found; install it with "
            "'sudo apt-get install wordnet-base' (or set WNSEARCHDIR)"
        )
    return folder


def normalize_example(example: str) -> tuple[str, tuple[str, ...]] | None:
    """``(text, words)`` for a usage example, or None when it is not a clean English sentence.

    Hyphens and dashes become spaces (so each word is one synthesizer token); a word may carry
    trailing punctuation, nothing else; digits, brackets, acronyms and abbreviations reject the example.
    """
    example = example.replace("--", ", ").replace("-", " ").strip()
    tokens = example.split()
    text_tokens, words = [], []
    for token in tokens:
        core = _TRAILING_PUNCT.sub("", token)
        if not _WORD.fullmatch(core):
            return None
        # Acronyms (NATO, U.S.) are spelled out letter by letter: the word would not match its phones.
        if sum(c.isupper() for c in core) > 1 or (core.isupper() and len(core) == 1 and core != "I"):
            return None
        text_tokens.append(core + token[len(core):])
        words.append(core.lower())
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    text = " ".join(text_tokens)
    text = text[0].upper() + text[1:]
    if text[-1] not in ".!?":
        text = _TRAILING_PUNCT.sub("", text) + "."
    return text, tuple(words)


def load_sentences(path: str | os.PathLike | None = None) -> list[Sentence]:
    """Every clean example sentence, deduplicated, in database order (deterministic)."""
    folder = wordnet_dir(path)
    seen: set[tuple[str, ...]] = set()
    sentences: list[Sentence] = []
    for name in POS_FILES:
        with open(folder / name, encoding="utf-8", errors="replace") as f:
            for line in f:
                # The licence header lines start with two spaces; data lines with a synset offset.
                if line.startswith(" ") or "|" not in line:
                    continue
                gloss = line.split("|", 1)[1]
                for example in _EXAMPLE.findall(gloss):
                    normalized = normalize_example(example)
                    if normalized is None or normalized[1] in seen:
                        continue
                    seen.add(normalized[1])
                    sentences.append(Sentence(len(sentences), *normalized))
    return sentences


def shuffled(sentences: list[Sentence], *, seed: int) -> list[Sentence]:
    """A seeded permutation (indices are kept, so a sentence's identity does not depend on the seed)."""
    out = list(sentences)
    random.Random(seed).shuffle(out)
    return out


def sentence_pool(sentence: Sentence) -> Pool:
    """The pool of a sentence, fixed by its words alone (not by its index, a seed or a corpus size)."""
    digest = zlib.crc32(" ".join(sentence.words).encode("utf-8"))
    return "pretrain" if digest % PRETRAIN_EVERY == 0 else "aligned"


def pool_sentences(sentences: list[Sentence], pool: Pool) -> list[Sentence]:
    """The sentences of one pool, in their original order."""
    return [s for s in sentences if sentence_pool(s) == pool]
