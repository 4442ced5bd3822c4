"""``spokenlm synth-pairs``: spoken minimal pairs for lexical (sWUGGY-like) and syntactic
(sBLIMP-like) discrimination, with ``gold.csv`` files in the ZeroSpeech 2021 sLM21 layout.

The pairs measure language, not length: the two members of every pair have the same number of
phones, and which one is correct cannot be told from its duration.

Lexical: a real word and a legal non-word that replaces one of its phones by a phone of the same
class and similar intrinsic duration (:func:`.lexicon.substitutes`: a lax vowel for a lax vowel, a
diphthong for a diphthong, a voiceless stop for a voiceless stop, ...), both spoken from their
phone strings by the same voice, so nothing but that phone differs. flite's duration model still
lengthens some substitutions in context (``R`` -> ``L`` always does), so among a word's legal
non-words the one kept is the first (of :data:`BALANCE_TRIES` drawn) that keeps the set balanced,
measured on the audio that is written: the number of pairs whose word is the shorter member
(averaged over the voices) never leads or trails the number whose non-word is shorter by more
than half a pair.

Syntactic: a WordNet sentence outside the training text and an ungrammatical variant with the same
number of phones, the types taking turns. ``agreement/subject_verb`` gives the verb after a pronoun
subject the other number, only between forms of equal phone counts (is / are, has / have; was /
were and does / do differ by a phone and are not used), the four changes taking turns so that
singular -> plural (``he is`` -> ``he are``, ``she has`` -> ``she have``) and plural -> singular
(``they are`` -> ``they is``, ``we have`` -> ``we has``) violations are equally frequent.
``word_order/determiner_noun_swap`` swaps a determiner and the word after it (``a girl`` ->
``girl a``: the same words). A candidate is kept only if flite's front end gives both sentences as
many phones for every voice (:meth:`.flite.Flite.text_phones`): a homograph can change its
reading once the words move (``the record`` R EH K ER D, ``record the`` R IH K AO R D).
Duration differences of the four agreement changes cancel out since each is as frequent as its
reverse; word-order swaps are not balanced (the swapped sentence was the longer in 53 % of 1,170
swaps read by slt, the shorter in 45 %). ``benchmarks/pair_confounds.py`` measures what is left.

On a story corpus (``synth-corpus --text stories``; or ``--text stories``) the words and sentences
come from the story world (:mod:`.stories`): lexical pairs take its content words of 3-10 phones in
order of frequency, each with up to :data:`STORY_NONWORDS_PER_WORD` non-words made as above (no
out-of-vocabulary words by default: every story word is in an hour of speech); syntactic pairs take
sentences of its aligned pool outside the training text and one of the grammar's own violations
(:func:`.stories.violations`: subject-verb and determiner-noun agreement both ways, determiner-noun
and adjective-noun swaps; four subtypes in turns), checked with flite's front end as above.
Layout of ``DIR``::

    lexical/<file>.flac, lexical/gold.csv      id,filename,voice,frequency,word,phones,correct,n_phones,duration,duration_diff
    syntactic/<file>.flac, syntactic/gold.csv  id,filename,voice,type,subtype,correct,direction,n_phones,duration,duration_diff
    alignments/<file>.json                     as in the corpus (words, phones)
    manifests/{lexical,syntactic}.tsv          for units / scoring
    labels/{lexical,syntactic}.phn, .phnseq    gold phones (for a phoneme topline)
    pairs.json                                 options, counts, duration balance; written last

A pair is (voice, id); ``correct`` is 1 for the word / grammatical sentence. File names do not
reveal which member is correct. The columns after the sLM21 ones: ``direction`` of an agreement
violation (``singular_to_plural``, ``plural_to_singular``; empty for word order), ``n_phones`` of
the member (its alignment's phones, pauses excluded; equal within a pair), its ``duration`` (the
audio's length in seconds) and the pair's ``duration_diff`` (correct minus incorrect member's
duration, the same on both rows).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import json
import multiprocessing
import random
import re
import sys
import zlib
from collections import Counter
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Callable, Collection, Iterable, Iterator, Literal, NamedTuple, Sequence

from ..core.errors import AlignmentError, ConfigError
from ..core.io import atomic_write, read_lines
from ..core.phones import SAMPLE_RATE, SIL
from . import stories
from .corpus import manifest_and_labels
from .flite import Flite, Synthesis
from .lexicon import Lexicon, Pron, respell
from .speakers import Speaker, speaker
from .text import WORLDS, Sentence, World, load_sentences, pool_sentences
from .utterance import completed_num_samples, save_utterance

Task = Literal["lexical", "syntactic"]
Direction = Literal["singular_to_plural", "plural_to_singular", ""]
#: After the sLM21 columns: the member's phone count and duration, and the pair's duration difference.
MEASURES = ("n_phones", "duration", "duration_diff")
LEXICAL_HEADER = ("id", "filename", "voice", "frequency", "word", "phones", "correct", *MEASURES)
SYNTACTIC_HEADER = ("id", "filename", "voice", "type", "subtype", "correct", "direction", *MEASURES)
DEFAULT_SPEAKERS = ("slt-a", "rms-a", "awb-a")
#: Real words of 4-10 phones: long enough that one changed phone leaves the word recognisable.
MIN_PHONES, MAX_PHONES = 4, 10
#: Non-words of a word tried (and synthesized) at most, looking for one that keeps the duration balance.
BALANCE_TRIES = 4
#: The story world's lexical pairs: its content words of 3-10 phones (its most frequent nouns, dog,
#: cat, ball, have 3), each with up to 3 non-words, the most frequent words first: the 200 pairs of a
#: 1-hour corpus use 79 words, each said 11 times or more in its training text (examples/stories).
STORY_MIN_PHONES, STORY_NONWORDS_PER_WORD = 3, 3
#: Sentences of the story world's aligned pool that syntactic pairs are drawn from.
STORY_PAIR_SENTENCES = 10_000
#: Default share of out-of-vocabulary lexical pairs, per world: every story word is in vocabulary.
DEFAULT_OOV_FRACTION: dict[World, float] = {"wordnet": 0.2, "stories": 0.0}
_PLAIN_WORD = re.compile(r"[a-z]+")

_DETERMINERS = frozenset({"the", "a", "an", "his", "their", "my", "our", "your", "its"})
_FUNCTION_WORDS = _DETERMINERS | frozenset(
    "and or but of to in on at by for with from as than that this these those which who whom whose what "
    "is are was were be been being has have had do does did not no it he she they we you i me him her us them "
    "very so too also more most less all some any each every".split()
)
_SINGULAR, _PLURAL = frozenset({"he", "she", "it"}), frozenset({"they", "we", "you"})
#: "it" and "you" are objects after these: "with you is" is no subject-verb pair.
_PREPOSITIONS = frozenset(
    "of to in on at by for with from about into onto over under through between against without like".split()
)
#: Singular verb form -> plural form, each pair with as many phones in the lexicon (IH Z / AA R,
#: HH AE Z / HH AE V).
_AGREEMENT = {"is": "are", "has": "have"}
_AGREEMENT_PLURAL = {v: k for k, v in _AGREEMENT.items()}

#: A phone string's audio length in samples, for each voice.
Durations = Callable[[Pron], Sequence[int]]


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
    direction: Direction = ""


class Variant(NamedTuple):
    """An ungrammatical variant of a sentence; ``change`` names what takes turns within its type."""

    bad: tuple[str, ...]
    type: str
    subtype: str
    direction: Direction
    change: str


# --------------------------------------------------------------------------- choosing pairs


def shorter_wins(good: Sequence[int], bad: Sequence[int]) -> float:
    """A duration-only scorer's score of a pair (the shorter member wins; ties 1/2), averaged over voices."""
    return sum(1.0 if g < b else 0.5 if g == b else 0.0 for g, b in zip(good, bad, strict=True)) / len(good)


