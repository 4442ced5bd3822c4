"""The spoken story world (synth/stories.py): a deterministic, grammatical, prefix-stable stream of
sentences, disjoint pools, phone-matched minimal pairs, and the ``--text stories`` flag of the corpus,
pair and pretraining commands."""

from __future__ import annotations

import csv
import json
import random
import re
from collections import Counter
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from spokenlm_plugin import cli
from spokenlm_plugin.core.phones import SIL
from spokenlm_plugin.synth import corpus as corpus_mod
from spokenlm_plugin.synth import stories
from spokenlm_plugin.synth.corpus import SPLITS, build_corpus
from spokenlm_plugin.synth.espeak import HELDOUT_ESPEAK, Espeak
from spokenlm_plugin.synth.flite import Flite, Synthesis
from spokenlm_plugin.synth.lexicon import SUBSTITUTION_CLASSES, Lexicon
from spokenlm_plugin.synth.minimal_pairs import (
    STORY_MIN_PHONES, STORY_NONWORDS_PER_WORD, lexical_pairs, same_phone_count, story_variant,
    syntactic_pairs,
)
from spokenlm_plugin.synth.pretrain_corpus import build_pretrain_corpus
from spokenlm_plugin.synth.speakers import aligned_speakers, speakers_for
from spokenlm_plugin.synth.text import normalize_example, sentence_pool
from spokenlm_plugin.synth.utterance import save_utterance
from tests.conftest import fails_in_one_line

# --------------------------------------------------------------------------- an independent grammar check

NOUNS = stories.CHARACTERS + stories.THINGS + stories.PLACES
SINGULAR_NOUNS = {n.singular for n in NOUNS}
PLURAL_NOUNS = {n.plural for n in NOUNS}
VERBS = stories.TRANSITIVE + stories.INTRANSITIVE
THIRD = {v.third for v in VERBS} | {"is", "has"}
BASE = {v.base for v in VERBS} | {"are", "have"}
PAST = {v.past for v in VERBS} | {"was", "were", "had"}
SINGULAR_DETS, PLURAL_DETS = {"a", "an", "this", "that"}, {"these", "those", "two", "three", "some", "many"}
ANY_DETS = {"the", "his", "its", "their"}  # "her" is also an object pronoun: left out of the checks
ADJECTIVES = set(stories.ADJECTIVES)
NAMES = {n for n, _ in stories.NAMES}


def grammar_errors(words: tuple[str, ...]) -> list[str]:
    """What is wrong with a sentence, by word classes alone (not by the generator's parse)."""
    errors = []
    dets = SINGULAR_DETS | PLURAL_DETS | ANY_DETS
    for i, w in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else None
        if w in dets:
            noun = words[i + 2] if nxt in ADJECTIVES and i + 2 < len(words) else nxt
            if noun not in SINGULAR_NOUNS | PLURAL_NOUNS:
                errors.append("word_order")
            elif (w in SINGULAR_DETS and noun not in SINGULAR_NOUNS) or (w in PLURAL_DETS and noun not in PLURAL_NOUNS):
                errors.append("determiner_noun")
        if w in ADJECTIVES and (i == 0 or words[i - 1] not in dets | {"her", "very", "is", "are", "was", "were"}):
            errors.append("word_order")
        if w in SINGULAR_NOUNS | PLURAL_NOUNS and (i == 0 or words[i - 1] not in dets | {"her"} | ADJECTIVES):
            errors.append("word_order")  # no bare nouns in this grammar
    verb = next((i for i, w in enumerate(words) if w in THIRD | BASE | PAST), None)
    if verb is None or verb == 0:
        return errors + ["no verb"]
    subject = words[verb - 1]
    if subject in {"he", "she", "it"} | NAMES | SINGULAR_NOUNS:
        plural = False
    elif subject in {"they"} | PLURAL_NOUNS:
        plural = True
    else:
        return errors + ["word_order"]
    form = words[verb]
    if (form in THIRD and plural) or (form in BASE and not plural) or (form == "was" and plural) or (form == "were" and not plural):
        errors.append("subject_verb")
    return errors


@pytest.fixture(scope="module")
def world() -> list[stories.StorySentence]:
    return list(islice(stories.world(), 20000))


# --------------------------------------------------------------------------- the generator


