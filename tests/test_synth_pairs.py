"""Spoken minimal pairs: gold.csv in the sLM21 layout, real non-words, audio that says the phones."""

from __future__ import annotations

import csv
import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest

from spokenlm_plugin import cli
from spokenlm_plugin.io import read_manifest
from spokenlm_plugin.phones import SIL
from spokenlm_plugin.synth.flite import Flite
from spokenlm_plugin.synth.lexicon import PHONE_CLASSES, VOWELS, Lexicon, Phonotactics
from spokenlm_plugin.synth.pairs import LEXICAL_HEADER, SYNTACTIC_HEADER, _ungrammatical
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
            by_id.setdefault((r["id"], r["correct"]), set()).add(tuple(v for k, v in r.items() if k not in ("filename", "voice")))
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
        # One phone differs, within its class.
        diff = [(a, b) for a, b in zip(w, n) if a != b]
        assert len(w) == len(n) and len(diff) == 1
        assert any(diff[0][0] in c and diff[0][1] in c for c in PHONE_CLASSES)
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
        assert _ungrammatical(good)[0] == bad
        if pair["type"] == "word_order":  # the same words, two of them swapped
            assert sorted(good) == sorted(bad) and sum(a != b for a, b in zip(good, bad)) == 2
        else:  # one verb form changed
            assert len(good) == len(bad) and sum(a != b for a, b in zip(good, bad)) == 1


def test_syntactic_sentences_are_not_training_sentences(pairs):
    train = {tuple(line.split()) for line in (CORPUS / "transcripts" / "train.wrd").read_text().splitlines()}
    for path in (pairs / "alignments").glob("syn_*.json"):
        assert tuple(w for _, _, w in json.loads(path.read_text())["words"]) not in train


@pytest.mark.parametrize(
    "words, expected",
    [
        ("he was soft on his children", ("he were soft on his children", "agreement", "subject_verb")),
        ("they have eaten all the apples", ("they has eaten all the apples", "agreement", "subject_verb")),
        ("she got a dog from the shelter", ("she got dog a from the shelter", "word_order", "determiner_noun_swap")),
        ("run to the hills", ("run to hills the", "word_order", "determiner_noun_swap")),
        ("go away now", None),
        ("the", None),
    ],
)
def test_ungrammatical_variants(words, expected):
    result = _ungrammatical(tuple(words.split()))
    if expected is None:
        assert result is None
    else:
        assert result == (tuple(expected[0].split()), expected[1], expected[2])


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
        (["--oov-fraction", "1.5"], "--oov-fraction"),
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
