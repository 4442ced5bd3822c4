"""The synthetic aligned corpus: alignments agree with the audio, splits are disjoint, runs resume
and are deterministic, and bad input ends in a one-line error."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spokenlm_plugin import cli
from spokenlm_plugin.core.errors import ConfigError, MissingToolError
from spokenlm_plugin.core.io import read_manifest
from spokenlm_plugin.core.phones import INVENTORY, SIL, num_frames
from spokenlm_plugin.synth import corpus
from spokenlm_plugin.synth.corpus import SPLITS, assign_speakers, build_corpus
from spokenlm_plugin.synth.flite import Flite
from spokenlm_plugin.synth.speakers import SPEAKERS, speakers_for
from spokenlm_plugin.synth.text import load_sentences, normalize_example, shuffled
from tests.conftest import CORPUS, VENV_BIN, run_cli
from tests.synth_support import VOWELS, best_shift, energy_contrast, frication_contrast

SMALL = dict(voices=["slt", "rms", "awb"], speakers_per_voice=2, seed=3, valid_fraction=0.2, test_fraction=0.2)


@pytest.fixture(scope="module")
def engine() -> Flite:
    return Flite()


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "c"
    build_corpus(out, hours=0.006, jobs=1, **SMALL)
    return out


def corpus_files(root: Path) -> dict[str, bytes]:
    """Every synthesized file (audio + alignment) of a corpus, by relative path."""
    files = list((root / "audio").rglob("*.flac")) + list((root / "alignments").glob("*.json"))
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


# --------------------------------------------------------------------------- labels vs audio


@pytest.mark.parametrize("speaker_id", ["slt-a", "slt-c", "rms-a", "rms-b", "awb-a", "awb-b"])
def test_alignment_agrees_with_audio(engine, speaker_id):
    spk = next(s for v in SPEAKERS.values() for s in v if s.id == speaker_id)
    sentences = shuffled(load_sentences(), seed=11)[:3]
    text = " ".join(s.text for s in sentences)  # ~10 s: internal pauses at the sentence ends
    synthesis = engine.synthesize(text, spk)
    phones = [list(p) for p in synthesis.phones]

    # Contiguous from 0 to the end of the audio, in the inventory.
    assert phones[0][0] == 0.0 and phones[-1][1] == pytest.approx(synthesis.num_samples / 16000, abs=1e-9)
    assert all(a[1] == b[0] for a, b in zip(phones, phones[1:]))
    assert all(p[2] in INVENTORY and p[1] > p[0] for p in phones)
    assert [w for _, _, w in synthesis.words] == [w for s in sentences for w in s.words]
    assert sum(p[2] == SIL for p in phones) >= 4  # leading, trailing and between sentences

    x = synthesis.samples.astype(np.float64)
    # Pauses are silent: median RMS inside SIL segments is tiny next to that of vowels.
    def median_rms(names):
        values = []
        for start, end, name in phones:
            a, b = int(start * 16000), int(end * 16000)
            if name in names and b - a >= 320:
                core = x[a + (b - a) // 4 : b - (b - a) // 4]
                values.append(np.sqrt((core**2).mean()))
        return float(np.median(values))

    assert median_rms({SIL}) < 0.02 * median_rms(VOWELS)
    # Boundaries are where the audio changes: the labels fit the audio best unshifted (within one
    # 20 ms frame) - vowels loud against pauses, fricatives noisy against vowels.
    assert abs(best_shift(x, phones, score=energy_contrast)) <= 0.02
    assert abs(best_shift(x, phones, score=frication_contrast)) <= 0.02
    # The check can fail: labels displaced by 80 ms are detected as displaced.
    late = [[s + 0.08, e + 0.08, p] for s, e, p in phones]
    assert best_shift(x, late, score=energy_contrast) <= -0.06


def test_synthesis_is_reproducible(engine):
    """The audio depends on (speaker, text) only, not on what the process synthesized before."""
    slt, rms = (next(iter(SPEAKERS[v])) for v in ("slt", "rms"))
    first = engine.synthesize("The children ran to the playground.", slt)
    engine.synthesize("Something else entirely, said by another voice.", rms)
    engine.synthesize_phones(["SIL", "B", "L", "IH", "K", "SIL"], slt)
    again = engine.synthesize("The children ran to the playground.", slt)
    assert np.array_equal(first.samples, again.samples) and first.phones == again.phones


def test_flite_end_times_match_audio_length(engine):
    """flite's own last segment end (before any clipping) is within 5 ms of its waveform."""
    lib = engine._lib
    for voice in ("slt", "rms", "awb"):
        for s in shuffled(load_sentences(), seed=5)[:3]:
            utt = lib.flite_synth_text(s.text.encode(), engine.voice(voice))
            wave = lib.utt_wave(utt).contents
            seg, last = lib.relation_head(lib.utt_relation(utt, b"Segment")), None
            while seg:
                last = lib.item_feat_float(seg, b"end")
                seg = lib.item_next(seg)
            assert abs(last - wave.num_samples / wave.sample_rate) < 0.005, (voice, s.text)
            lib.delete_utterance(utt)