def _balanced(word: Pron, options: Sequence[Pron], durations: Durations, balance: float) -> tuple[Pron, float]:
    """The first of ``options`` that keeps the running ``balance`` (sum of :func:`shorter_wins` - 1/2
    over the pairs so far) within 1/2, else the one that leaves it smallest; with the new balance."""
    good = durations(word)
    best: tuple[Pron, float] | None = None
    for option in options:
        after = balance + shorter_wins(good, durations(option)) - 0.5
        if abs(after) <= 0.5:
            return option, after
        if best is None or abs(after) < abs(best[1]):
            best = (option, after)
    assert best is not None
    return best


def lexical_pairs(
    lexicon: Lexicon, frequencies: Counter, *, n: int, oov_fraction: float, seed: int, durations: Durations | None = None,
    words: Collection[str] | None = None, min_phones: int = MIN_PHONES, per_word: int = 1,
) -> list[LexicalPair]:
    """``n`` word / non-word pairs: in-vocabulary words drawn among the most frequent in
    ``frequencies``, the rest (``oov_fraction``) among vocabulary words absent from it.

    With ``durations``, each non-word is chosen among the word's to keep the set's duration
    balance (see the module docstring); without, it is drawn at random. ``words`` restricts the
    in-vocabulary words (the story world's content words); with ``per_word`` > 1, each in-vocabulary
    word gets up to that many distinct non-words, the words taken in order of frequency (a small
    world: fewer test words, each of them frequent)."""
    rng = random.Random(seed)

    def usable(word: str) -> bool:
        return bool(_PLAIN_WORD.fullmatch(word)) and word not in _FUNCTION_WORDS and (
            min_phones <= len(lexicon.pronounce(word)) <= MAX_PHONES
        )

    n_oov = round(n * oov_fraction)
    known = sorted((w for w in frequencies if usable(w) and (words is None or w in words)), key=lambda w: (-frequencies[w], w))
    if per_word == 1:
        # Draw among the 3n most frequent: frequent enough to be learnt, varied enough across seeds.
        pool_known = known[: max(3 * (n - n_oov), 50)]
        rng.shuffle(pool_known)
    else:
        pool_known = known
    unknown = [w for w in lexicon.prons if w not in frequencies and usable(w)]
    rng.shuffle(unknown)

    pairs: list[LexicalPair] = []
    balance = 0.0
    for pool, want, each in ((pool_known, n - n_oov, per_word), (unknown, n_oov, 1)):
        made = 0
        for word in pool:
            if made == want:
                break
            pron = lexicon.pronounce(word)
            options = lexicon.nonwords(pron)
            if not options:
                continue
            rng.shuffle(options)
            for _ in range(each):
                if made == want or not options:
                    break
                if durations is None:
                    nonword = options[0]
                else:
                    nonword, balance = _balanced(pron, options[:BALANCE_TRIES], durations, balance)
                options.remove(nonword)
                pairs.append(LexicalPair(len(pairs), word, pron, nonword, frequencies[word]))
                made += 1
    if len(pairs) < n:
        raise ConfigError(f"--n-lexical: only {len(pairs)} word / non-word pairs could be made, asked for {n}")
    return pairs


