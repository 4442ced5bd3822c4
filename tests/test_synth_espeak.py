"""The held-out espeak-ng corpus: alignments agree with the audio and with espeak-ng's own word
events, phones map onto ARPAbet-39 or are refused, the voices were never heard in pretraining, and
``synth-corpus --engine espeak`` writes the corpus contract."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spokenlm_plugin import cli
from spokenlm_plugin.core.errors import AlignmentError, ConfigError
from spokenlm_plugin.core.io import read_manifest
from spokenlm_plugin.core.phones import INVENTORY, SIL, num_frames
from spokenlm_plugin.synth import espeak
from spokenlm_plugin.synth.corpus import SPLITS, build_corpus
from spokenlm_plugin.synth.espeak import HELDOUT_ESPEAK, Espeak, heldout_speakers, to_arpabet
from spokenlm_plugin.synth.pretrain_corpus import ESPEAK
from spokenlm_plugin.synth.speakers import aligned_speakers, pretrain_speakers
from spokenlm_plugin.synth.text import load_sentences, sentence_pool
from tests.synth_support import best_shift, energy_contrast, frication_contrast

SENTENCES = (
    "The children ran to the playground.",
    # multi-word dictionary entries ("did not", "of a"), a linking j ("she asked"), a syllabic n
    "She asked whether he did not notice the button of a coat.",
    "A lean, swarthy fellow was peering through the window, grinning impudently.",
)


@pytest.fixture(scope="module")
def engine() -> Espeak:
    return Espeak()


def _words(text: str) -> list[str]:
    return re.sub(r"[,;:.!?]", "", text).lower().split()


# --------------------------------------------------------------------------- voices


def _accent_and_variant(voice: str) -> tuple[str, str]:
    accent, _, variant = voice.partition("+")
    return accent, variant


def test_heldout_voices_are_never_heard_in_pretraining():
    heldout = {s.id: s for s in HELDOUT_ESPEAK}
    assert len(heldout) == len(HELDOUT_ESPEAK) == 6
    # Each speaker is its own voice; 4 fine-tune, 2 are scored.
    assert len({s.voice for s in HELDOUT_ESPEAK}) == 6
    assert [s.split for s in HELDOUT_ESPEAK].count("train") == 4
    assert [s.split for s in HELDOUT_ESPEAK].count("test") == 2
    # Disjoint from every pretraining speaker, by id, by voice, and by accent and by variant alone.
    pretrain_ids = {s.id for s in ESPEAK} | {s.id for s in pretrain_speakers()}
    assert not set(heldout) & pretrain_ids
    assert not set(heldout) & {s.id for s in aligned_speakers()}
    accents = {_accent_and_variant(s.voice)[0] for s in ESPEAK}
    variants = {_accent_and_variant(s.voice)[1] for s in ESPEAK}
    for s in HELDOUT_ESPEAK:
        accent, variant = _accent_and_variant(s.voice)
        assert accent not in accents and variant not in variants, s
    # The corpus refuses anything else, pretraining's voices first.
    with pytest.raises(ConfigError, match="unknown held-out espeak-ng speaker"):
        heldout_speakers([ESPEAK[0].id, HELDOUT_ESPEAK[0].id])
    with pytest.raises(ConfigError, match="no test speaker"):
        heldout_speakers([s.id for s in HELDOUT_ESPEAK if s.split == "train"])


def test_heldout_variants_have_no_echo():
    """Echo fills the pre-pauses whose zero samples give a stop its closure (module docstring)."""
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout
    data = Path(re.search(r"Data at: (\S+)", version).group(1))
    for s in HELDOUT_ESPEAK:
        variant = (data / "voices" / "!v" / _accent_and_variant(s.voice)[1]).read_text()
        assert not re.search(r"^\s*echo\b", variant, re.M), s.voice


# --------------------------------------------------------------------------- phones


def test_mnemonic_mapping():
    assert to_arpabet("tS") == ("CH",) and to_arpabet("_:") == (SIL,) and to_arpabet("'aI") == ("AY",)
    assert to_arpabet("e@", "k") == ("EH", "R") and to_arpabet("e@", "r") == ("EH",) and to_arpabet("A@", "r-") == ("AA",)
    assert to_arpabet("@L") == ("AH", "L")
    assert all(p in INVENTORY for phones in espeak.MNEMONICS.values() for p in phones)
    with pytest.raises(AlignmentError, match="'Q' has no ARPAbet-39 mapping"):
        to_arpabet("Q")


# --------------------------------------------------------------------------- alignments


@pytest.mark.parametrize("speaker", HELDOUT_ESPEAK, ids=lambda s: s.id)
def test_alignment_is_consistent(engine, speaker):
    for text in SENTENCES:
        syn = engine.synthesize(text, speaker)
        phones, words = syn.phones, syn.words
        # Contiguous from 0 to the end of the audio, increasing, in the inventory.
        assert phones[0][0] == 0.0 and phones[-1][1] == pytest.approx(syn.num_samples / 16000, abs=1e-9)
        assert all(a[1] == b[0] for a, b in zip(phones, phones[1:]))
        assert all(p in INVENTORY and e - s >= 0.004 for s, e, p in phones), [x for x in phones if x[1] - x[0] < 0.004]
        assert sum(p != SIL for _, _, p in phones) >= len(words)
        # The text's words, each on phone boundaries, spanning no pause.
        assert [w for _, _, w in words] == _words(text)
        bounds = {s for s, _, _ in phones} | {e for _, e, _ in phones}
        for start, end, word in words:
            assert start in bounds and end in bounds, word
            assert all(p != SIL for s, e, p in phones if start <= s < end), word
        # Word starts are espeak-ng's own word events; after a pause, the pre-pause of the word's
        # first phone (silence) stays in the SIL.
        raw = engine.run(text, speaker)
        firsts = [m.start() + 1 for m in re.finditer(r"\S+", text)]
        checked = 0
        for e in raw.events:
            if e.kind == "word" and e.text_position in firsts:
                start = words[firsts.index(e.text_position)][0]
                shift = start - e.sample / raw.sample_rate
                before = [p for _, end, p in phones if end == start]  # the phone before the word
                if not before or before[0] == SIL:
                    assert 0 <= shift < 0.1, (text, e)
                else:
                    assert abs(shift) < 1.5 / 16000, (text, e)
                    checked += 1
        assert checked >= len(words) - 3


@pytest.mark.parametrize("speaker", [HELDOUT_ESPEAK[0], HELDOUT_ESPEAK[2], HELDOUT_ESPEAK[5]], ids=lambda s: s.id)
def test_alignment_agrees_with_audio(engine, speaker):
    """Vowels are loud against pauses and fricatives noisy against vowels best with the labels
    unshifted (within one 20 ms frame), as for flite (tests/test_synth.py)."""
    syn = engine.synthesize(" ".join(SENTENCES), speaker)
    x = syn.samples.astype(np.float64)
    phones = [list(p) for p in syn.phones]
    assert abs(best_shift(x, phones, score=energy_contrast)) <= 0.02
    assert abs(best_shift(x, phones, score=frication_contrast)) <= 0.02
    # Pauses are silent.
    sil = np.concatenate([x[int(s * 16000) : int(e * 16000)] for s, e, p in phones if p == SIL])
    assert np.sqrt((sil**2).mean()) < 0.02 * np.sqrt((x**2).mean())


def test_multiword_entries_are_shared_among_their_words(engine):
    """espeak-ng reads "did not" and "of a" as one dictionary entry stamped with the first word."""
    speaker = HELDOUT_ESPEAK[1]
    text = "He did not think of a plan."
    raw = engine.run(text, speaker)
    positions = {e.text_position for e in raw.events if e.kind == "phoneme"}
    assert text.index("not") + 1 not in positions and text.index(" a ") + 2 not in positions  # the premise
    syn = engine.synthesize(text, speaker)
    by_word = {w: [p for s, e, p in syn.phones if ws <= s < we] for ws, we, w in syn.words}
    assert by_word["did"] == ["D", "IH", "D"] and by_word["not"][0] == "N" and by_word["not"][-1] == "T"
    assert len(by_word["of"]) == 2 and len(by_word["a"]) == 1


def test_synthesis_is_reproducible(engine):
    """The audio depends on (speaker, text) only, not on what was synthesized before."""
    first = engine.synthesize(SENTENCES[0], HELDOUT_ESPEAK[1])
    engine.synthesize(SENTENCES[1], HELDOUT_ESPEAK[0])
    again = engine.synthesize(SENTENCES[0], HELDOUT_ESPEAK[1])
    assert np.array_equal(first.samples, again.samples) and first.phones == again.phones


# --------------------------------------------------------------------------- the corpus


@pytest.fixture(scope="module")
def heldout_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("heldout") / "c"
    build_corpus(out, hours=0.01, engine="espeak", jobs=1, seed=2)
    return out


def test_corpus_layout_and_contract(heldout_corpus):
    root = heldout_corpus
    meta = json.loads((root / "corpus.json").read_text())
    assert meta["engine"] == "espeak-ng"
    train = [s.id for s in HELDOUT_ESPEAK if s.split == "train"]
    test = [s.id for s in HELDOUT_ESPEAK if s.split == "test"]
    assert meta["splits"]["train"]["speakers"] == meta["splits"]["valid"]["speakers"] == train
    assert meta["splits"]["test"]["speakers"] == test
    assert {k: v["split"] for k, v in meta["speakers"].items()} == {s.id: s.split for s in HELDOUT_ESPEAK}
    by_index = {s.index: s for s in load_sentences()}
    texts = {}
    for split in SPLITS:
        man = read_manifest(root / "manifests" / f"{split}.tsv", check_files=True)
        assert len(man) == meta["splits"][split]["utterances"] > 0
        phn = (root / "labels" / f"{split}.phn").read_text().splitlines()
        wrd = (root / "transcripts" / f"{split}.wrd").read_text().splitlines()
        assert len(phn) == len(wrd) == len(man)
        texts[split] = set()
        for row, labels, words in zip(man.rows, phn, wrd):
            ali = json.loads((root / "alignments" / f"{row.utt_id}.json").read_text())
            audio, sr = sf.read(man.path(row), dtype="int16")
            assert sr == 16000 and len(audio) == row.num_samples == ali["num_samples"]
            assert Path(row.relpath).parent.name == ali["speaker"] in meta["splits"][split]["speakers"]
            assert words.split() == [w for _, _, w in ali["words"]] == _words(ali["text"])
            # spokenlm labels ran (and checked the frame count); one label per HuBERT frame.
            assert abs(len(labels.split()) - num_frames(row.num_samples)) <= 1
            assert set(labels.split()) <= set(INVENTORY)
            sentence = by_index[int(row.utt_id.rsplit("_", 1)[1])]
            assert sentence_pool(sentence) == "aligned" and sentence.text == ali["text"]
            texts[split].add(ali["text"])
    assert not texts["train"] & texts["valid"] and not texts["train"] & texts["test"] and not texts["valid"] & texts["test"]
    for kind in ("triphone", "phoneme"):
        assert len((root / "items" / f"test.{kind}.item").read_text().splitlines()) > 10
    assert (root / "labels" / "dict.phn.txt").read_text().split()[::2] == list(INVENTORY)


def test_corpus_rerun_is_identical_and_trims(heldout_corpus, tmp_path):
    """Another run (two processes) gives the same bytes; fewer hours remove the surplus utterances."""
    other = tmp_path / "c"
    build_corpus(other, hours=0.01, engine="espeak", jobs=2, seed=2)
    files = lambda root: {  # noqa: E731
        str(p.relative_to(root)): p.read_bytes() for p in [*(root / "audio").rglob("*.flac"), *(root / "alignments").glob("*.json")]
    }
    assert files(other) == files(heldout_corpus)
    build_corpus(other, hours=0.005, engine="espeak", jobs=1, seed=2)
    trimmed = files(other)
    assert 0 < len(trimmed) < len(files(heldout_corpus)) and trimmed.items() <= files(heldout_corpus).items()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--voices", "slt", "hx-wi-m6", "hx-lan-m7"], "unknown held-out espeak-ng speaker(s) slt"),
        (["--voices", "hx-wi-m6", "hx-nyc-klatt"], "no test speaker"),
        (["--speakers-per-voice", "2"], "flite only"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, args, message):
    code = cli.main(["synth-corpus", "--engine", "espeak", "--out", str(tmp_path / "c"), "--hours", "0.01", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()
    # A pretraining voice is not even a choice.
    with pytest.raises(SystemExit):
        cli.main(["synth-corpus", "--engine", "espeak", "--out", str(tmp_path / "c"), "--hours", "0.01", "--voices", ESPEAK[0].id])
    assert f"invalid choice: '{ESPEAK[0].id}'" in capsys.readouterr().err