def test_world_is_deterministic_and_prefix_stable(world):
    again = list(islice(stories.world(), 500))
    assert again == world[:500]
    other = list(islice(stories.world(seed=1), 500))
    assert [s.words for s in other] != [s.words for s in world[:500]]
    assert [s.index for s in world] == list(range(len(world)))
    assert len({s.words for s in world}) == len(world)  # distinct sentences
    # A split's sentences are a prefix of the same stream whatever the hours.
    small = stories.aligned_splits({"train": 60, "valid": 10, "test": 10}, seed=3, valid_fraction=0.1, test_fraction=0.1)
    large = stories.aligned_splits({"train": 600, "valid": 90, "test": 90}, seed=3, valid_fraction=0.1, test_fraction=0.1)
    for split in SPLITS:
        assert len(small[split]) == stories.sentences_for({"train": 60, "valid": 10, "test": 10}[split])
        assert large[split][: len(small[split])] == small[split]


def test_sentences_are_stories_of_grammatical_sentences(world):
    vocabulary = set(stories.vocabulary())
    per_story = Counter(s.story for s in world)
    assert max(per_story.values()) <= 5 and np.mean(list(per_story.values())) > 2.5
    for s in world:
        assert set(s.words) <= vocabulary
        # As text.py normalises WordNet sentences: plain words, punctuation only at a word's end, a
        # capital first letter and a full stop; the synthesizer reads exactly the transcript.
        tokens = s.text.split()
        assert len(tokens) == len(s.words) and s.text[0].isupper() and s.text.endswith(".")
        for token, word in zip(tokens, s.words):
            assert re.fullmatch(r"[A-Za-z]+[,.]?", token) and token.rstrip(",.").lower() == word
        if len(s.words) >= 6 and not s.text.startswith("A "):  # (text.py reads a lone capital as an acronym)
            assert normalize_example(s.text) == (s.text, s.words)
        assert grammar_errors(s.words) == [], s.text
    # Every word of the lexicon is said; tense and number vary.
    assert {w for s in world for w in s.words} == vocabulary
    verbs = Counter(s.parse.verb.tense for s in world)
    assert 0.3 < verbs["present"] / len(world) < 0.7
    assert 0.15 < np.mean([s.parse.plural_subject for s in world]) < 0.5
    # Pronouns refer back: a story's first sentence never starts with one, later ones often do (the
    # world skips repeated sentences, so see the stories themselves).
    told = list(islice(stories.stories(stories.WORLD_SEED), 2000))
    pronouns = {"he", "she", "it", "they"}
    assert 2 <= min(map(len, told)) and max(map(len, told)) == 5
    assert not [story[0] for story in told if story[0][0][0] in pronouns]
    later = [sentence for story in told for sentence in story[1:]]
    assert sum(words[0] in pronouns or words[1] in pronouns for words, _, _ in later) > 0.3 * len(later)


def test_word_frequencies_are_zipfian(world):
    counts = Counter(w for s in world for w in s.words if w in {n.singular for n in stories.THINGS})
    ranked = [counts[n.singular] for n in stories.THINGS]
    # Each category draws by rank: frequency falls with rank, roughly as 1 / rank.
    assert ranked[0] > ranked[4] > ranked[-1] > 0
    slope = np.polyfit(np.log(np.arange(1, len(ranked) + 1)), np.log(ranked), 1)[0]
    assert -1.4 < slope < -0.6


def test_suffixes_match_the_synthesizers_lexicon():
    """-s endings add as many phones as stories.suffix_phones says (the pairs rely on it)."""
    engine = Flite()
    for noun in NOUNS:
        assert len(engine.pronounce(noun.plural)) - len(engine.pronounce(noun.singular)) == stories.suffix_phones(
            noun.singular, noun.plural), noun
    for verb in VERBS:
        assert len(engine.pronounce(verb.third)) - len(engine.pronounce(verb.base)) == stories.suffix_phones(
            verb.base, verb.third), verb
    # The checks above rely on word classes not sharing a form.
    assert not (SINGULAR_NOUNS | PLURAL_NOUNS) & (THIRD | BASE | PAST | ADJECTIVES)


def _covering(sentences, words):
    """A few sentences holding every word (greedy)."""
    left, chosen = set(words), []
    sets = [(s, set(s.words)) for s in sentences]
    while left:
        best, best_words = max(sets, key=lambda item: len(left & item[1]))
        chosen.append(best)
        left -= best_words
    return chosen