def ungrammatical(words: Sequence[str]) -> Variant | None:
    """The ungrammatical variant of a sentence (agreement if it has a pronoun subject + is / are /
    has / have, else a determiner-noun swap), or None."""
    words = tuple(words)
    for i, (subject, verb) in enumerate(zip(words, words[1:])):
        if subject in ("it", "you") and i > 0 and words[i - 1] in _PREPOSITIONS:
            continue  # an object
        table = _AGREEMENT if subject in _SINGULAR else _AGREEMENT_PLURAL if subject in _PLURAL else {}
        if verb in table:
            direction: Direction = "singular_to_plural" if subject in _SINGULAR else "plural_to_singular"
            bad = (*words[: i + 1], table[verb], *words[i + 2 :])
            return Variant(bad, "agreement", "subject_verb", direction, f"{verb}->{table[verb]}")
    for i, (det, noun) in enumerate(zip(words, words[1:])):
        if det in _DETERMINERS and noun not in _FUNCTION_WORDS and _PLAIN_WORD.fullmatch(noun):
            bad = (*words[:i], noun, det, *words[i + 2 :])
            return Variant(bad, "word_order", "determiner_noun_swap", "", "determiner_noun_swap")
    return None


def _take_turns(queues: Sequence[Iterable]) -> Iterator:
    """One item of each queue in turn, then again; a queue that runs out leaves its turns to the others."""
    iterators = [iter(q) for q in queues]
    while iterators:
        alive = []
        for it in iterators:
            for item in it:  # the next item, if any
                yield item
                alive.append(it)
                break
        iterators = alive


def _wordnet_variant(sentence: Sentence) -> Variant | None:
    return ungrammatical(sentence.words)


def story_variant(*, seed: int) -> Callable[[Sentence], Variant | None]:
    """The ungrammatical variant of a story sentence: one of :func:`.stories.violations`, the
    (type, subtype) drawn first (so that each is as likely as the others wherever several apply),
    then the change, by a hash of the sentence and ``seed``."""

    def variant(sentence: Sentence) -> Variant | None:
        if not isinstance(sentence, stories.StorySentence):
            return None
        options = stories.violations(sentence)
        if not options:
            return None
        rng = random.Random(zlib.crc32(f"{seed}\t{' '.join(sentence.words)}".encode("utf-8")))
        groups = sorted({(v.type, v.subtype) for v in options})
        group = rng.choice(groups)
        return Variant(*rng.choice([v for v in options if (v.type, v.subtype) == group]))

    return variant


