"""``spokenlm synth-pairs``: spoken minimal pairs for lexical (sWUGGY-like) and syntactic
(sBLIMP-like) discrimination, with ``gold.csv`` files in the ZeroSpeech 2021 sLM21 layout.

Lexical: a real word and a legal non-word one same-class phone away (:mod:`.lexicon`), both
spoken from their phone strings by the same voice, so nothing but the phones differs.
Syntactic: a sentence and an ungrammatical variant (determiner-noun swap, or subject-verb
agreement violation), both read by the same voice. Layout of ``DIR``::

    lexical/<file>.flac, lexical/gold.csv      id,filename,voice,frequency,word,phones,correct
    syntactic/<file>.flac, syntactic/gold.csv  id,filename,voice,type,subtype,correct
    alignments/<file>.json                     as in the corpus (words, phones)
    manifests/{lexical,syntactic}.tsv          for units / scoring
    labels/{lexical,syntactic}.phn, .phnseq    gold phones (for a phoneme topline)
    pairs.json                                 options and counts; written last

A pair is (voice, id); ``correct`` is 1 for the word / grammatical sentence. File names do not
reveal which member is correct.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Sequence

from ..errors import ConfigError
from ..io import atomic_write, read_lines
from ..phones import SIL
from .corpus import run_subcommand
from .flite import Flite, Synthesis
from .lexicon import Lexicon, Pron, respell
from .speakers import Speaker, speaker
from .text import Sentence, load_sentences
from .utterance import completed_num_samples, save_utterance

Task = Literal["lexical", "syntactic"]
LEXICAL_HEADER = ("id", "filename", "voice", "frequency", "word", "phones", "correct")
SYNTACTIC_HEADER = ("id", "filename", "voice", "type", "subtype", "correct")
DEFAULT_SPEAKERS = ("slt-a", "rms-a", "awb-a")
#: Real words of 4-10 phones: long enough that one changed phone leaves the word recognisable.
MIN_PHONES, MAX_PHONES = 4, 10
_PLAIN_WORD = re.compile(r"[a-z]+")

_DETERMINERS = frozenset({"the", "a", "an", "his", "their", "my", "our", "your", "its"})
_FUNCTION_WORDS = _DETERMINERS | frozenset(
    "and or but of to in on at by for with from as than that this these those which who whom whose what "
    "is are was were be been being has have had do does did not no it he she they we you i me him her us them "
    "very so too also more most less all some any each every".split()
)
_SINGULAR, _PLURAL = frozenset({"he", "she", "it"}), frozenset({"they", "we", "you"})
#: Verb forms that agree with a singular / plural subject, and their counterparts.
_AGREEMENT = {"is": "are", "was": "were", "has": "have", "does": "do"}
_AGREEMENT_PLURAL = {v: k for k, v in _AGREEMENT.items()}


@dataclass(frozen=True)
class LexicalPair:
    """A real word and its non-word, with the word's count in the training text."""

    id: int
    word: str
    phones: Pron
    nonword: Pron
    frequency: int


@dataclass(frozen=True)
class SyntacticPair:
    """A grammatical sentence and its ungrammatical variant."""

    id: int
    good: tuple[str, ...]
    bad: tuple[str, ...]
    type: str
    subtype: str


# --------------------------------------------------------------------------- choosing pairs