def test_every_word_is_spoken_as_written_by_both_synthesizers(world):
    """flite and espeak-ng read each story word as one word of the transcript (the corpus' alignments)."""
    cover = _covering(world, stories.vocabulary())
    flite, espeak = Flite(), Espeak()
    speakers = aligned_speakers()
    for i, s in enumerate(cover):
        for synthesis in (flite.synthesize(s.text, speakers[i % len(speakers)]),
                          espeak.synthesize(s.text, HELDOUT_ESPEAK[i % len(HELDOUT_ESPEAK)])):
            assert [w for _, _, w in synthesis.words] == list(s.words), s.text


# --------------------------------------------------------------------------- pools


def test_pools_partition_the_world_and_stay_disjoint(world):
    pools = Counter(stories.story_pool(s) for s in world)
    assert set(pools) == {"aligned", "pretrain", "text"}
    assert 0.2 < pools["pretrain"] / len(world) < 0.3 and 0.2 < pools["text"] / len(world) < 0.3
    for s in world:  # the pretraining pool is text.py's, by the same rule
        assert (stories.story_pool(s) == "pretrain") == (sentence_pool(s) == "pretrain")
    splits = stories.aligned_splits({"train": 300, "valid": 40, "test": 40}, seed=0, valid_fraction=0.1, test_fraction=0.1)
    spoken = {s.words for split in SPLITS for s in splits[split]}
    text_only = {s.words for s in stories.text_only_sentences(800)}
    pretrain = {s.words for s in stories.pool_sentences("pretrain", 800)}
    assert not spoken & text_only and not spoken & pretrain and not text_only & pretrain
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not {s.words for s in splits[a]} & {s.words for s in splits[b]}
    assert all(stories.story_pool(s) == "aligned" for split in SPLITS for s in splits[split])
    # The corpus' seed cuts the splits differently.
    other = stories.aligned_splits({"train": 300, "valid": 40, "test": 40}, seed=1, valid_fraction=0.1, test_fraction=0.1)
    assert [s.index for s in other["test"]] != [s.index for s in splits["test"]]


# --------------------------------------------------------------------------- minimal pairs


def test_violations_break_the_grammar_once_with_equal_phone_counts(world):
    engine = Flite()
    seen: Counter = Counter()
    for s in world[:3000]:
        for v in stories.violations(s):
            seen[(v.type, v.subtype, v.direction, v.change)] += 1
            errors = grammar_errors(v.bad)
            expected = {"subject_verb": "subject_verb", "determiner_noun": "determiner_noun"}.get(v.subtype, "word_order")
            assert expected in errors, (s.words, v)
            if v.type == "agreement":
                assert errors == [expected], (s.words, v)  # one error only
                assert sum(len(engine.pronounce(w)) for w in v.bad) == sum(len(engine.pronounce(w)) for w in s.words)
            else:
                assert sorted(v.bad) == sorted(s.words)
    changes = {k[3] for k in seen}
    assert changes == {"is->are", "are->is", "has->have", "have->has", "verb-s", "verb+s", "this->these",
                       "these->this", "that->those", "those->that", "a+plural", "numeral+singular",
                       "determiner_noun_swap", "adjective_noun_swap"}
    directions = Counter(k[2] for k in seen for _ in range(seen[k]) if k[0] == "agreement")
    assert set(directions) == {"singular_to_plural", "plural_to_singular"}


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon(Flite(), extra_words=stories.vocabulary())


def _intrinsic(pron):
    """One voice whose phones last 80 ms each: durations that depend on the phone count only."""
    return [80 * 16 * len(pron)]