def syntactic_pairs(
    sentences: Sequence[Sentence], vocabulary: set[str] | None, *, exclude: set[tuple[str, ...]], n: int, seed: int,
    same_phone_count: Callable[[SyntacticPair], bool] | None = None,
    variant: Callable[[Sentence], Variant | None] = _wordnet_variant,
) -> list[SyntacticPair]:
    """``n`` grammatical / ungrammatical pairs from sentences not in ``exclude`` (the training
    text): the types take turns, within a type its subtypes, and within a subtype its changes (is ->
    are, are -> is, ...); sentences with fewer words outside ``vocabulary`` come first. ``variant``
    makes a sentence's ungrammatical variant (:func:`ungrammatical` of its words; for the story world
    :func:`story_variant`). Candidates that fail ``same_phone_count`` (a homograph read differently
    once the words move) are skipped."""
    rng = random.Random(seed)
    by_change: dict[str, dict[str, dict[str, list[tuple[int, SyntacticPair]]]]] = {}
    for s in sentences:
        bad = None if s.words in exclude else variant(s)
        if bad is None:
            continue
        oov = sum(w not in vocabulary for w in s.words) if vocabulary is not None else 0
        pair = SyntacticPair(-1, s.words, bad.bad, bad.type, bad.subtype, bad.direction)
        by_change.setdefault(bad.type, {}).setdefault(bad.subtype, {}).setdefault(bad.change, []).append((oov, pair))
    check = same_phone_count or (lambda _: True)
    queues = []
    for type_ in sorted(by_change):
        subtypes = []
        for subtype in sorted(by_change[type_]):
            changes = []
            for change in sorted(by_change[type_][subtype]):
                candidates = by_change[type_][subtype][change]
                rng.shuffle(candidates)
                candidates.sort(key=lambda c: c[0])  # stable: still shuffled within equal OOV counts
                changes.append(pair for _, pair in candidates if check(pair))  # lazy: checks only what is taken
            subtypes.append(_take_turns(changes))
        queues.append(_take_turns(subtypes))
    chosen = list(islice(_take_turns(queues), n))
    if len(chosen) < n:
        raise ConfigError(f"--n-syntactic: only {len(chosen)} sentence pairs could be made, asked for {n}")
    return [replace(pair, id=i) for i, pair in enumerate(chosen)]


# --------------------------------------------------------------------------- synthesis


def _sentence_text(words: Sequence[str]) -> str:
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def same_phone_count(engine: Flite, pair: SyntacticPair, speakers: Sequence[Speaker]) -> bool:
    """Whether both sentences of a pair get as many phones (pauses aside) from every voice's front end."""

    def count(words: Sequence[str], spk: Speaker) -> int:
        return sum(p != SIL for p in engine.text_phones(_sentence_text(words), spk))

    return all(count(pair.good, spk) == count(pair.bad, spk) for spk in {s.voice: s for s in speakers}.values())


class PhoneSpeech:
    """Phone strings spoken by each voice, synthesized once: choosing a non-word measures the
    durations of the very audio that is then written."""

    def __init__(self, engine: Flite, speakers: Sequence[Speaker]) -> None:
        self.engine, self.speakers = engine, list(speakers)
        self._cache: dict[tuple[str, Pron], Synthesis] = {}

    def __call__(self, phones: Pron, spk: Speaker) -> Synthesis:
        key = (spk.id, tuple(phones))
        if key not in self._cache:
            self._cache[key] = self.engine.synthesize_phones([SIL, *phones, SIL], spk)
        return self._cache[key]

    def durations(self, phones: Pron) -> list[int]:
        """:data:`Durations` of a phone string: its number of samples for each voice."""
        return [self(phones, spk).num_samples for spk in self.speakers]


class Member(NamedTuple):
    """What gold.csv records of one written pair member."""

    num_samples: int
    n_phones: int


