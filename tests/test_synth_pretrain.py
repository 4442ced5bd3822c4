"""The pretraining corpus can never share a speaker or a sentence with what the demo evaluates."""

from __future__ import annotations

import json

import pytest

from spokenlm_plugin.core.errors import ConfigError
from spokenlm_plugin.synth import speakers as spk
from spokenlm_plugin.synth.pretrain_corpus import ESPEAK, build_pretrain_corpus
from spokenlm_plugin.synth.text import load_sentences, pool_sentences, sentence_pool


def test_sentence_pools_partition_the_sentences():
    sentences = load_sentences()
    aligned = {s.index for s in pool_sentences(sentences, "aligned")}
    pretrain = {s.index for s in pool_sentences(sentences, "pretrain")}
    assert not aligned & pretrain
    assert aligned | pretrain == {s.index for s in sentences}
    # A real share of each: the partition is by a hash, not by position.
    assert 0.15 < len(pretrain) / len(sentences) < 0.35


def test_pool_depends_on_the_words_only():
    s = load_sentences()[0]
    moved = type(s)(index=s.index + 12345, text=s.text.upper(), words=s.words)
    assert sentence_pool(moved) == sentence_pool(s)


def test_pretraining_speakers_are_never_aligned_speakers():
    aligned = {s.id for s in spk.aligned_speakers()}
    pretrain = {s.id for s in spk.pretrain_speakers()} | {s.id for s in ESPEAK}
    assert not aligned & pretrain
    # The aligned corpus can only draw from aligned speakers, whatever its options.
    for per_voice in range(1, spk.ALIGNED_VARIANTS + 1):
        assert {s.id for s in spk.speakers_for(list(spk.VOICES), per_voice=per_voice)} <= aligned
    with pytest.raises(ConfigError, match="outside 1..4"):
        spk.speakers_for(["slt"], per_voice=spk.ALIGNED_VARIANTS + 1)
    # Pairs name their speakers one by one: a pretraining speaker is refused.
    with pytest.raises(ConfigError, match="reserved for the pretraining corpus"):
        spk.speaker(spk.pretrain_speakers()[0].id)


def test_committed_corpus_uses_aligned_sentences_and_speakers(corpus_dir):
    meta = json.loads((corpus_dir / "corpus.json").read_text())
    aligned = {s.id for s in spk.aligned_speakers()}
    assert set(meta["speakers"]) <= aligned
    by_index = {s.index: s for s in load_sentences()}
    for ali in (corpus_dir / "alignments").glob("*.json"):
        index = int(ali.stem.rsplit("_", 1)[1])
        assert sentence_pool(by_index[index]) == "aligned", ali.name


def test_pretrain_corpus_is_disjoint(tmp_path):
    meta = build_pretrain_corpus(tmp_path / "pre", hours=0.01, jobs=1)
    sentences = {s.index: s for s in load_sentences()}
    aligned = {s.id for s in spk.aligned_speakers()}
    rows = (tmp_path / "pre" / "manifests" / "train.tsv").read_text().splitlines()[1:]
    assert rows and all((tmp_path / "pre" / r.split("\t")[0]).is_file() for r in rows)
    for split in meta["splits"].values():
        assert not set(split["speakers"]) & aligned
        assert all(sentence_pool(sentences[i]) == "pretrain" for i in split["sentence_indices"])
    assert not set(meta["splits"]["train"]["sentence_indices"]) & set(meta["splits"]["valid"]["sentence_indices"])
    assert set(meta["speakers"]) >= {s.id for s in ESPEAK}


def test_espeak_voice_gives_16k_speech():
    from spokenlm_plugin.synth.pretrain_corpus import espeak

    samples = espeak("A quick test sentence.", ESPEAK[0])
    assert samples.dtype.name == "int16"
    assert 0.8 < len(samples) / 16000 < 4.0
    assert abs(samples.astype(float)).max() > 1000  # not silence