# --------------------------------------------------------------------------- corpus contract


def test_corpus_layout_and_contract(small_corpus):
    meta = json.loads((small_corpus / "corpus.json").read_text())
    for split in SPLITS:
        man = read_manifest(small_corpus / "manifests" / f"{split}.tsv", check_files=True)
        assert man.root == (small_corpus / "audio" / split).resolve()
        assert len(man) == meta["splits"][split]["utterances"] > 0
        phn = (small_corpus / "labels" / f"{split}.phn").read_text().splitlines()
        seq = (small_corpus / "labels" / f"{split}.phnseq").read_text().splitlines()
        wrd = (small_corpus / "transcripts" / f"{split}.wrd").read_text().splitlines()
        assert len(phn) == len(seq) == len(wrd) == len(man)
        total = 0
        for row, labels, words in zip(man.rows, phn, wrd):
            ali = json.loads((small_corpus / "alignments" / f"{row.utt_id}.json").read_text())
            audio, sr = sf.read(man.path(row), dtype="int16")
            assert sr == 16000 and audio.ndim == 1 and len(audio) == row.num_samples == ali["num_samples"]
            assert ali["utt_id"] == row.utt_id and Path(row.relpath).parent.name == ali["speaker"]
            # Transcript line = this row's words (manifest order, not sorted order).
            assert words.split() == [w for _, _, w in ali["words"]]
            assert re.sub(r"[,;:.!?]", "", ali["text"]).lower().split() == words.split()
            assert abs(len(labels.split()) - num_frames(row.num_samples)) <= 1
            assert ali["phones"][-1][1] == pytest.approx(row.num_samples / 16000)
            total += row.num_samples
        assert total / 16000 == pytest.approx(meta["splits"][split]["seconds"], abs=0.01)
    for kind in ("triphone", "phoneme"):
        lines = (small_corpus / "items" / f"test.{kind}.item").read_text().splitlines()
        assert lines[0].startswith("#file onset offset #phone") and len(lines) > 10
    assert (small_corpus / "labels" / "dict.phn.txt").read_text().split()[::2] == list(INVENTORY)


def test_splits_disjoint_by_speaker_and_sentence(small_corpus):
    meta = json.loads((small_corpus / "corpus.json").read_text())
    speakers, texts = {}, {}
    for split in SPLITS:
        man = read_manifest(small_corpus / "manifests" / f"{split}.tsv")
        speakers[split] = {Path(r.relpath).parent.name for r in man.rows}
        texts[split] = {json.loads((small_corpus / "alignments" / f"{r.utt_id}.json").read_text())["text"] for r in man.rows}
        assert speakers[split] <= set(meta["splits"][split]["speakers"])
    assert len(meta["splits"]["test"]["speakers"]) == 2 and len(meta["splits"]["valid"]["speakers"]) == 1
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not speakers[a] & speakers[b], (a, b)
        assert not texts[a] & texts[b], (a, b)
    # The two test speakers come from different voices.
    assert len({s.split("-")[0] for s in meta["splits"]["test"]["speakers"]}) == 2


