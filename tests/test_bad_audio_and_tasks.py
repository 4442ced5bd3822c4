"""Bad audio and bad options end in one line naming the file or option: NaN / inf samples,
WAV / FLAC files cut short, audio that fairseq's datasets would only reject in a traceback, options of
``pretrain-small`` fairseq asserts on, ABX items of another split, stereo in ``baseline-classifier``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spokenlm_plugin import cli
from spokenlm_plugin.core.audio import audio_info, check_audio, read_audio
from spokenlm_plugin.core.errors import AudioFormatError, ConfigError
from spokenlm_plugin.core.io import read_manifest
from spokenlm_plugin.core.phones import num_frames
from tests.conftest import REPO, fails_in_one_line, run_cli




def _audio(path: Path, samples: int, *, sr: int = 16000, channels: int = 1, fmt: str = "WAV",
           subtype: str = "PCM_16") -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.random.default_rng(samples).standard_normal((samples, channels)).astype("float32")
    sf.write(path, x, sr, format=fmt, subtype=subtype)
    return x


def _cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _relocated(manifest: Path, root: Path, out: Path) -> Path:
    """``manifest``'s rows under another audio root."""
    rows = manifest.read_text().splitlines()[1:]
    out.write_text("\n".join([str(root), *rows]) + "\n")
    return out