def lexical_pairs(
    lexicon: Lexicon, frequencies: Counter, *, n: int, oov_fraction: float, seed: int
) -> list[LexicalPair]:
    """``n`` word / non-word pairs: in-vocabulary words drawn among the most frequent in
    ``frequencies``, the rest (``oov_fraction``) among vocabulary words absent from it."""
    rng = random.Random(seed)

    def usable(word: str) -> bool:
        return bool(_PLAIN_WORD.fullmatch(word)) and word not in _FUNCTION_WORDS and (
            MIN_PHONES <= len(lexicon.pronounce(word)) <= MAX_PHONES
        )

    n_oov = round(n * oov_fraction)
    known = sorted((w for w in frequencies if usable(w)), key=lambda w: (-frequencies[w], w))
    # Draw among the 3n most frequent: frequent enough to be learnt, varied enough across seeds.
    pool_known = known[: max(3 * (n - n_oov), 50)]
    rng.shuffle(pool_known)
    unknown = [w for w in lexicon.prons if w not in frequencies and usable(w)]
    rng.shuffle(unknown)

    pairs: list[LexicalPair] = []
    for pool, want in ((pool_known, n - n_oov), (unknown, n_oov)):
        made = 0
        for word in pool:
            if made == want:
                break
            pron = lexicon.pronounce(word)
            nonword = lexicon.nonword(pron, rng)
            if nonword is None:
                continue
            pairs.append(LexicalPair(len(pairs), word, pron, nonword, frequencies[word]))
            made += 1
    if len(pairs) < n:
        raise ConfigError(f"--n-lexical: only {len(pairs)} word / non-word pairs could be made, asked for {n}")
    return pairs


def _ungrammatical(words: tuple[str, ...]) -> tuple[tuple[str, ...], str, str] | None:
    """An ungrammatical variant of a sentence, with its (type, subtype), or None."""
    if len(words) > 1:
        table = _AGREEMENT if words[0] in _SINGULAR else _AGREEMENT_PLURAL if words[0] in _PLURAL else {}
        if words[1] in table:
            return (words[0], table[words[1]], *words[2:]), "agreement", "subject_verb"
    for i, (det, noun) in enumerate(zip(words, words[1:])):
        if det in _DETERMINERS and noun not in _FUNCTION_WORDS and _PLAIN_WORD.fullmatch(noun):
            return (*words[:i], noun, det, *words[i + 2 :]), "word_order", "determiner_noun_swap"
    return None


def syntactic_pairs(
    sentences: Sequence[Sentence], vocabulary: set[str] | None, *, exclude: set[tuple[str, ...]], n: int, seed: int
) -> list[SyntacticPair]:
    """``n`` grammatical / ungrammatical pairs, the types taking turns, from sentences not in
    ``exclude`` (the training text); sentences with fewer words outside ``vocabulary`` come first."""
    rng = random.Random(seed)
    by_type: dict[str, list[tuple[int, SyntacticPair]]] = {}
    for s in sentences:
        variant = None if s.words in exclude else _ungrammatical(s.words)
        if variant is None:
            continue
        bad, type_, subtype = variant
        oov = sum(w not in vocabulary for w in s.words) if vocabulary is not None else 0
        by_type.setdefault(type_, []).append((oov, SyntacticPair(-1, s.words, bad, type_, subtype)))
    for candidates in by_type.values():
        rng.shuffle(candidates)
        candidates.sort(key=lambda c: c[0])  # stable: still shuffled within equal OOV counts
    chosen: list[SyntacticPair] = []
    # Round robin over the types; a type that runs out leaves its turns to the others.
    while len(chosen) < n and any(by_type.values()):
        for t in sorted(by_type):
            if by_type[t] and len(chosen) < n:
                chosen.append(by_type[t].pop(0)[1])
    if len(chosen) < n:
        raise ConfigError(f"--n-syntactic: only {len(chosen)} sentence pairs could be made, asked for {n}")
    return [replace(pair, id=i) for i, pair in enumerate(chosen)]


# --------------------------------------------------------------------------- synthesis


def _sentence_text(words: Sequence[str]) -> str:
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def _speak(
    engine: Flite, out_dir: Path, task: Task, filename: str, spk: Speaker, *, phones: Pron | None = None,
    words: Sequence[str] = (), label: str = "",
) -> None:
    """Synthesize one member of a pair unless it is already complete: a phone string (named
    ``label`` in its alignment) or a sentence of ``words``."""
    audio, alignment = out_dir / task / f"{filename}.flac", out_dir / "alignments" / f"{filename}.json"
    if completed_num_samples(audio, alignment) is not None:
        return
    if phones is not None:
        synthesis = engine.synthesize_phones([SIL, *phones, SIL], spk)
        # A phone string has no word structure: the item spans its non-silent phones.
        speech = [p for p in synthesis.phones if p[2] != SIL]
        synthesis = Synthesis(synthesis.samples, ((speech[0][0], speech[-1][1], label),), synthesis.phones)
        text = label
    else:
        text = _sentence_text(words)
        synthesis = engine.synthesize(text, spk)
    save_utterance(synthesis, audio_path=audio, alignment_path=alignment, utt_id=filename, speaker=spk.id, text=text)