def _speak(
    engine: Flite, out_dir: Path, task: Task, filename: str, spk: Speaker, *, phones: Pron | None = None,
    words: Sequence[str] = (), label: str = "", speech: PhoneSpeech | None = None,
) -> Member:
    """Synthesize one member of a pair unless it is already complete: a phone string (named
    ``label`` in its alignment) or a sentence of ``words``."""
    audio, alignment = out_dir / task / f"{filename}.flac", out_dir / "alignments" / f"{filename}.json"
    if completed_num_samples(audio, alignment) is not None:
        record = json.loads(alignment.read_text())
        return Member(int(record["num_samples"]), sum(p != SIL for _, _, p in record["phones"]))
    if phones is not None:
        synthesis = speech(phones, spk) if speech is not None else engine.synthesize_phones([SIL, *phones, SIL], spk)
        # A phone string has no word structure: the item spans its non-silent phones.
        speech_phones = [p for p in synthesis.phones if p[2] != SIL]
        synthesis = Synthesis(synthesis.samples, ((speech_phones[0][0], speech_phones[-1][1], label),), synthesis.phones)
        text = label
    else:
        text = _sentence_text(words)
        synthesis = engine.synthesize(text, spk)
    save_utterance(synthesis, audio_path=audio, alignment_path=alignment, utt_id=filename, speaker=spk.id, text=text)
    return Member(synthesis.num_samples, sum(p != SIL for _, _, p in synthesis.phones))


def _filenames(task: Task, spk: Speaker, pair_id: int, rng: random.Random) -> tuple[str, str]:
    """(correct, incorrect) file names; which gets suffix 0 is random, so names hide the answer."""
    names = [f"{task[:3]}_{spk.id}_{pair_id:05d}_{k}" for k in (0, 1)]
    rng.shuffle(names)
    return names[0], names[1]


def _seconds(num_samples: int) -> float:
    # Whole samples are multiples of 62.5 us: 7 decimals keep them exact.
    return round(num_samples / SAMPLE_RATE, 7)


def _measures(good: Member, bad: Member, *, what: str) -> tuple[tuple, tuple]:
    """The MEASURES columns of the correct and the incorrect row of a pair."""
    if good.n_phones != bad.n_phones:
        raise AlignmentError(
            f"{what}: the correct member has {good.n_phones} phones, the incorrect one {bad.n_phones}; "
            "a pair must have as many in both (delete the pair folder and report this pair)"
        )
    diff = _seconds(good.num_samples - bad.num_samples)
    return (good.n_phones, _seconds(good.num_samples), diff), (bad.n_phones, _seconds(bad.num_samples), diff)


def write_lexical(
    engine: Flite, out_dir: Path, pairs: Sequence[LexicalPair], speakers: Sequence[Speaker], *, seed: int,
    speech: PhoneSpeech | None = None,
) -> list[float]:
    """Speak and list the lexical pairs; returns each (voice, id) pair's duration difference."""
    rng = random.Random(seed)
    rows, diffs = [], []
    for spk in speakers:
        for pair in pairs:
            good, bad = _filenames("lexical", spk, pair.id, rng)
            members = ((good, pair.phones, pair.word, 1), (bad, pair.nonword, respell(pair.nonword), 0))
            spoken = [
                _speak(engine, out_dir, "lexical", filename, spk, phones=phones, label=word, speech=speech)
                for filename, phones, word, _ in members
            ]
            measures = _measures(*spoken, what=f"lexical pair {pair.id} ({pair.word}), voice {spk.id}")
            for (filename, phones, word, correct), extra in zip(members, measures):
                rows.append((pair.id, filename, spk.id, pair.frequency, word, " ".join(phones), correct, *extra))
            diffs.append(measures[0][2])
    _write_csv(out_dir / "lexical" / "gold.csv", LEXICAL_HEADER, rows)
    return diffs


_WORKER_ENGINE: Flite | None = None


def _init_worker(lib_dir: str | None) -> None:
    global _WORKER_ENGINE
    _WORKER_ENGINE = Flite(lib_dir)


def _speak_sentence(job: tuple[Path, str, Speaker, tuple[str, ...]]) -> Member:
    """``_speak`` a sentence in a worker process."""
    assert _WORKER_ENGINE is not None, "worker not initialised"
    out_dir, filename, spk, words = job
    return _speak(_WORKER_ENGINE, out_dir, "syntactic", filename, spk, words=words)