# ------------------------------------------------------------------------------ NaN / inf samples


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_read_audio_refuses_non_finite_samples(tmp_path: Path, bad: float) -> None:
    x = _audio(tmp_path / "x.wav", 8000, subtype="FLOAT")
    x[4321, 0] = bad
    sf.write(tmp_path / "x.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioFormatError) as info:
        read_audio(tmp_path / "x.wav")
    message = str(info.value)
    assert str(tmp_path / "x.wav") in message and "NaN/inf samples at sample 4321" in message and "\n" not in message
    # Stereo with the bad sample in the second channel: the frame is named too.
    y = np.zeros((8000, 2), np.float32)
    y[77, 1] = bad
    sf.write(tmp_path / "y.wav", y, 16000, subtype="DOUBLE")
    with pytest.raises(AudioFormatError, match="at sample 77 "):
        read_audio(tmp_path / "y.wav", downmix=True)


def test_feature_commands_blame_the_audio_for_nan(corpus_dir: Path, tmp_path: Path, capsys) -> None:
    """Before: features came out NaN and the message blamed the model / dtype (or int16 casts kept noise)."""
    audio = tmp_path / "audio"
    shutil.copytree(corpus_dir / "audio" / "test", audio)
    manifest = _relocated(corpus_dir / "manifests" / "test.tsv", audio, tmp_path / "test.tsv")
    m = read_manifest(manifest)
    victim = m.path(m.rows[1])
    x, sr = sf.read(victim, dtype="float32")
    x[100] = np.nan
    sf.write(victim, x, sr, subtype="FLOAT", format="WAV")  # the .flac name holds a float WAV (libsndfile reads it)
    fails_in_one_line(["baseline-features", "--kind", "logmel", "--manifest", str(manifest), "--out", str(tmp_path / "f"),
            "--no-progress"], capsys, str(victim), "NaN/inf samples at sample 100")


# ------------------------------------------------------------------------------ truncated audio


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_truncated_wav_is_refused_by_every_reader(tmp_path: Path, subtype: str) -> None:
    wav = tmp_path / "cut.wav"
    _audio(wav, 16000, subtype=subtype)
    assert check_audio(wav).num_samples == 16000 and len(read_audio(wav)) == 16000
    _cut_in_half(wav)
    held = sf.info(str(wav)).frames  # libsndfile reads what is there, without a word
    assert 0 < held < 8000
    for reader in (audio_info, check_audio, read_audio):
        with pytest.raises(AudioFormatError) as info:
            reader(wav)
        message = str(info.value)
        assert message.startswith(f"{wav}: header says 16000 samples, file holds {held}: truncated"), message
        assert "re-encode or remove" in message and "\n" not in message


def test_truncated_flac_read_names_the_cut(tmp_path: Path) -> None:
    flac = tmp_path / "cut.flac"
    _audio(flac, 48000, fmt="FLAC")
    _cut_in_half(flac)
    with pytest.raises(AudioFormatError, match="cut.flac: header says 48000 samples, decoding fails .*truncated"):
        read_audio(flac)


def test_manifest_refuses_a_truncated_wav(tmp_path: Path, capsys) -> None:
    """Before: the manifest recorded the samples present (7989 of 16000), exit 0."""
    audio = tmp_path / "audio"
    _audio(audio / "a.wav", 16000)
    _audio(audio / "b.wav", 16000)
    _cut_in_half(audio / "b.wav")
    out = tmp_path / "m" / "train.tsv"
    fails_in_one_line(["manifest", str(audio), "--ext", "wav", "--out", str(out)], capsys, str(audio / "b.wav"),
           "header says 16000 samples, file holds", "truncated", "--skip-bad")
    assert not out.exists()
    assert cli.main(["manifest", str(audio), "--ext", "wav", "--out", str(out), "--skip-bad"]) == 0
    assert out.read_text().splitlines()[1:] == ["a.wav\t16000"]


def test_streamed_and_padded_wavs_are_not_flagged(tmp_path: Path) -> None:
    """A data size of 0xFFFFFFFF (streamed) or a chunk after the data (LIST) is not a cut."""
    wav = tmp_path / "s.wav"
    _audio(wav, 4000)
    data = bytearray(wav.read_bytes())
    at = data.index(b"data")
    data[at + 4 : at + 8] = (0xFFFFFFFF).to_bytes(4, "little")
    wav.write_bytes(bytes(data))
    assert check_audio(wav).num_samples == 4000
    listed = tmp_path / "l.wav"
    _audio(listed, 4001, subtype="PCM_U8")  # odd data size: the chunk after it starts on a pad byte
    with open(listed, "ab") as f:
        f.write(b"\0LIST" + (4).to_bytes(4, "little") + b"INFO")
    assert len(read_audio(listed)) == 4001


def test_committed_audio_is_not_flagged() -> None:
    files = sorted(p for ext in ("*.flac", "*.wav") for p in (REPO / "tests" / "data").rglob(ext))
    assert files
    for path in files:
        assert check_audio(path).num_samples == len(read_audio(path))


# ------------------------------------------------------------------------------ fairseq-train phoneme_frame_cls


@pytest.mark.parametrize("damage", ["8 kHz", "text named .wav"])
def test_frame_cls_training_refuses_bad_audio_in_one_line(corpus_dir: Path, tmp_path: Path, damage: str) -> None:
    """Before: fairseq's dataset raised 'sample rate: 8000, need 16000' / 'Failed to load' in a traceback."""
    from tests.units_support import make_hubert_checkpoint

    base = make_hubert_checkpoint(tmp_path / "base.pt", layers=1)
    data, audio = tmp_path / "data", tmp_path / "audio"
    data.mkdir()
    shutil.copytree(corpus_dir / "audio" / "valid", audio)
    shutil.copy(corpus_dir / "labels" / "dict.phn.txt", data)
    lines = (corpus_dir / "manifests" / "valid.tsv").read_text().splitlines()
    relpath, samples = lines[3].split("\t")
    if damage == "8 kHz":
        victim = audio / relpath
        sf.write(victim, np.zeros(int(samples) // 2, np.float32), 8000, format="FLAC")
    else:
        victim = audio / "notes.wav"
        victim.write_text("this is not audio\n" * 100)
        lines[3] = f"notes.wav\t{samples}"  # same length: the labels still match the manifest
    for split in ("train", "valid"):
        (data / f"{split}.tsv").write_text("\n".join([str(audio), *lines[1:]]) + "\n")
        shutil.copy(corpus_dir / "labels" / "valid.phn", data / f"{split}.phn")
    proc = run_cli("fairseq-train", str(data), "--user-dir", "spokenlm_plugin", "--task", "phoneme_frame_cls",
                   "--arch", "hubert_frame_cls", "--w2v-path", str(base), "--criterion", "frame_phoneme_ce",
                   "--optimizer", "adam", "--lr", "1e-4", "--max-update", "1", "--batch-size", "2", "--cpu",
                   "--save-dir", str(tmp_path / "ckpt"), cwd=REPO, check=False, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("fairseq-train: error: ") and str(victim) in last, last
    assert ("sample rate 8000 Hz" if damage == "8 kHz" else "unreadable or corrupt audio") in last, last
    assert "--skip-bad" not in last  # fairseq-train has no such option


# ------------------------------------------------------------------------------ pretrain-small options


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--updates", "0", "--updates 0: must be a positive number"),
        ("--updates", "-5", "--updates -5: must be a positive number"),
        ("--k", "0", "--k 0: the targets need at least 2 clusters"),
        ("--k", "1", "--k 1: the targets need at least 2 clusters"),
        ("--max-tokens", "1000", "--max-tokens 1000: a batch must hold one crop of 32000 samples"),
        ("--lr", "0", "--lr 0.0: must be a positive learning rate"),
        ("--lr", "nan", "--lr nan: must be a positive learning rate"),
        ("--layers", "0", "--layers 0: must be 1 or more"),
        ("--dim", "100", "--dim 100: must be a positive multiple of 16"),
        ("--conv-channels", "0", "--conv-channels 0: must be 1 or more"),
        ("--threads", "0", "--threads 0: must be 1 or more"),
        ("--seed", "-1", "--seed -1: must be 0 or more"),
    ],
)
def test_pretrain_small_checks_its_options_first(corpus_dir: Path, tmp_path: Path, capsys, option: str, value: str,
                                                 needle: str) -> None:
    """Before: ``--updates 0`` ran k-means, then fairseq-train failed ("AssertionError; see the log")."""
    out = tmp_path / "run"
    # A tiny run first (the option under test overrides it): should a check go missing, the run stays short.
    tiny = ["--updates", "2", "--layers", "1", "--dim", "32", "--conv-channels", "8", "--k", "4", "--threads", "1"]
    fails_in_one_line(["pretrain-small", "--corpus", str(corpus_dir), "--out", str(out), *tiny, option, value], capsys, needle)
    assert not out.exists()


def test_pretrain_small_targets_only_checks_k(corpus_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    fails_in_one_line(["pretrain-small", "--corpus", str(corpus_dir), "--out", str(out), "--targets-only", "--k", "0"], capsys,
           "--k 0: the targets need at least 2 clusters")
    fails_in_one_line(["pretrain-small", "--corpus", str(corpus_dir), "--out", str(out), "--targets-only", "--target-layer", "2"],
           capsys, "--init-from and --target-layer go together")
    assert not out.exists()


def test_pretrain_options_check_lists_every_problem() -> None:
    from spokenlm_plugin.pretrain.hubert import PretrainSettings, SmallHubert, check_options

    check_options(settings=PretrainSettings(), model=SmallHubert(), threads=1)
    with pytest.raises(ConfigError, match="--k 1: .*; --updates 0: "):
        check_options(settings=PretrainSettings(max_update=0, k=1), model=SmallHubert())


# ------------------------------------------------------------------------------ ABX items of another split


def _onehot_units(manifest: Path, out: Path) -> Path:
    rows = read_manifest(manifest).rows
    rng = np.random.default_rng(0)
    out.write_text("".join(" ".join(map(str, rng.integers(0, 8, num_frames(r.num_samples)))) + "\n" for r in rows))
    return out


def test_abx_units_with_items_of_another_split(corpus_dir: Path, tmp_path: Path, capsys) -> None:
    """Before: fastabx's error named only a temporary folder (spokenlm-abx-units-...)."""
    manifest = corpus_dir / "manifests" / "valid.tsv"
    km = _onehot_units(manifest, tmp_path / "valid.km")
    item = corpus_dir / "items" / "test.phoneme.item"
    a_test_utt = read_manifest(corpus_dir / "manifests" / "test.tsv").utt_ids
    line = fails_in_one_line(["abx", "--item", str(item), "--units", str(km), "--manifest", str(manifest), "--speaker", "within",
                   "--device", "cpu"], capsys, str(item), str(manifest), str(km), "another split", "spokenlm items")
    assert "spokenlm-abx-units" not in line and any(repr(u) in line for u in a_test_utt), line


def test_abx_features_with_items_of_another_split(corpus_dir: Path, tmp_path: Path, capsys) -> None:
    feats = tmp_path / "feats"
    feats.mkdir()
    for utt in read_manifest(corpus_dir / "manifests" / "valid.tsv").utt_ids:
        np.save(feats / f"{utt}.npy", np.zeros((5, 3), np.float32))
    item = corpus_dir / "items" / "test.phoneme.item"
    fails_in_one_line(["abx", "--item", str(item), "--features", str(feats), "--speaker", "within", "--device", "cpu"], capsys,
           str(feats), f"the item file {item}", "e.g. '", "dump-features --per-utterance")


# ------------------------------------------------------------------------------ baseline-classifier --downmix


def test_baseline_classifier_downmix(corpus_dir: Path, tmp_path: Path, capsys) -> None:
    """Before: stereo audio was refused with a hint to pass --downmix, an option the command did not have."""
    audio = tmp_path / "stereo"
    manifest = _relocated(corpus_dir / "manifests" / "test.tsv", audio, tmp_path / "test.tsv")
    m = read_manifest(manifest)
    for row in m.rows:
        x, sr = sf.read(read_manifest(corpus_dir / "manifests" / "test.tsv").path(row), dtype="float32")
        m.path(row).parent.mkdir(parents=True, exist_ok=True)
        sf.write(m.path(row), np.stack([x, x], axis=1), sr, subtype="FLOAT", format="WAV")
    lab = corpus_dir / "labels"
    argv = ["baseline-classifier", "--train-manifest", str(manifest), "--train-labels", str(lab / "test.phn"),
            "--test-manifest", str(manifest), "--test-labels", str(lab / "test.phn"), "--dict", str(lab / "dict.phn.txt"),
            "--max-iter", "20"]
    fails_in_one_line([*argv, "--json", str(tmp_path / "no.json")], capsys, str(m.path(m.rows[0])), "2 channels", "--downmix")
    assert not (tmp_path / "no.json").exists()
    assert cli.main([*argv, "--downmix", "--json", str(tmp_path / "stereo.json")]) == 0
    mono = corpus_dir / "manifests" / "test.tsv"
    assert cli.main([*argv[:2], str(mono), *argv[3:6], str(mono), *argv[7:], "--json", str(tmp_path / "mono.json")]) == 0
    stereo, plain = json.loads((tmp_path / "stereo.json").read_text()), json.loads((tmp_path / "mono.json").read_text())
    assert stereo["downmix"] and not plain["downmix"]
    # The two channels are the same signal: their mean is that signal, bit for bit.
    assert stereo["frame_accuracy"] == plain["frame_accuracy"] and stereo["per"] == plain["per"]