def _filenames(task: Task, spk: Speaker, pair_id: int, rng: random.Random) -> tuple[str, str]:
    """(correct, incorrect) file names; which gets suffix 0 is random, so names hide the answer."""
    names = [f"{task[:3]}_{spk.id}_{pair_id:05d}_{k}" for k in (0, 1)]
    rng.shuffle(names)
    return names[0], names[1]


def write_lexical(engine: Flite, out_dir: Path, pairs: Sequence[LexicalPair], speakers: Sequence[Speaker], *, seed: int) -> None:
    rng = random.Random(seed)
    rows = []
    for spk in speakers:
        for pair in pairs:
            good, bad = _filenames("lexical", spk, pair.id, rng)
            for filename, phones, word, correct in (
                (good, pair.phones, pair.word, 1),
                (bad, pair.nonword, respell(pair.nonword), 0),
            ):
                _speak(engine, out_dir, "lexical", filename, spk, phones=phones, label=word)
                rows.append((pair.id, filename, spk.id, pair.frequency, word, " ".join(phones), correct))
    _write_csv(out_dir / "lexical" / "gold.csv", LEXICAL_HEADER, rows)


def write_syntactic(engine: Flite, out_dir: Path, pairs: Sequence[SyntacticPair], speakers: Sequence[Speaker], *, seed: int) -> None:
    rng = random.Random(seed + 1)
    rows = []
    for spk in speakers:
        for pair in pairs:
            good, bad = _filenames("syntactic", spk, pair.id, rng)
            for filename, words, correct in ((good, pair.good, 1), (bad, pair.bad, 0)):
                _speak(engine, out_dir, "syntactic", filename, spk, words=words)
                rows.append((pair.id, filename, spk.id, pair.type, pair.subtype, correct))
    _write_csv(out_dir / "syntactic" / "gold.csv", SYNTACTIC_HEADER, rows)