def test_story_pairs(world, lexicon):
    engine = lexicon.engine
    train = [s.words for s in world[:1500]]
    frequencies = Counter(w for words in train for w in words)
    pairs = lexical_pairs(lexicon, frequencies, n=120, oov_fraction=0.0, seed=0, durations=_intrinsic,
                          words=set(stories.content_words()), min_phones=STORY_MIN_PHONES, per_word=STORY_NONWORDS_PER_WORD)
    per_word = Counter(p.word for p in pairs)
    assert len(pairs) == 120 and max(per_word.values()) <= STORY_NONWORDS_PER_WORD
    assert set(per_word) <= set(stories.content_words())
    # The most frequent usable words come first: every test word is frequent in the text.
    assert min(frequencies[w] for w in per_word) >= 10
    for p in pairs:
        assert len(p.phones) == len(p.nonword) >= STORY_MIN_PHONES and p.phones == engine.pronounce(p.word)
        diff = [(a, b) for a, b in zip(p.phones, p.nonword) if a != b]
        assert len(diff) == 1 and any(a in c and b in c for (a, b) in diff for c in SUBSTITUTION_CLASSES)
        # Not a word of the lexicon nor of the story world, and legal by the WordNet-learnt phonotactics.
        assert not lexicon.is_word(p.nonword) and lexicon.phonotactics.legal(p.nonword)
        assert p.nonword not in {engine.pronounce(w) for w in stories.vocabulary()}
    assert len({(p.word, p.nonword) for p in pairs}) == len(pairs)

    voices = [aligned_speakers()[0], aligned_speakers()[-1]]
    candidates = stories.pool_sentences("aligned", 3000)
    syntactic = syntactic_pairs(candidates, set(frequencies), exclude=set(train), n=80, seed=0,
                                same_phone_count=lambda p: same_phone_count(engine, p, voices),
                                variant=story_variant(seed=0))
    kinds = Counter((p.type, p.subtype) for p in syntactic)
    assert kinds == {("agreement", "subject_verb"): 20, ("agreement", "determiner_noun"): 20,
                     ("word_order", "determiner_noun_swap"): 20, ("word_order", "adjective_noun_swap"): 20}
    for subtype in ("subject_verb", "determiner_noun"):
        directions = Counter(p.direction for p in syntactic if p.subtype == subtype)
        assert directions["singular_to_plural"] == directions["plural_to_singular"] == 10
    for p in syntactic:
        assert p.good not in set(train)
        for spk in voices:  # a length-only scorer ties on every pair
            counts = [sum(ph != SIL for ph in engine.text_phones(" ".join(w).capitalize() + ".", spk)) for w in (p.good, p.bad)]
            assert counts[0] == counts[1], p
    # Deterministic by seed.
    again = syntactic_pairs(candidates, set(frequencies), exclude=set(train), n=80, seed=0,
                            variant=story_variant(seed=0))
    assert [(p.good, p.bad) for p in again] == [(p.good, p.bad) for p in syntactic]


# --------------------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def story_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stories") / "c"
    build_corpus(out, hours=0.006, jobs=1, voices=["slt", "rms", "awb"], speakers_per_voice=2, seed=3,
                 valid_fraction=0.2, test_fraction=0.2, text="stories", text_only_sentences=300)
    return out


def test_story_corpus_records_its_world(story_corpus):
    meta = json.loads((story_corpus / "corpus.json").read_text())
    assert meta["world"] == "stories" and meta["world_seed"] == stories.WORLD_SEED
    assert meta["text_only"] == {"file": "text_only.txt", "sentences": 300, "pool": "text"}
    by_text = {s.text: s for s in islice(stories.world(), 20000)}
    spoken: dict[str, set] = {}
    for split in SPLITS:
        lines = (story_corpus / "transcripts" / f"{split}.wrd").read_text().splitlines()
        spoken[split] = {tuple(line.split()) for line in lines}
        assert lines and len(lines) == meta["splits"][split]["utterances"]
    for ali in (story_corpus / "alignments").glob("*.json"):
        record = json.loads(ali.read_text())
        sentence = by_text[record["text"]]
        assert int(ali.stem.rsplit("_", 1)[1]) == sentence.index and stories.story_pool(sentence) == "aligned"
    assert not spoken["train"] & (spoken["valid"] | spoken["test"]) and not spoken["valid"] & spoken["test"]
    text_only = {tuple(line.split()) for line in (story_corpus / "text_only.txt").read_text().splitlines()}
    assert len(text_only) == 300 and not text_only & set().union(*spoken.values())


def test_wordnet_corpus_records_its_world(tmp_path):
    # The committed corpus predates the flag (no key: wordnet); a new one says so.
    meta = build_corpus(tmp_path / "c", hours=0.002, jobs=1, voices=["slt", "rms", "awb"], speakers_per_voice=2)
    assert meta["world"] == "wordnet" and "text_only" not in meta
    assert not (tmp_path / "c" / "text_only.txt").exists()