@pytest.mark.parametrize(
    "voices, per_voice", [(["slt", "rms", "awb"], 4), (["slt"], 4), (["slt", "awb"], 2), (["rms", "awb"], 3)]
)
def test_assign_speakers(voices, per_voice):
    speakers = speakers_for(voices, per_voice=per_voice)
    split = assign_speakers(speakers, seed=7)
    assert split == assign_speakers(speakers, seed=7)
    assert sorted(s.id for v in split.values() for s in v) == sorted(s.id for s in speakers)
    assert len(split["test"]) == 2 and len(split["valid"]) == 1 and split["train"]
    if len(voices) >= 2:
        assert split["test"][0].voice != split["test"][1].voice
    if len(speakers) - 3 >= len(voices):  # every voice can keep a training speaker, so it does
        assert {s.voice for s in split["train"]} == set(voices)


def test_resume_after_interrupt_and_determinism(tmp_path, small_corpus):
    """SIGINT a run mid-way, rerun: the result equals an uninterrupted run (and the small corpus,
    made in one go with --jobs 1, equals this one made with --jobs 2)."""
    out = tmp_path / "c"
    args = ["synth-corpus", "--out", str(out), "--hours", "0.006", "--voices", "slt", "rms", "awb",
            "--speakers-per-voice", "2", "--seed", "3", "--valid-fraction", "0.2", "--test-fraction", "0.2"]
    proc = subprocess.Popen([str(VENV_BIN / "spokenlm"), *args, "--jobs", "1"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list((out / "alignments").glob("*.json"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "rerun to resume" in err
    assert not (out / "corpus.json").exists()
    assert not [p for p in out.rglob(".*") if p.is_file()], "temporary files left behind"
    finished = {p.name: p.stat().st_mtime_ns for p in (out / "alignments").glob("*.json")}
    assert finished

    assert cli.main([*args, "--jobs", "2"]) == 0
    for name, mtime in finished.items():  # finished utterances were not redone
        assert (out / "alignments" / name).stat().st_mtime_ns == mtime
    assert corpus_files(out) == corpus_files(small_corpus)
    for split in SPLITS:
        for sub in (f"labels/{split}.phn", f"labels/{split}.phnseq", f"transcripts/{split}.wrd", f"items/{split}.triphone.item"):
            assert (out / sub).read_bytes() == (small_corpus / sub).read_bytes(), sub
    meta, ref = (json.loads((d / "corpus.json").read_text()) for d in (out, small_corpus))
    meta.pop("synthesis_seconds"), ref.pop("synthesis_seconds")
    assert meta == ref


def test_more_hours_extends_fewer_hours_trims(tmp_path, small_corpus):
    out = tmp_path / "c"
    build_corpus(out, hours=0.003, jobs=1, **SMALL)
    small = corpus_files(out)
    build_corpus(out, hours=0.006, jobs=1, **SMALL)
    full = corpus_files(out)
    assert full == corpus_files(small_corpus)
    assert small.items() < full.items()  # the smaller corpus is a prefix of the larger
    build_corpus(out, hours=0.003, jobs=1, **SMALL)
    assert corpus_files(out) == small  # shrinking removes the extra utterances


def test_seed_changes_the_corpus(tmp_path, small_corpus):
    out = tmp_path / "c"
    build_corpus(out, hours=0.002, jobs=1, **{**SMALL, "seed": 4})
    assert not set(corpus_files(out)) & set(corpus_files(small_corpus))


def test_committed_corpus_is_what_the_readme_command_makes(tmp_path):
    """tests/data/corpus is reproducible from the command in tests/data/README.md."""
    readme = (CORPUS.parent / "README.md").read_text()
    command = next(line.strip() for line in readme.splitlines() if line.strip().startswith("spokenlm synth-corpus"))
    argv = command.split()[1:]
    argv[argv.index("--out") + 1] = str(tmp_path / "corpus")
    assert cli.main(argv) == 0
    assert corpus_files(tmp_path / "corpus") == corpus_files(CORPUS)
    for sub in ("labels", "transcripts", "items"):
        for path in (CORPUS / sub).iterdir():
            assert (tmp_path / "corpus" / sub / path.name).read_bytes() == path.read_bytes(), path
    for split in SPLITS:  # manifests differ only by their root line
        ours, theirs = ((d / "manifests" / f"{split}.tsv").read_text().splitlines() for d in (tmp_path / "corpus", CORPUS))
        assert ours[1:] == theirs[1:]


# --------------------------------------------------------------------------- text


@pytest.mark.parametrize(
    "example, expected",
    [
        ("he ran away from home in a hurry", ("He ran away from home in a hurry.", "he ran away from home in a hurry")),
        ("the well-known author, alas, didn't come", ("The well known author, alas, didn't come.", "the well known author alas didn't come")),
        ("she has 3 cats and two dogs at home", None),  # digit
        ("the U.S. army arrived here this morning", None),  # acronym
        ("NATO forces were sent to the region", None),
        ("the (very) old man sat in the sun", None),  # brackets
        ("a dying fire", None),  # too short
        (" ".join(["word"] * 17), None),  # too long
    ],
)
def test_normalize_example(example, expected):
    result = normalize_example(example)
    if expected is None:
        assert result is None
    else:
        assert result == (expected[0], tuple(expected[1].split()))


def test_wordnet_sentences():
    sentences = load_sentences()
    assert 20_000 < len(sentences) < 24_000
    assert [s.index for s in sentences] == list(range(len(sentences)))
    assert len({s.words for s in sentences}) == len(sentences)
    assert all(6 <= len(s.words) <= 16 for s in sentences)
    assert shuffled(sentences, seed=1) == shuffled(sentences, seed=1) != shuffled(sentences, seed=2)


# --------------------------------------------------------------------------- bad input


def test_missing_flite_library_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingToolError, match="apt-get install libflite1"):
        Flite(empty)
    proc = run_cli("spokenlm", "synth-corpus", "--out", str(tmp_path / "c"), "--hours", "0.01", check=False,
                   env={"SPOKENLM_FLITE_LIBDIR": str(empty)})
    assert proc.returncode == 2
    # (fairseq logs an INFO line about tensorboardX at import; the error itself is one line)
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("INFO:")]
    assert "Traceback" not in proc.stderr and len(errors) == 1 and errors[0].startswith("spokenlm synth-corpus: error: ")
    assert "libflite.so.1" in proc.stderr and "apt-get install libflite1" in proc.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--hours", "0"], "--hours: 0.0 is not a positive"),
        (["--hours", "-1"], "--hours: -1.0 is not a positive"),
        (["--hours", "nan"], "--hours: nan is not a positive"),
        (["--hours", "0.01", "--jobs", "0"], "--jobs"),
        (["--hours", "0.01", "--voices", "slt", "--speakers-per-voice", "3"], "need at least 4"),
        (["--hours", "0.01", "--speakers-per-voice", "9"], "outside 1..4"),
        (["--hours", "0.01", "--test-fraction", "0.7"], "--test-fraction"),
        (["--hours", "0.01", "--flite-lib-dir", "/nonexistent"], "libflite.so.1: not found in /nonexistent"),
    ],
)
def test_bad_options(tmp_path, capsys, extra, message):
    assert cli.main(["synth-corpus", "--out", str(tmp_path / "c"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c" / "corpus.json").exists()


def test_unknown_voice_is_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["synth-corpus", "--out", str(tmp_path / "c"), "--hours", "1", "--voices", "kal"])
    assert exc.value.code == 2 and "invalid choice: 'kal'" in capsys.readouterr().err


def test_too_many_hours_for_the_sentences(tmp_path):
    """2 speakers x 2 sentences cannot fill an hour: a clear error once the pairs run out."""
    corpus._init_worker(None)
    jobs = corpus.planned_jobs(tmp_path, "test", speakers_for(["slt"], per_voice=2), load_sentences()[:2])
    with pytest.raises(ConfigError, match="ran out of"):
        corpus.synthesize_split(
            jobs, split="test", budget_s=3600, executor=corpus._InlineExecutor(), window=1, progress=corpus._Progress()
        )
    assert len(list((tmp_path / "alignments").glob("*.json"))) == 4
