"""Zero-shot transfer data contract: WordNet and story sentence labels, the labelled split, the label options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spokenlm_plugin.core.errors import ConfigError
from spokenlm_plugin.sutlm.align import AlignedUtterance
from spokenlm_plugin.sutlm.transfer import (default_label, guess_world, labelled, labels_for, sentence_labels,
                                            zero_shot)

#: Four fake WordNet files: (lex_filenum, ss_type, examples) per synset line.
SYNSETS = {
    "data.noun": [("06", "n", ['"the old clock on the wall was broken"', '"a hammer is lying on the table"']),
                  ("18", "n", ['"the baker sold bread to the whole village"'])],
    "data.verb": [("38", "v", ['"they walked slowly along the river bank"', '"the old clock on the wall was broken"'])],
    "data.adj": [("00", "s", ['"a very quiet evening in the small town"', '"too short"'])],
    "data.adv": [("02", "r", ['"she answered the question quite politely today"'])],
}


def _wordnet(tmp: Path) -> Path:
    for name, synsets in SYNSETS.items():
        lines = ["  1 This software and database is being provided"]
        for i, (lex, pos, examples) in enumerate(synsets):
            lines.append(f"{i:08d} {lex} {pos} 01 word 0 000 | a gloss; {'; '.join(examples)}")
        (tmp / name).write_text("\n".join(lines) + "\n")
    return tmp


def _utt(sentence: str) -> AlignedUtterance:
    words = tuple(sentence.split())
    return AlignedUtterance(sentence, words, tuple(range(len(words))), tuple(range(len(words) + 1)))


def test_sentence_labels_and_split_known_inputs(tmp_path: Path) -> None:
    wn = _wordnet(tmp_path)
    pos = sentence_labels(wordnet=wn, label="pos")
    lex = sentence_labels(wordnet=wn, label="lexname")
    clock = ("the", "old", "clock", "on", "the", "wall", "was", "broken")
    # the first synset in database order wins (the corpus' own deduplication); satellites are adjectives;
    # "too short" is not a corpus sentence (fewer than 6 words)
    assert pos[clock] == "noun" and lex[clock] == "noun.artifact"
    assert lex[("the", "baker", "sold", "bread", "to", "the", "whole", "village")] == "noun.person"
    assert pos[("they", "walked", "slowly", "along", "the", "river", "bank")] == "verb"
    assert lex[("they", "walked", "slowly", "along", "the", "river", "bank")] == "verb.motion"
    assert pos[("a", "very", "quiet", "evening", "in", "the", "small", "town")] == "adj"
    assert lex[("she", "answered", "the", "question", "quite", "politely", "today")] == "adv.all"
    assert len(pos) == len(lex) == 6
    train = [_utt("the old clock on the wall was broken"), _utt("a hammer is lying on the table"),
             _utt("they walked slowly along the river bank"), _utt("an unlabelled sentence of the corpus here")]
    test = [_utt("the baker sold bread to the whole village"), _utt("a very quiet evening in the small town"),
            _utt("they walked slowly along the river bank")]
    tr, te = labelled(train, test, pos, min_count=2)
    # verb has 1 training item < 2: dropped from both splits; adj is absent from training: dropped
    assert [(u.utt_id, y) for u, y in tr] == [("the old clock on the wall was broken", "noun"),
                                              ("a hammer is lying on the table", "noun")]
    assert [(u.utt_id, y) for u, y in te] == [("the baker sold bread to the whole village", "noun")]
    tr, te = labelled(train, test, pos, min_count=1)
    assert [y for _, y in tr] == ["noun", "noun", "verb"] and [y for _, y in te] == ["noun", "verb"]


# ----------------------------------------------------------------------------------- the story world


def _story_transcripts(hours: float, *, seed: int = 0) -> dict[str, list[tuple[str, ...]]]:
    """Each split's transcripts of ``synth-corpus --text stories --hours HOURS`` (its sentences' words)."""
    from spokenlm_plugin.synth.corpus import split_sentences

    chosen = split_sentences("stories", hours=hours, seed=seed, valid_fraction=0.1, test_fraction=0.1)
    return {split: [s.words for s in sentences] for split, sentences in chosen.items()}


def test_story_labels_cover_a_story_corpus_balanced_and_deterministic() -> None:
    from spokenlm_plugin.synth.stories import pool_sentences
    from spokenlm_plugin.sutlm.transfer import _story_parses

    spoken = _story_transcripts(1.0, seed=3)
    words = [w for split in spoken.values() for w in split]
    tense, number = labels_for("tense", world="stories", cover=words), labels_for("number", world="stories")
    assert all(w in tense and w in number for w in words)
    assert set(tense.values()) == {"present", "past"} and set(number.values()) == {"singular", "plural"}
    train = spoken["train"]
    past = sum(tense[w] == "past" for w in train) / len(train)
    plural = sum(number[w] == "plural" for w in train) / len(train)
    assert 0.4 < past < 0.6 and 0.15 < plural < 0.35, (past, plural)
    # what the generator parsed; an auxiliary's form says the number and the tense itself
    aux = {"is": ("singular", "present"), "has": ("singular", "present"), "was": ("singular", "past"),
           "are": ("plural", "present"), "have": ("plural", "present"), "were": ("plural", "past")}
    for s in pool_sentences("aligned", 300):
        assert s.parse is not None
        assert tense[s.words] == s.parse.verb.tense
        assert number[s.words] == ("plural" if s.parse.plural_subject else "singular")
        verb = s.words[s.parse.verb.position]
        if verb in aux:
            assert (number[s.words], tense[s.words]) == aux[verb], s.words
    _story_parses.cache_clear()  # generated afresh: the same labels
    assert labels_for("tense", world="stories") == tense
    assert guess_world(words) == "stories"
    assert guess_world([*words, ("the", "old", "clock", "ticked", "loudly", "today")]) is None


def test_story_labels_grow_to_cover_a_larger_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    import spokenlm_plugin.sutlm.transfer as transfer

    # as if the default prefix were shorter than a corpus: the labels read on until they cover it
    monkeypatch.setattr(transfer, "STORY_SENTENCES", 400)
    spoken = _story_transcripts(0.25)
    words = spoken["train"] + spoken["test"]
    assert len(transfer.story_labels(label="tense")) == 400
    labels = transfer.story_labels(label="tense", cover=words)
    assert all(w in labels for w in words) and len(labels) in (1600, 3200, 6400)
    # sentences of another world are not waited for
    assert len(transfer.story_labels(label="tense", cover=[("the", "old", "clock", "ticked", "loudly")] * 5000)) == 400


def test_labels_of_the_other_world_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--zero-shot-label pos: WordNet labels; this corpus speaks the story "
                                          r"world: use tense or number$"):
        labels_for("pos", world="stories")
    with pytest.raises(ConfigError, match=r"^--zero-shot-label number: story labels; this corpus speaks the WordNet "
                                          r"world: use pos or lexname$"):
        labels_for("number", world="wordnet")
    wn = _wordnet(tmp_path)
    assert labels_for("lexname", world="wordnet", wordnet=wn) == sentence_labels(wordnet=wn, label="lexname")
    assert labels_for("pos", wordnet=wn) == sentence_labels(wordnet=wn, label="pos")  # world unknown: as asked
    assert default_label("stories") == "tense" and default_label("wordnet") == default_label(None) == "pos"


def test_cli_label_choices_and_the_data_folder_world(tmp_path: Path) -> None:
    import argparse

    from spokenlm_plugin.sutlm.evaluate import configure_parser, data_world

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    need = ["--checkpoint", "c.pt", "--data", "d", "--items", "t.jsonl"]
    action = next(a for a in parser._actions if a.dest == "zero_shot_label")
    assert list(action.choices or []) == ["pos", "lexname", "tense", "number"]
    assert "WordNet" in (action.help or "") and "story" in (action.help or "")
    assert parser.parse_args(need).zero_shot_label is None  # resolved from the corpus' world
    assert parser.parse_args([*need, "--zero-shot-label", "number"]).zero_shot_label == "number"
    # sutlm-data.json names the corpus; its corpus.json, the world
    data = tmp_path / "out"
    (data / "units-raw").mkdir(parents=True)
    assert data_world(data / "units-raw") is None
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (data / "sutlm-data.json").write_text(json.dumps({"corpus": str(corpus)}))
    assert data_world(data / "units-raw") is None  # not a synth-corpus folder
    (corpus / "corpus.json").write_text(json.dumps({"world": "stories"}))
    assert data_world(data / "units-raw") == "stories"
    (corpus / "corpus.json").write_text(json.dumps({"hours": 1.0}))  # made before corpora had worlds
    assert data_world(data / "units-raw") == "wordnet"
    (data / "sutlm-data.json").write_text("{")
    with pytest.raises(ConfigError, match=r"sutlm-data.json: unreadable .*'spokenlm sutlm-data'"):
        data_world(data / "units-raw")


def _tiny_lm(tmp: Path, symbols: list[str]):
    """An untrained ``sutlm_transformer_lm_tiny`` over ``symbols``, as fairseq-train builds it."""
    import torch
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    import spokenlm_plugin

    spokenlm_plugin.register()
    (tmp / "dict.txt").write_text("".join(f"{s} 1\n" for s in symbols))
    argv = [str(tmp), "--task", "language_modeling", "--arch", "sutlm_transformer_lm_tiny", "--decoder-embed-dim",
            "32", "--decoder-ffn-embed-dim", "64", "--decoder-layers", "1", "--tokens-per-sample", "128", "--cpu"]
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    task = tasks.setup_task(cfg.task)
    torch.manual_seed(0)
    return task.build_model(cfg.model).eval(), task.source_dictionary


def test_zero_shot_on_story_sentences_with_tense_labels(tmp_path: Path) -> None:
    import zlib

    import torch

    from spokenlm_plugin.sutlm.sequences import Renderer
    from spokenlm_plugin.sutlm.tokens import MARKERS, Tokenizer, train_sentencepiece, unit_char

    torch.set_num_threads(1)
    spoken = _story_transcripts(0.25)

    def utt(words: tuple[str, ...]) -> AlignedUtterance:
        # each word's "speech": 3 units fixed by the word
        units = tuple(zlib.crc32(f"{w}{i}".encode()) % 50 for w in words for i in range(3))
        return AlignedUtterance(" ".join(words), words, units, tuple(range(0, 3 * len(words) + 1, 3)))

    train, test = [utt(w) for w in spoken["train"][:120]], [utt(w) for w in spoken["test"][:40]]
    text = Tokenizer(train_sentencepiece([" ".join(u.words) for u in train + test], tmp_path / "text",
                                         vocab_size=300, kind="text"), kind="text")
    renderer = Renderer(units=Tokenizer(None, kind="units"), text=text)
    pieces = sorted({p for u in train + test for p in text.encode_words(u.words)})
    model, dictionary = _tiny_lm(tmp_path, [*MARKERS, *(unit_char(u) for u in range(50)), *pieces])
    words = [u.words for u in train + test]
    z = zero_shot(model, dictionary, renderer, train, test, label="tense", resamples=20,
                  labels=labels_for("tense", world=guess_world(words), cover=words))
    assert z.label == "tense" and z.classes == ["past", "present"]
    assert (z.train_items, z.test_items) == (120, 40) and z.chance == 0.5
    assert [r.name for r in z.results] == ["t->u", "u->t", "t->t", "u->u"]
    assert all(0 <= r.accuracy <= 1 and r.ci is not None for r in z.results)
    # a WordNet label on story sentences: refused at once, saying which labels fit
    with pytest.raises(ConfigError, match=r"none of the 120 training utterances has a pos label \(WordNet sentences "
                                          r"only\): use a label of the corpus's world .*stories: tense or number"):
        zero_shot(model, dictionary, renderer, train, test, label="pos",
                  labels=sentence_labels(wordnet=_wordnet(tmp_path)))


def test_transfer_table_names_the_label() -> None:
    from spokenlm_plugin.demo.stage_sutlm import _transfer_table
    from spokenlm_plugin.sutlm.transfer import TransferResult, ZeroShotReport

    results = [TransferResult("text", "speech", 0.5, None)]
    tense = _transfer_table(ZeroShotReport("tense", ["past", "present"], 10, 4, 0.5, 0.5, results))
    assert "sentence tense accuracy" in tense.title and "tense of each story sentence's verb" in tense.note
    pos = _transfer_table(ZeroShotReport("pos", ["adj", "noun"], 10, 4, 0.5, 0.5, results))
    assert "sentence part of speech accuracy" in pos.title and "WordNet part of speech" in pos.note
