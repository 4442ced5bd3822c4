"""Spoken minimal pairs: gold.csv in the sLM21 layout, real non-words, audio that says the phones."""

from __future__ import annotations

import csv
import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

from spokenlm_plugin import cli
from spokenlm_plugin.core.errors import ConfigError
from spokenlm_plugin.core.io import read_manifest
from spokenlm_plugin.core.phones import SAMPLE_RATE, SIL
from spokenlm_plugin.synth.flite import Flite
from spokenlm_plugin.synth.lexicon import (
    DIPHTHONGS, INTRINSIC_MS, LAX_VOWELS, LONG_VOWELS, MAX_DURATION_GAP_MS, SUBSTITUTION_CLASSES, VOWELS, Lexicon,
    Phonotactics, substitutes,
)
from spokenlm_plugin.synth.minimal_pairs import (
    _AGREEMENT, LEXICAL_HEADER, SYNTACTIC_HEADER, SyntacticPair, lexical_pairs, same_phone_count, shorter_wins,
    syntactic_pairs, ungrammatical,
)
from spokenlm_plugin.synth.speakers import aligned_speakers
from spokenlm_plugin.synth.text import Sentence, load_sentences, pool_sentences, sentence_pool
from spokenlm_plugin.ulm.discrimination import lexical_accuracy, syntactic_accuracy
from tests.conftest import CORPUS

PAIRS = CORPUS.parent / "pairs"


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon(Flite())


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pairs") / "p"
    argv = ["synth-pairs", "--out", str(out), "--vocab-from", str(CORPUS), "--n-lexical", "12",
            "--n-syntactic", "6", "--voices", "slt", "rms-c", "--seed", "5"]
    assert cli.main(argv) == 0
    return out


