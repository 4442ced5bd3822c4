"""Zero-shot transfer data contract: WordNet sentence labels and the labelled split, on known inputs."""

from __future__ import annotations

from pathlib import Path

from spokenlm_plugin.sutlm.align import AlignedUtterance
from spokenlm_plugin.sutlm.transfer import labelled, sentence_labels

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
