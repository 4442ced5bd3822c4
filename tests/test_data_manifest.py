"""`spokenlm manifest`: sorted recursive listing, audio checks, conversion and skipping, on real audio files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spokenlm_plugin.core.audio import check_audio
from spokenlm_plugin.data.manifest import build_manifest
from spokenlm_plugin.core.errors import AudioFormatError, ManifestError
from spokenlm_plugin.core.io import read_manifest
from tests.conftest import run_cli
from tests.data_support import assert_user_error


def write_audio(path: Path, num_samples: int, *, sr: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A real audio file: a tone plus noise (so resampling has something to preserve)."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sr
    mono = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(num_samples)
    data = np.stack([mono * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else mono
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype("float32"), sr)
    return data


@pytest.fixture
def audio_dir(tmp_path: Path) -> Path:
    root = tmp_path / "audio"
    write_audio(root / "spk2" / "b_1.flac", 16000, seed=1)
    write_audio(root / "spk1" / "z_0.flac", 8000 + 17, seed=2)
    write_audio(root / "spk1" / "a_2.flac", 12345, seed=3)
    write_audio(root / "spk10" / "deep" / "c_3.flac", 4000, seed=4)
    return root


def test_manifest_sorted_recursive_with_sample_counts(audio_dir: Path, tmp_path: Path) -> None:
    report = build_manifest(audio_dir, tmp_path / "m" / "train.tsv")
    lines = (tmp_path / "m" / "train.tsv").read_text().splitlines()
    assert lines[0] == str(audio_dir.resolve())
    assert lines[1:] == [
        "spk1/a_2.flac\t12345",
        "spk1/z_0.flac\t8017",
        "spk10/deep/c_3.flac\t4000",
        "spk2/b_1.flac\t16000",
    ]
    assert report.num_files == 4 and report.num_samples == 12345 + 8017 + 4000 + 16000
    # Deterministic: a second run writes the same bytes.
    build_manifest(audio_dir, tmp_path / "m" / "again.tsv")
    assert (tmp_path / "m" / "again.tsv").read_text() == (tmp_path / "m" / "train.tsv").read_text()
    assert read_manifest(tmp_path / "m" / "train.tsv", check_files=True).utt_ids == ["a_2", "z_0", "c_3", "b_1"]


def test_manifest_wav_extension_and_no_files(audio_dir: Path, tmp_path: Path) -> None:
    write_audio(audio_dir / "w" / "x.wav", 2000)
    build_manifest(audio_dir, tmp_path / "w.tsv", ext="wav")
    assert (tmp_path / "w.tsv").read_text().splitlines()[1:] == ["w/x.wav\t2000"]
    with pytest.raises(ManifestError, match="no \\*.ogg files"):
        build_manifest(audio_dir, tmp_path / "o.tsv", ext="ogg")


def test_duplicate_stems_are_an_error(audio_dir: Path, tmp_path: Path) -> None:
    write_audio(audio_dir / "spk3" / "b_1.flac", 1000)
    with pytest.raises(ManifestError, match="b_1"):
        build_manifest(audio_dir, tmp_path / "m.tsv")


def test_truncated_flac_is_caught_without_full_decode(tmp_path: Path) -> None:
    good = tmp_path / "good.flac"
    write_audio(good, 48000)
    bad = tmp_path / "bad.flac"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert check_audio(good).num_samples == 48000
    with pytest.raises(AudioFormatError, match="bad.flac: header says 48000 samples, reading the last ones fails"):
        check_audio(bad)
    with pytest.raises(AudioFormatError, match="shorter than one HuBERT frame"):
        write_audio(tmp_path / "tiny.flac", 399)
        check_audio(tmp_path / "tiny.flac")


@pytest.mark.parametrize(
    ("name", "make", "needle"),
    [
        ("corrupt.flac", lambda p: p.write_bytes(b"not audio at all " * 50), "unreadable or corrupt"),
        ("empty.flac", lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
        ("narrow.flac", lambda p: write_audio(p, 8000, sr=8000), "8000 Hz, expected 16000 Hz"),
        ("stereo.flac", lambda p: write_audio(p, 16000, channels=2), "2 channels, expected mono"),
    ],
)
def test_bad_audio_cli_error(audio_dir: Path, tmp_path: Path, name: str, make, needle: str) -> None:
    bad = audio_dir / "spk9" / name
    bad.parent.mkdir(parents=True, exist_ok=True)
    make(bad)
    out = tmp_path / "m" / "train.tsv"
    proc = run_cli("spokenlm", "manifest", str(audio_dir), "--out", str(out), check=False)
    assert_user_error(proc, str(bad), needle)
    assert not out.parent.exists() or not any(out.parent.iterdir()), "nothing half-written"


def test_skip_bad_counts_and_lists(audio_dir: Path, tmp_path: Path) -> None:
    (audio_dir / "spk9").mkdir()
    (audio_dir / "spk9" / "empty.flac").write_bytes(b"")
    write_audio(audio_dir / "spk9" / "narrow.flac", 8000, sr=8000)
    write_audio(audio_dir / "spk9" / "stereo.flac", 16000, channels=2)
    out = tmp_path / "m" / "train.tsv"
    proc = run_cli("spokenlm", "manifest", str(audio_dir), "--out", str(out), "--skip-bad")
    assert "skipped 3 bad files" in proc.stdout
    assert len(read_manifest(out).rows) == 4
    listed = (tmp_path / "m" / "train.skipped.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in listed] == ["spk9/empty.flac", "spk9/narrow.flac", "spk9/stereo.flac"]
    # A clean rerun removes the stale list.
    (audio_dir / "spk9" / "empty.flac").unlink()
    (audio_dir / "spk9" / "narrow.flac").unlink()
    (audio_dir / "spk9" / "stereo.flac").unlink()
    build_manifest(audio_dir, out, skip_bad=True)
    assert not (tmp_path / "m" / "train.skipped.txt").exists()


def test_resample_to_dir_converts_rate_and_channels(tmp_path: Path) -> None:
    src = tmp_path / "raw"
    write_audio(src / "s" / "ok.flac", 16000)
    narrow = write_audio(src / "s" / "narrow.flac", 8000, sr=8000)
    stereo = write_audio(src / "s" / "stereo.flac", 16000, channels=2)
    write_audio(src / "s" / "both.wav", 22050, sr=44100, channels=2)
    conv = tmp_path / "conv"
    report = build_manifest(src, tmp_path / "m.tsv", resample_to_dir=conv)
    build_manifest(src, tmp_path / "w.tsv", ext="wav", resample_to_dir=conv)
    man = read_manifest(tmp_path / "m.tsv", check_files=True)
    assert man.root == conv.resolve() and report.num_files == 3
    assert {r.relpath: r.num_samples for r in man.rows} == {
        "s/narrow.flac": 16000, "s/ok.flac": 16000, "s/stereo.flac": 16000}
    assert read_manifest(tmp_path / "w.tsv").rows[0].num_samples == 8000
    for rel in ("s/narrow.flac", "s/ok.flac", "s/stereo.flac", "s/both.wav"):
        info = check_audio(conv / rel)
        assert (info.sample_rate, info.channels) == (16000, 1)
    assert (conv / "s" / "ok.flac").read_bytes() == (src / "s" / "ok.flac").read_bytes()
    # Down-mix = channel mean (PCM-16 quantisation aside).
    mixed, _ = sf.read(conv / "s" / "stereo.flac")
    np.testing.assert_allclose(mixed, stereo.mean(axis=1), atol=2e-4)
    # Upsampling keeps the 440 Hz tone: compare with the exact tone at 16 kHz away from the edges.
    up, _ = sf.read(conv / "s" / "narrow.flac")
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert np.abs(up[500:-500] - tone[500:-500]).max() < 0.05
    assert np.abs(narrow).max() > 0.25