def read_gold(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def check_gold(folder: Path, task: str, header: tuple[str, ...]) -> list[dict]:
    fields, rows = read_gold(folder / task / "gold.csv")
    assert tuple(fields) == header
    by_pair: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        by_pair.setdefault((row["voice"], row["id"]), []).append(row["correct"])
        assert (folder / task / f"{row['filename']}.flac").is_file()
    assert all(sorted(v) == ["0", "1"] for v in by_pair.values()), "each (voice, id) needs one 1 and one 0"
    assert len({r["filename"] for r in rows}) == len(rows)
    # Every audio file is in gold.csv and in the manifest, and nothing else is.
    manifest = read_manifest(folder / "manifests" / f"{task}.tsv")
    assert sorted(manifest.utt_ids) == sorted(r["filename"] for r in rows)
    assert sorted(p.stem for p in (folder / task).glob("*.flac")) == sorted(manifest.utt_ids)
    return rows


def test_gold_files_well_formed(pairs):
    lexical = check_gold(pairs, "lexical", LEXICAL_HEADER)
    syntactic = check_gold(pairs, "syntactic", SYNTACTIC_HEADER)
    assert len(lexical) == 12 * 2 * 2 and len(syntactic) == 6 * 2 * 2
    assert {r["voice"] for r in lexical} == {"slt-a", "rms-c"}
    # The word / sentence of a pair is the same for every voice.
    for rows in (lexical, syntactic):
        by_id: dict[tuple[str, str], set] = {}
        for r in rows:
            same = tuple(v for k, v in r.items() if k not in ("filename", "voice", "duration", "duration_diff"))
            by_id.setdefault((r["id"], r["correct"]), set()).add(same)
        assert all(len(v) == 1 for v in by_id.values())
    # File names do not give the answer away: suffix _0 is the correct member about half the time.
    first = [r["filename"].endswith("_0") for r in lexical + syntactic if r["correct"] == "1"]
    assert 0 < sum(first) < len(first)


def test_lexical_pairs_are_words_and_legal_nonwords(pairs, lexicon):
    _, rows = read_gold(pairs / "lexical" / "gold.csv")
    train_words = Counter(w for line in (CORPUS / "transcripts" / "train.wrd").read_text().splitlines() for w in line.split())
    corpus_prons = {lexicon.engine.pronounce(w) for w in train_words}
    for (voice, pair_id) in {(r["voice"], r["id"]) for r in rows}:
        word, nonword = (next(r for r in rows if (r["voice"], r["id"], r["correct"]) == (voice, pair_id, c)) for c in "10")
        w, n = tuple(word["phones"].split()), tuple(nonword["phones"].split())
        assert w == lexicon.engine.pronounce(word["word"])
        assert int(word["frequency"]) == train_words[word["word"]] == int(nonword["frequency"])
        # One phone differs, within its class and by a phone of similar intrinsic duration.
        diff = [(a, b) for a, b in zip(w, n) if a != b]
        assert len(w) == len(n) and len(diff) == 1
        (a, b), = diff
        assert any(a in c and b in c for c in SUBSTITUTION_CLASSES)
        assert abs(INTRINSIC_MS[a] - INTRINSIC_MS[b]) <= MAX_DURATION_GAP_MS
        # The non-word is no real word (of the WordNet vocabulary, nor of the corpus text) and is legal.
        assert n not in lexicon.real and n not in corpus_prons
        assert lexicon.phonotactics.legal(n) and lexicon.phonotactics.legal(w)
    # Most words occur in the training text.
    words = {r["word"]: int(r["frequency"]) for r in rows if r["correct"] == "1"}
    assert sum(f > 0 for f in words.values()) == round(0.8 * 12)


def test_pair_audio_says_the_phones(pairs):
    """Each lexical file's alignment is its gold phones between silences (synthesized from them),
    and each syntactic file reads its sentence."""
    _, rows = read_gold(pairs / "lexical" / "gold.csv")
    for r in rows:
        ali = json.loads((pairs / "alignments" / f"{r['filename']}.json").read_text())
        assert [p for _, _, p in ali["phones"]] == [SIL, *r["phones"].split(), SIL]
        assert ali["speaker"] == r["voice"]
    _, rows = read_gold(pairs / "syntactic" / "gold.csv")
    by_pair: dict[tuple[str, str], dict[str, object]] = {}
    for r in rows:
        ali = json.loads((pairs / "alignments" / f"{r['filename']}.json").read_text())
        by_pair.setdefault((r["voice"], r["id"]), {"type": r["type"]})[r["correct"]] = tuple(w for _, _, w in ali["words"])
    for pair in by_pair.values():
        good, bad = pair["1"], pair["0"]
        assert ungrammatical(good).bad == bad
        if pair["type"] == "word_order":  # the same words, two of them swapped
            assert sorted(good) == sorted(bad) and sum(a != b for a, b in zip(good, bad)) == 2
        else:  # one verb form changed
            assert len(good) == len(bad) and sum(a != b for a, b in zip(good, bad)) == 1


def test_syntactic_sentences_are_not_training_sentences(pairs):
    train = {tuple(line.split()) for line in (CORPUS / "transcripts" / "train.wrd").read_text().splitlines()}
    for path in (pairs / "alignments").glob("syn_*.json"):
        assert tuple(w for _, _, w in json.loads(path.read_text())["words"]) not in train


def _members(folder: Path, task: str) -> dict[tuple[str, str], dict[str, dict]]:
    """(voice, id) -> {"1": row, "0": row}, each row with its alignment's non-pause phones, words and
    speaker, and its audio's length."""
    _, rows = read_gold(folder / task / "gold.csv")
    pairs: dict[tuple[str, str], dict[str, dict]] = {}
    for r in rows:
        ali = json.loads((folder / "alignments" / f"{r['filename']}.json").read_text())
        info = sf.info(str(folder / task / f"{r['filename']}.flac"))
        r = {**r, "speech": [p for _, _, p in ali["phones"] if p != SIL], "seconds": info.frames / info.samplerate,
             "words": tuple(w for _, _, w in ali["words"]), "speaker": ali["speaker"]}
        pairs.setdefault((r["voice"], r["id"]), {})[r["correct"]] = r
    return pairs


@pytest.mark.parametrize("task", ["lexical", "syntactic"])
def test_phone_counts_match_within_every_pair(pairs, task):
    members = _members(pairs, task)
    for pair in members.values():
        good, bad = pair["1"], pair["0"]
        assert len(good["speech"]) == len(bad["speech"]) == int(good["n_phones"]) == int(bad["n_phones"])
    # So a scorer that sees only the phone count ties on every pair.
    scores = {r["filename"]: -float(r["n_phones"]) for pair in members.values() for r in pair.values()}
    accuracy = lexical_accuracy if task == "lexical" else syntactic_accuracy
    assert accuracy(pairs / task / "gold.csv", scores).all == 0.5


@pytest.mark.parametrize("task", ["lexical", "syntactic"])
def test_duration_columns_match_the_audio(pairs, task):
    for pair in _members(pairs, task).values():
        good, bad = pair["1"], pair["0"]
        for r in (good, bad):
            assert float(r["duration"]) == pytest.approx(r["seconds"], abs=1e-7)
            assert float(r["duration_diff"]) == pytest.approx(good["seconds"] - bad["seconds"], abs=1e-6)


def test_agreement_violations_go_both_ways(pairs):
    members = _members(pairs, "syntactic")
    directions = Counter(p["1"]["direction"] for p in members.values() if p["1"]["type"] == "agreement")
    assert set(directions) == {"singular_to_plural", "plural_to_singular"}
    assert all(p["1"]["direction"] == "" for p in members.values() if p["1"]["type"] == "word_order")
    meta = json.loads((pairs / "pairs.json").read_text())
    assert meta["syntactic"]["directions"] == {k: v // 2 for k, v in directions.items()}  # counted once per id


def test_pairs_use_only_aligned_sentences_and_speakers(pairs):
    """Pairs never use a pretraining sentence nor a pretraining speaker (see synth/text.py, speakers.py)."""
    allowed = {s.id for s in aligned_speakers()}
    for task in ("lexical", "syntactic"):
        for pair in _members(pairs, task).values():
            assert {r["voice"] for r in pair.values()} | {r["speaker"] for r in pair.values()} <= allowed
    for pair in _members(pairs, "syntactic").values():
        assert sentence_pool(Sentence(0, "", pair["1"]["words"])) == "aligned"


@pytest.mark.parametrize(
    "words, expected",
    [
        ("he is soft on his children", ("he are soft on his children", "agreement", "subject_verb", "singular_to_plural")),
        ("they have eaten all the apples", ("they has eaten all the apples", "agreement", "subject_verb", "plural_to_singular")),
        ("i know it is true", ("i know it are true", "agreement", "subject_verb", "singular_to_plural")),
        ("when you are tired rest", ("when you is tired rest", "agreement", "subject_verb", "plural_to_singular")),
        # was / were and does / do differ by a phone: no agreement pair; a determiner swap instead.
        ("he was soft on his children", ("he was soft on children his", "word_order", "determiner_noun_swap", "")),
        ("he does not know", None),
        # "you" after a preposition is an object.
        ("my account with you is now all square",
         ("account my with you is now all square", "word_order", "determiner_noun_swap", "")),
        ("she got a dog from the shelter", ("she got dog a from the shelter", "word_order", "determiner_noun_swap", "")),
        ("run to the hills", ("run to hills the", "word_order", "determiner_noun_swap", "")),
        ("go away now", None),
        ("the", None),
    ],
)
def test_ungrammatical_variants(words, expected):
    result = ungrammatical(tuple(words.split()))
    if expected is None:
        assert result is None
    else:
        assert result[:4] == (tuple(expected[0].split()), *expected[1:])


def test_phonotactics_counts():
    street, stream, bat = ("S", "T", "R", "IY", "T"), ("S", "T", "R", "IY", "M"), ("B", "AE", "T")
    table = Phonotactics.learn([street] * 3 + [stream] * 3 + [bat] * 2)
    assert table.legal(street) and table.legal(stream)
    assert not table.legal(bat)  # seen only twice: below MIN_COUNT
    assert not table.legal(("S", "T", "R", "AE", "T"))  # onset + vowel never seen
    assert not table.legal(("T", "S", "R", "IY", "T"))  # onset never seen
    assert not table.legal(("S", "T", "R", "IY", "B"))  # coda never seen
    assert not table.legal(("S", "T", "R", "IY"))  # rhyme (and word-final vowel) never seen
    assert not table.legal(("S", "T", "R"))  # no vowel


def test_nonword_generation_deterministic(lexicon):
    pron = lexicon.engine.pronounce("garden")
    a = lexicon.nonword(pron, random.Random(1))
    assert a == lexicon.nonword(pron, random.Random(1)) and a != pron and a not in lexicon.real
    assert sum(x in VOWELS for x in a) == sum(x in VOWELS for x in pron)
    for option in lexicon.nonwords(pron):
        (i,) = [k for k in range(len(pron)) if option[k] != pron[k]]
        assert option[i] in substitutes(pron[i]) and lexicon.phonotactics.legal(option)


#: Manner and voicing of the consonants, written out independently of the substitution classes.
_MANNER = {
    **dict.fromkeys(["P", "T", "K", "B", "D", "G"], "stop"), **dict.fromkeys(["CH", "JH"], "affricate"),
    **dict.fromkeys(["S", "SH", "Z", "ZH"], "sibilant"), **dict.fromkeys(["F", "TH", "V", "DH"], "fricative"),
    "HH": "glottal", **dict.fromkeys(["M", "N", "NG"], "nasal"), **dict.fromkeys(["L", "R"], "liquid"),
    **dict.fromkeys(["W", "Y"], "glide"),
}
_VOICELESS = frozenset({"P", "T", "K", "CH", "S", "SH", "F", "TH", "HH"})


def test_substitutions_keep_class_length_and_voicing():
    assert LAX_VOWELS | LONG_VOWELS | DIPHTHONGS == VOWELS
    assert not (LAX_VOWELS & LONG_VOWELS or LAX_VOWELS & DIPHTHONGS or LONG_VOWELS & DIPHTHONGS)
    assert set(INTRINSIC_MS) == set(VOWELS) | set(_MANNER) == {p for c in SUBSTITUTION_CLASSES for p in c}
    for phone in INTRINSIC_MS:
        for other in substitutes(phone):
            assert phone in substitutes(other)  # symmetric
            assert abs(INTRINSIC_MS[phone] - INTRINSIC_MS[other]) <= MAX_DURATION_GAP_MS
            if phone in VOWELS:  # never a diphthong or a long vowel for a lax one, ...
                assert any(phone in c and other in c for c in (LAX_VOWELS, LONG_VOWELS, DIPHTHONGS))
            else:
                assert _MANNER[phone] == _MANNER[other] and (phone in _VOICELESS) == (other in _VOICELESS)
    assert substitutes("IH") == ["AH", "EH", "UH"] and substitutes("OW") == [] and substitutes("R") == ["L"]


def _fake_durations(pron):
    """One voice whose phones last their intrinsic durations."""
    return [round(sum(INTRINSIC_MS[p] for p in pron) * SAMPLE_RATE / 1000)]


def test_nonword_choice_keeps_the_duration_balance(lexicon):
    words = Counter(w for s in pool_sentences(load_sentences(), "aligned")[:2000] for w in s.words)
    pairs = lexical_pairs(lexicon, words, n=60, oov_fraction=0.2, seed=3, durations=_fake_durations)
    balance = sum(shorter_wins(_fake_durations(p.phones), _fake_durations(p.nonword)) - 0.5 for p in pairs)
    assert abs(balance) <= 0.5


def test_agreement_changes_keep_phone_counts_and_take_turns(lexicon):
    for singular, plural in _AGREEMENT.items():
        assert len(lexicon.engine.pronounce(singular)) == len(lexicon.engine.pronounce(plural))
    sentences = pool_sentences(load_sentences(), "aligned")
    voices = [aligned_speakers()[0], aligned_speakers()[-1]]  # slt-a, awb-d

    def speech_phones(words, spk):
        return [p for p in lexicon.engine.text_phones(" ".join(words) + ".", spk) if p != SIL]

    pairs = syntactic_pairs(sentences, None, exclude=set(), n=100, seed=0,
                            same_phone_count=lambda p: same_phone_count(lexicon.engine, p, voices))
    assert Counter(p.type for p in pairs) == {"agreement": 50, "word_order": 50}
    directions = Counter(p.direction for p in pairs if p.type == "agreement")
    assert directions == {"singular_to_plural": 25, "plural_to_singular": 25}
    changes = Counter(next(f"{a}->{b}" for a, b in zip(p.good, p.bad) if a != b) for p in pairs if p.type == "agreement")
    assert set(changes) == {"is->are", "are->is", "has->have", "have->has"}
    assert max(changes.values()) - min(changes.values()) <= 1
    for p in pairs:
        for spk in voices:
            assert len(speech_phones(p.good, spk)) == len(speech_phones(p.bad, spk))


def test_front_end_phones_are_the_synthesized_ones_and_homographs_are_skipped(lexicon):
    engine, spk = lexicon.engine, aligned_speakers()[0]
    good = ("he", "holds", "the", "record", "in", "the", "mile")
    variant = ungrammatical(good)
    assert variant.bad == ("he", "holds", "record", "the", "in", "the", "mile")
    for words in (good, variant.bad, ("it", "is", "an", "apple")):
        text = " ".join(words).capitalize() + "."
        assert engine.text_phones(text, spk) == tuple(p for _, _, p in engine.synthesize(text, spk).phones)
    # "the record" is the noun (R EH K ER D), "record the" the verb (R IH K AO R D): one phone more.
    pair = SyntacticPair(0, good, variant.bad, variant.type, variant.subtype)
    assert not same_phone_count(engine, pair, [spk])
    with pytest.raises(ConfigError, match="only 0 sentence pairs"):
        syntactic_pairs([Sentence(0, "", good)], None, exclude=set(), n=1, seed=0,
                        same_phone_count=lambda p: same_phone_count(engine, p, [spk]))
    assert len(syntactic_pairs([Sentence(0, "", good)], None, exclude=set(), n=1, seed=0)) == 1


def test_committed_pairs_well_formed():
    check_gold(PAIRS, "lexical", LEXICAL_HEADER)
    check_gold(PAIRS, "syntactic", SYNTACTIC_HEADER)


def test_resume_keeps_finished_files(tmp_path, pairs):
    out = tmp_path / "p"
    shutil.copytree(pairs, out)
    argv = ["synth-pairs", "--out", str(out), "--vocab-from", str(CORPUS), "--n-lexical", "12",
            "--n-syntactic", "6", "--voices", "slt", "rms-c", "--seed", "5"]
    victim = next((out / "lexical").glob("*.flac"))
    victim.unlink()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "syntactic").glob("*.flac")}
    assert cli.main(argv) == 0
    assert victim.is_file()
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    for task in ("lexical", "syntactic"):
        assert (out / task / "gold.csv").read_bytes() == (pairs / task / "gold.csv").read_bytes()
    assert victim.read_bytes() == (pairs / "lexical" / victim.name).read_bytes()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--vocab-from", "/nonexistent"], "/nonexistent/transcripts/train.wrd: not found"),
        (["--n-lexical", "0"], "--n-lexical"),
        (["--voices", "kal"], "unknown voice or speaker 'kal'"),
        (["--voices", "slt-e"], "reserved for the pretraining corpus"),
        (["--oov-fraction", "1.5"], "--oov-fraction"),
        (["--jobs", "0"], "--jobs: 0 must be at least 1"),
    ],
)
def test_bad_options(tmp_path, capsys, extra, message):
    assert cli.main(["synth-pairs", "--out", str(tmp_path / "p"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_committed_pairs_are_what_the_readme_command_makes(tmp_path):
    readme = (PAIRS.parent / "README.md").read_text()
    command = next(line.strip() for line in readme.splitlines() if line.strip().startswith("spokenlm synth-pairs"))
    argv = command.split()[1:]
    argv[argv.index("--out") + 1] = str(tmp_path / "pairs")
    assert cli.main(argv) == 0
    made = {p.relative_to(tmp_path / "pairs"): p.read_bytes() for p in (tmp_path / "pairs").rglob("*") if p.is_file()}
    committed = {p.relative_to(PAIRS): p.read_bytes() for p in PAIRS.rglob("*") if p.is_file()}
    assert made.keys() == committed.keys()
    for path, data in made.items():
        if path.parent.name != "manifests":  # manifests differ by their absolute root line only
            assert data == committed[path], path