def test_reuse_only_an_utterance_of_the_same_text(tmp_path):
    """An utterance id names a sentence index; another world's sentence under that id is redone."""
    spk = speakers_for(["slt"], per_voice=1)[0]
    sentence = next(stories.world())
    job = next(corpus_mod.planned_jobs(tmp_path, "train", [spk], [sentence]))
    fake = Synthesis(np.zeros(1600, dtype=np.int16), ((0.0, 0.1, "x"),), ((0.0, 0.1, SIL),))
    save_utterance(fake, audio_path=job.audio_path, alignment_path=job.alignment_path, utt_id=job.utt_id,
                   speaker=spk.id, text="Another sentence.")
    assert corpus_mod._finished(job) is None
    save_utterance(fake, audio_path=job.audio_path, alignment_path=job.alignment_path, utt_id=job.utt_id,
                   speaker=spk.id, text=sentence.text)
    assert corpus_mod._finished(job) == 1600


def test_story_pairs_command(story_corpus, tmp_path, capsys):
    out = tmp_path / "p"
    argv = ["synth-pairs", "--out", str(out), "--vocab-from", str(story_corpus), "--n-lexical", "6",
            "--n-syntactic", "4", "--voices", "slt", "--jobs", "1"]
    assert cli.main(argv) == 0
    meta = json.loads((out / "pairs.json").read_text())
    assert meta["world"] == "stories" and meta["lexical"]["in_vocabulary"] == 6
    assert set(meta["syntactic"]["types"]) == {"agreement/subject_verb", "agreement/determiner_noun",
                                               "word_order/determiner_noun_swap", "word_order/adjective_noun_swap"}
    with open(out / "syntactic" / "gold.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_pair: dict[str, list[dict]] = {}
    for r in rows:
        by_pair.setdefault(r["id"], []).append(r)
    assert len(by_pair) == 4 and all(len({r["n_phones"] for r in pair}) == 1 for pair in by_pair.values())
    capsys.readouterr()
    fails_in_one_line([*argv[:5], "--text", "wordnet"], capsys, "says that corpus speaks stories", "--text")


def test_text_only_needs_the_story_world(tmp_path, capsys):
    fails_in_one_line(["synth-corpus", "--out", str(tmp_path / "c"), "--hours", "0.01", "--text-only-sentences", "5"],
                      capsys, "--text-only-sentences: only with --text stories")
    assert not (tmp_path / "c").exists()


def test_story_pretraining_corpus(tmp_path, capsys):
    meta = build_pretrain_corpus(tmp_path / "pre", hours=0.004, jobs=1, espeak_voices=False, text="stories")
    assert meta["world"] == "stories"
    by_index = {s.index: s for s in islice(stories.world(), 20000)}
    for split in meta["splits"].values():
        assert split["sentence_indices"]
        assert all(stories.story_pool(by_index[i]) == "pretrain" for i in split["sentence_indices"])
    assert not set(meta["splits"]["train"]["sentence_indices"]) & set(meta["splits"]["valid"]["sentence_indices"])
    # The same folder cannot switch worlds: its audio files are named by sentence index.
    fails_in_one_line(["synth-pretrain-corpus", "--out", str(tmp_path / "pre"), "--hours", "0.004", "--no-espeak"],
                      capsys, "holds a stories pretraining corpus")


def test_random_seeds_do_not_leak_into_the_world():
    """The world does not depend on Python's global random state (only on its seed)."""
    random.seed(1)
    a = [s.words for s in islice(stories.world(), 50)]
    random.seed(2)
    assert [s.words for s in islice(stories.world(), 50)] == a


def test_joint_lm_text_corpus_of_a_story_corpus_is_its_text_only_pool(tmp_path: Path) -> None:
    """sutlm-data without --text-corpus reads a story corpus's text_only.txt (same world), not WordNet."""
    from spokenlm_plugin.sutlm.data import text_corpus

    (tmp_path / "text_only.txt").write_text("the dog runs to the park\nshe sees a red ball\n")
    assert text_corpus(corpus=tmp_path, text_file=None, max_sentences=None, seed=0) == [
        ["the", "dog", "runs", "to", "the", "park"], ["she", "sees", "a", "red", "ball"]]