def write_syntactic(
    engine: Flite, out_dir: Path, pairs: Sequence[SyntacticPair], speakers: Sequence[Speaker], *, seed: int,
    jobs: int = 1, flite_lib_dir: str | None = None,
) -> list[float]:
    """Speak (in ``jobs`` processes) and list the syntactic pairs; returns each (voice, id) pair's
    duration difference."""
    rng = random.Random(seed + 1)
    planned = []  # (pair, speaker, ((filename, words, correct), ...))
    for spk in speakers:
        for pair in pairs:
            good, bad = _filenames("syntactic", spk, pair.id, rng)
            planned.append((pair, spk, ((good, pair.good, 1), (bad, pair.bad, 0))))
    todo = [(out_dir, filename, spk, words) for _, spk, members in planned for filename, words, _ in members]
    if jobs == 1:
        spoken = [_speak(engine, out_dir, "syntactic", filename, spk, words=words) for _, filename, spk, words in todo]
    else:
        # fork, as synth-corpus: workers start at once, each with its own flite (flite keeps per-process state).
        with cf.ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("fork"), initializer=_init_worker, initargs=(flite_lib_dir,)
        ) as executor:
            spoken = list(executor.map(_speak_sentence, todo, chunksize=8))
    rows, diffs = [], []
    for k, (pair, spk, members) in enumerate(planned):
        what = f"syntactic pair {pair.id} ({' '.join(pair.good)}), voice {spk.id}"
        measures = _measures(spoken[2 * k], spoken[2 * k + 1], what=what)
        for (filename, _, correct), extra in zip(members, measures):
            rows.append((pair.id, filename, spk.id, pair.type, pair.subtype, correct, pair.direction, *extra))
        diffs.append(measures[0][2])
    _write_csv(out_dir / "syntactic" / "gold.csv", SYNTACTIC_HEADER, rows)
    return diffs


