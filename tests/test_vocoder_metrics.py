"""Resynthesis metrics: MCD against an independent slow DTW, F0 correlation on signals of known
pitch, and the PER of resynthesised vs original audio under a frame classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spokenlm_plugin.core.io import read_manifest
from spokenlm_plugin.core.audio import read_audio
from spokenlm_plugin.vocoder.evaluate import resynthesis_metrics
from spokenlm_plugin.vocoder.metrics import f0_correlation, mel_cepstral_distortion

from .units_support import make_frame_cls_checkpoint, make_hubert_checkpoint


def _slow_mcd(a: np.ndarray, b: np.ndarray, sr: int = 16000) -> float:
    """The definition written out: MFCC frames, RMS frame distance, plain O(MN) DTW with steps
    (1,0) (0,1) (1,1), accumulated cost / number of cells on the best path."""
    import torchaudio

    mfcc = torchaudio.transforms.MFCC(sr, n_mfcc=13, log_mels=True, melkwargs={
        "n_fft": 800, "win_length": 800, "hop_length": 200, "f_min": 20, "n_mels": 80,
        "window_fn": torch.hann_window})
    x, y = (mfcc(torch.tensor(w, dtype=torch.float32)).T.double().numpy() for w in (a, b))
    d = np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) / 13)
    m, n = d.shape
    cost = np.full((m, n), np.inf)
    length = np.zeros((m, n))
    for i in range(m):
        for j in range(n):
            if i == 0 and j == 0:
                cost[i, j], length[i, j] = d[0, 0], 1
                continue
            prev = [(cost[i - 1, j - 1], length[i - 1, j - 1]) if i and j else (np.inf, 0),
                    (cost[i - 1, j], length[i - 1, j]) if i else (np.inf, 0),
                    (cost[i, j - 1], length[i, j - 1]) if j else (np.inf, 0)]
            c, steps = min(prev, key=lambda t: t[0])
            cost[i, j], length[i, j] = c + d[i, j], steps + 1
    return float(cost[-1, -1] / length[-1, -1])


def test_mcd_matches_a_slow_reference(corpus_dir: Path) -> None:
    m = read_manifest(corpus_dir / "manifests" / "test.tsv")
    a = read_audio(m.path(m.rows[0]))[:16000]
    b = read_audio(m.path(m.rows[1]))[:12000]
    rng = np.random.default_rng(0)
    noisy = a + 0.01 * rng.normal(size=len(a)).astype(np.float32)
    assert mel_cepstral_distortion(a, a) == pytest.approx(0.0, abs=1e-2)  # fairseq: |x|^2+|y|^2-2xy rounding
    for x, y in [(a, b), (a, noisy)]:
        assert mel_cepstral_distortion(x, y) == pytest.approx(_slow_mcd(x, y), rel=1e-3)


def _voiced(f0: np.ndarray, sr: int = 16000) -> np.ndarray:
    """A pulse-train-like voiced signal with an F0 contour given per sample."""
    phase = 2 * np.pi * np.cumsum(f0) / sr
    return (0.3 * sum(np.sin(k * phase) / k for k in range(1, 6))).astype(np.float32)


def test_f0_correlation_follows_the_pitch_contour() -> None:
    t = np.arange(32000) / 16000
    rising = 120 + 60 * t
    falling = 240 - 60 * t
    assert f0_correlation(_voiced(rising), _voiced(rising)) > 0.95
    assert f0_correlation(_voiced(rising), _voiced(falling)) < -0.5


@pytest.fixture(scope="module")
def phone_model(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("phone_model")
    base = make_hubert_checkpoint(work / "base.pt")
    return make_frame_cls_checkpoint(work / "ft.pt", base, corpus_dir / "labels")


def test_per_of_resynthesis_next_to_the_original(corpus_dir: Path, phone_model: Path, tmp_path: Path) -> None:
    from spokenlm_plugin.finetune.evaluate import evaluate_phones
    from spokenlm_plugin.vocoder.synth import write_wav

    torch.set_num_threads(1)
    manifest = corpus_dir / "manifests" / "test.tsv"
    labels = corpus_dir / "labels" / "test.phn"
    m = read_manifest(manifest)
    copies, noise = tmp_path / "copies", tmp_path / "noise"
    rng = np.random.default_rng(0)
    for row in m.rows:
        wav = read_audio(m.path(row))
        write_wav(copies / f"{row.utt_id}.wav", wav)
        write_wav(noise / f"{row.utt_id}.wav", (0.05 * rng.normal(size=len(wav))).astype(np.float32))
    same = resynthesis_metrics(manifest, copies, phone_model=phone_model, labels=labels)["total"]
    # the original's PER is the classifier's PER on the split (fairseq's task pipeline, one by one)
    reference = evaluate_phones(phone_model, data=corpus_dir / "manifests", split="test", label_dir=corpus_dir / "labels")
    assert same["per_original"] == pytest.approx(reference.per, abs=0.02)
    # 16-bit copies of the originals: (almost) the same transcription and MCD ~ 0
    assert same["per_resynth"] == pytest.approx(same["per_original"], abs=0.02)
    assert same["mcd"] < 0.5
    other = resynthesis_metrics(manifest, noise, phone_model=phone_model, labels=labels)
    assert other["total"]["mcd"] > same["mcd"] + 5
    assert other["total"]["per_resynth"] != pytest.approx(same["per_resynth"], abs=0.02)
    assert other["total"]["per_original"] == same["per_original"]
    assert len(other["utterances"]) == len(m) and json.dumps(other)