def _write_csv(path: Path, header: Sequence[str], rows: list[tuple]) -> None:
    with atomic_write(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


# --------------------------------------------------------------------------- the command


def training_text(corpus_dir: Path) -> list[tuple[str, ...]]:
    """The training transcripts of a corpus made by ``spokenlm synth-corpus``."""
    path = corpus_dir / "transcripts" / "train.wrd"
    if not path.is_file():
        raise ConfigError(f"{path}: not found; --vocab-from must be a corpus folder made by 'spokenlm synth-corpus'")
    return [tuple(line.split()) for line in read_lines(path)]


def corpus_test_speakers(corpus_dir: Path) -> list[str]:
    path = corpus_dir / "corpus.json"
    try:
        return list(json.loads(path.read_text())["splits"]["test"]["speakers"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: cannot read the test speakers ({e}); is it a finished synth-corpus folder?") from None


def build_pairs(
    out_dir: str | Path,
    *,
    voices: Sequence[str] | None = None,
    n_lexical: int = 200,
    n_syntactic: int = 100,
    oov_fraction: float = 0.2,
    seed: int = 0,
    vocab_from: str | Path | None = None,
    flite_lib_dir: str | None = None,
) -> dict:
    """Synthesize the pair sets in ``out_dir``; returns the metadata written to pairs.json."""
    if n_lexical < 1 or n_syntactic < 1:
        raise ConfigError(f"--n-lexical / --n-syntactic: {n_lexical} / {n_syntactic}; both must be at least 1")
    if not 0 <= oov_fraction <= 1:
        raise ConfigError(f"--oov-fraction: {oov_fraction} must be between 0 and 1")
    out_dir = Path(out_dir)
    engine = Flite(flite_lib_dir)
    sentences = load_sentences()
    if vocab_from is not None:
        train = training_text(Path(vocab_from))
        frequency_source = f"training transcripts of {vocab_from}"
        voices = voices or corpus_test_speakers(Path(vocab_from))
    else:
        train = []
        frequency_source = "WordNet example sentences"
    # Without a corpus the whole sentence set stands in for the training text (for frequencies only).
    frequencies = Counter(w for words in (train or [s.words for s in sentences]) for w in words)
    speakers = [speaker(v) for v in (voices or DEFAULT_SPEAKERS)]
    if len({s.id for s in speakers}) != len(speakers):
        raise ConfigError(f"--voices: {' '.join(voices)} names a speaker twice")

    print("synth-pairs: pronouncing the WordNet vocabulary", file=sys.stderr, flush=True)
    lexicon = Lexicon(engine)
    lexical = lexical_pairs(lexicon, frequencies, n=n_lexical, oov_fraction=oov_fraction, seed=seed)
    syntactic = syntactic_pairs(
        sentences, set(frequencies) if train else None, exclude=set(train), n=n_syntactic, seed=seed
    )
    print(f"synth-pairs: speaking {len(lexical)} lexical and {len(syntactic)} syntactic pairs "
          f"x {len(speakers)} voices", file=sys.stderr, flush=True)
    write_lexical(engine, out_dir, lexical, speakers, seed=seed)
    write_syntactic(engine, out_dir, syntactic, speakers, seed=seed)
    for task in ("lexical", "syntactic"):
        manifest = out_dir / "manifests" / f"{task}.tsv"
        run_subcommand("manifest", str(out_dir / task), "--out", str(manifest), "--ext", "flac")
        run_subcommand(
            "labels", "--manifest", str(manifest), "--alignments", str(out_dir / "alignments"), "--format", "json",
            "--sequence", "--out", str(out_dir / "labels"),
        )
    metadata = {
        "engine": "flite",
        "seed": seed,
        "voices": [s.id for s in speakers],
        "frequency_source": frequency_source,
        "lexical": {
            "pairs": len(lexical),
            "in_vocabulary": sum(p.frequency > 0 for p in lexical),
            "vocabulary_words": len(lexicon.prons),
        },
        "syntactic": {"pairs": len(syntactic), "types": dict(Counter(f"{p.type}/{p.subtype}" for p in syntactic))},
    }
    with atomic_write(out_dir / "pairs.json") as f:
        json.dump(metadata, f, indent=2)
        f.write("\n")
    return metadata


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (rerun with the same options to resume)")
    parser.add_argument(
        "--voices", nargs="+", metavar="VOICE",
        help="voices (slt, rms, awb: their first variant) or speaker ids (slt-c); default: the test speakers "
        f"of --vocab-from, else {' '.join(DEFAULT_SPEAKERS)}",
    )
    parser.add_argument("--n-lexical", type=int, default=200, metavar="N", help="word / non-word pairs per voice (default: 200)")
    parser.add_argument("--n-syntactic", type=int, default=100, metavar="N", help="sentence pairs per voice (default: 100)")
    parser.add_argument(
        "--oov-fraction", type=float, default=0.2, metavar="F",
        help="share of lexical pairs whose word is absent from the training text (default: 0.2)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the word, non-word and sentence choice (default: 0)")
    parser.add_argument(
        "--vocab-from", metavar="CORPUS_DIR",
        help="synth-corpus folder: words and frequencies from its training transcripts, syntactic pairs from "
        "sentences outside them, voices from its test speakers",
    )
    parser.add_argument("--flite-lib-dir", metavar="DIR", help="folder holding libflite.so.1 and the voices")


def run(args: argparse.Namespace) -> int:
    meta = build_pairs(
        args.out,
        voices=args.voices,
        n_lexical=args.n_lexical,
        n_syntactic=args.n_syntactic,
        oov_fraction=args.oov_fraction,
        seed=args.seed,
        vocab_from=args.vocab_from,
        flite_lib_dir=args.flite_lib_dir,
    )
    print(
        f"wrote {args.out}: {meta['lexical']['pairs']} lexical pairs ({meta['lexical']['in_vocabulary']} in vocabulary), "
        f"{meta['syntactic']['pairs']} syntactic pairs, voices {' '.join(meta['voices'])}"
    )
    return 0