def _write_csv(path: Path, header: Sequence[str], rows: list[tuple]) -> None:
    with atomic_write(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def duration_balance(diffs: Sequence[float]) -> dict:
    """Summary of duration differences (correct minus incorrect) over (voice, id) pairs, for pairs.json."""
    return {
        "correct_shorter": sum(d < 0 for d in diffs),
        "incorrect_shorter": sum(d > 0 for d in diffs),
        "equal": sum(d == 0 for d in diffs),
        "mean_diff_s": round(sum(diffs) / len(diffs), 4),
        "mean_abs_diff_s": round(sum(map(abs, diffs)) / len(diffs), 4),
    }


# --------------------------------------------------------------------------- the command


def training_text(corpus_dir: Path) -> list[tuple[str, ...]]:
    """The training transcripts of a corpus made by ``spokenlm synth-corpus``."""
    path = corpus_dir / "transcripts" / "train.wrd"
    if not path.is_file():
        raise ConfigError(f"{path}: not found; --vocab-from must be a corpus folder made by 'spokenlm synth-corpus'")
    return [tuple(line.split()) for line in read_lines(path)]


def corpus_world(corpus_dir: Path) -> World | None:
    """The world a synth-corpus folder speaks (corpus.json ``world``; none written before the flag
    means wordnet), or None without a corpus.json."""
    path = corpus_dir / "corpus.json"
    if not path.is_file():
        return None
    try:
        world = json.loads(path.read_text()).get("world", "wordnet")
    except (OSError, json.JSONDecodeError, AttributeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: unreadable ({e}); is it a finished synth-corpus folder?") from None
    if world not in WORLDS:
        raise ConfigError(f"{path}: world {world!r} is not one of {', '.join(WORLDS)}; remake the corpus with 'spokenlm synth-corpus'")
    return world


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
    oov_fraction: float | None = None,
    seed: int = 0,
    vocab_from: str | Path | None = None,
    flite_lib_dir: str | None = None,
    jobs: int = 2,
    text: World | None = None,
) -> dict:
    """Synthesize the pair sets in ``out_dir``; returns the metadata written to pairs.json.

    ``text``: the world of the sentences and words (default: the world of ``vocab_from``, else
    wordnet); ``oov_fraction`` defaults to :data:`DEFAULT_OOV_FRACTION` of that world."""
    world, oov_fraction = _pairs_world(n_lexical=n_lexical, n_syntactic=n_syntactic, jobs=jobs, text=text,
                                       vocab_from=vocab_from, oov_fraction=oov_fraction)
    out_dir = Path(out_dir)
    engine = Flite(flite_lib_dir)
    every_sentence = load_sentences()
    source = _pairs_text(world, every_sentence=every_sentence, vocab_from=vocab_from, voices=voices)
    speakers = [speaker(v) for v in (source.voices or DEFAULT_SPEAKERS)]
    if len({s.id for s in speakers}) != len(speakers):
        raise ConfigError(f"--voices: {' '.join(source.voices or DEFAULT_SPEAKERS)} names a speaker twice")

    print("synth-pairs: pronouncing the WordNet vocabulary", file=sys.stderr, flush=True)
    speech = PhoneSpeech(engine, speakers)
    lexicon, lexical, variant = _lexical_pairs_of(world, engine=engine, every_sentence=every_sentence,
                                                  frequencies=source.frequencies, n=n_lexical,
                                                  oov_fraction=oov_fraction, seed=seed, speech=speech)
    syntactic = syntactic_pairs(
        source.sentences, set(source.frequencies) if source.train else None, exclude=set(source.train), n=n_syntactic,
        seed=seed, same_phone_count=lambda pair: same_phone_count(engine, pair, speakers), variant=variant,
    )
    print(f"synth-pairs: speaking {len(lexical)} lexical and {len(syntactic)} syntactic pairs "
          f"x {len(speakers)} voices", file=sys.stderr, flush=True)
    lexical_diffs = write_lexical(engine, out_dir, lexical, speakers, seed=seed, speech=speech)
    syntactic_diffs = write_syntactic(
        engine, out_dir, syntactic, speakers, seed=seed, jobs=jobs, flite_lib_dir=flite_lib_dir
    )
    for task in ("lexical", "syntactic"):
        manifest = out_dir / "manifests" / f"{task}.tsv"
        manifest_and_labels(out_dir / task, manifest, alignments=out_dir / "alignments", labels_dir=out_dir / "labels")
    metadata = _pairs_metadata(world=world, seed=seed, speakers=speakers, frequency_source=source.frequency_source,
                               lexicon=lexicon, lexical=lexical, lexical_diffs=lexical_diffs, syntactic=syntactic,
                               syntactic_diffs=syntactic_diffs)
    with atomic_write(out_dir / "pairs.json") as f:
        json.dump(metadata, f, indent=2)
        f.write("\n")
    return metadata


def _pairs_world(*, n_lexical: int, n_syntactic: int, jobs: int, text: World | None, vocab_from: str | Path | None,
                 oov_fraction: float | None) -> tuple[World, float]:
    """The world of the pairs and their share of out-of-vocabulary words, the options checked."""
    if n_lexical < 1 or n_syntactic < 1:
        raise ConfigError(f"--n-lexical / --n-syntactic: {n_lexical} / {n_syntactic}; both must be at least 1")
    if jobs < 1:
        raise ConfigError(f"--jobs: {jobs} must be at least 1")
    if text is not None and text not in WORLDS:
        raise ConfigError(f"--text: {text!r} is not one of {', '.join(WORLDS)}")
    spoken = corpus_world(Path(vocab_from)) if vocab_from is not None else None
    if text is not None and spoken is not None and text != spoken:
        raise ConfigError(
            f"--text {text}: {Path(vocab_from or '') / 'corpus.json'} says that corpus speaks {spoken}; "
            f"pass --text {spoken} or leave --text out"
        )
    world: World = text or spoken or "wordnet"
    oov_fraction = DEFAULT_OOV_FRACTION[world] if oov_fraction is None else oov_fraction
    if not 0 <= oov_fraction <= 1:
        raise ConfigError(f"--oov-fraction: {oov_fraction} must be between 0 and 1")
    return world, oov_fraction


class _PairsText(NamedTuple):
    """What the pairs are drawn from and measured against."""

    sentences: Sequence[Sentence]  # the syntactic pairs' candidates
    train: list[tuple[str, ...]]  # the training text (none without --vocab-from)
    frequency_source: str
    frequencies: Counter[str]  # word counts of the training text
    voices: Sequence[str] | None  # as given, else the test speakers of --vocab-from


def _pairs_text(world: World, *, every_sentence: list[Sentence], vocab_from: str | Path | None,
                voices: Sequence[str] | None) -> _PairsText:
    """The candidate sentences of ``world``, and the training text of ``vocab_from`` with its word counts."""
    # Never a pretraining sentence (nor, in the story world, one of the text-only corpus).
    sentences: Sequence[Sentence]
    if world == "wordnet":
        sentences = pool_sentences(every_sentence, "aligned")
    else:
        sentences = stories.pool_sentences("aligned", STORY_PAIR_SENTENCES)
    if vocab_from is not None:
        train = training_text(Path(vocab_from))
        frequency_source = f"training transcripts of {vocab_from}"
        voices = voices or corpus_test_speakers(Path(vocab_from))
    else:
        train = []
        frequency_source = "WordNet example sentences" if world == "wordnet" else (
            f"the first {STORY_PAIR_SENTENCES} sentences of the story world's aligned pool")
    # Without a corpus the whole sentence set stands in for the training text (for frequencies only).
    frequencies = Counter(w for words in (train or [s.words for s in sentences]) for w in words)
    return _PairsText(sentences, train, frequency_source, frequencies, voices)


def _lexical_pairs_of(
    world: World, *, engine: Flite, every_sentence: Sequence[Sentence], frequencies: Counter[str], n: int,
    oov_fraction: float, seed: int, speech: PhoneSpeech,
) -> tuple[Lexicon, list[LexicalPair], Callable[[Sentence], Variant | None]]:
    """The lexicon of ``world``, its lexical pairs, and how the world makes a sentence ungrammatical."""
    if world == "wordnet":
        lexicon = Lexicon(engine, every_sentence)
        lexical = lexical_pairs(
            lexicon, frequencies, n=n, oov_fraction=oov_fraction, seed=seed, durations=speech.durations
        )
        return lexicon, lexical, _wordnet_variant
    # A story word absent from WordNet (a name) is a real word too: no non-word may sound like it.
    lexicon = Lexicon(engine, every_sentence, extra_words=stories.vocabulary())
    lexical = lexical_pairs(
        lexicon, frequencies, n=n, oov_fraction=oov_fraction, seed=seed, durations=speech.durations,
        words=set(stories.content_words()), min_phones=STORY_MIN_PHONES, per_word=STORY_NONWORDS_PER_WORD,
    )
    return lexicon, lexical, story_variant(seed=seed)


def _pairs_metadata(
    *, world: World, seed: int, speakers: Sequence[Speaker], frequency_source: str, lexicon: Lexicon,
    lexical: Sequence[LexicalPair], lexical_diffs: Sequence[float], syntactic: Sequence[SyntacticPair],
    syntactic_diffs: Sequence[float],
) -> dict:
    """The contents of pairs.json."""
    return {
        "engine": "flite",
        # Absent: wordnet (pair sets made before the story world, tests/data/pairs among them).
        **({"world": world} if world != "wordnet" else {}),
        "seed": seed,
        "voices": [s.id for s in speakers],
        "frequency_source": frequency_source,
        "lexical": {
            "pairs": len(lexical),
            "in_vocabulary": sum(p.frequency > 0 for p in lexical),
            **({"test_words": len({p.word for p in lexical}),
                "test_word_counts": _count_summary([p.frequency for p in {p.word: p for p in lexical}.values()])}
               if world != "wordnet" else {}),
            "vocabulary_words": len(lexicon.prons),
            "duration": duration_balance(lexical_diffs),
        },
        "syntactic": {
            "pairs": len(syntactic),
            "types": dict(Counter(f"{p.type}/{p.subtype}" for p in syntactic)),
            "directions": dict(Counter(p.direction for p in syntactic if p.direction)),
            "duration": duration_balance(syntactic_diffs),
        },
    }


def _count_summary(counts: Sequence[int]) -> dict:
    """Min / median / max of the test words' counts in the training text."""
    ordered = sorted(counts)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {"min": ordered[0], "median": median, "max": ordered[-1]}


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
        "--oov-fraction", type=float, default=None, metavar="F",
        help="share of lexical pairs whose word is absent from the training text (default: 0.2 for wordnet, "
        "0 for stories)",
    )
    parser.add_argument(
        "--text", choices=WORLDS, default=None,
        help="world of the words and sentences: wordnet or stories (default: the one --vocab-from speaks, "
        "else wordnet)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the word, non-word and sentence choice (default: 0)")
    parser.add_argument(
        "--vocab-from", metavar="CORPUS_DIR",
        help="synth-corpus folder: words and frequencies from its training transcripts, syntactic pairs from "
        "sentences outside them, voices from its test speakers",
    )
    parser.add_argument("--flite-lib-dir", metavar="DIR", help="folder holding libflite.so.1 and the voices")
    parser.add_argument(
        "--jobs", type=int, default=2, metavar="N",
        help="processes speaking the sentences (default: 2; the output does not depend on it)",
    )


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
        jobs=args.jobs,
        text=args.text,
    )
    print(
        f"wrote {args.out}: {meta['lexical']['pairs']} lexical pairs ({meta['lexical']['in_vocabulary']} in vocabulary), "
        f"{meta['syntactic']['pairs']} syntactic pairs, voices {' '.join(meta['voices'])}"
    )
    return 0
