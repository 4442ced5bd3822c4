"""The paper's MCD (`resynth-eval --mcd sptk`): pysptk + torchdtw against a reference written out
here in numpy (framing, SPTK's mel-cepstral recursion, a plain DTW, the dB formula), a pinned value,
and the command's columns."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from spokenlm_plugin.cli import main
from spokenlm_plugin.core.audio import read_audio
from spokenlm_plugin.core.io import read_manifest, write_manifest
from spokenlm_plugin.vocoder.metrics import sptk_mel_cepstra, sptk_mel_cepstral_distortion


def reference_mel_cepstra(wav: np.ndarray, *, order: int = 23, alpha: float = 0.42) -> np.ndarray:
    """c1..c_order of every 512-sample frame (hop 256), from the definitions:

    peak 0.95; symmetric Hamming window; periodogram |X|^2 floored at 1e-10; real cepstrum of the log
    periodogram (inverse DFT) with c0 halved; SPTK's freqt (Oppenheim's all-pass recursion, SPTK
    freqt.c) from the 512 cepstral coefficients to ``order + 1`` mel-cepstral ones; c0 dropped.
    """
    x = wav.astype(np.float64)
    x = 0.95 * x / np.abs(x).max()
    n = np.arange(512)
    window = 0.54 - 0.46 * np.cos(2 * np.pi * n / 511)
    frames = np.stack([x[s : s + 512] * window for s in range(0, len(x) - 512 + 1, 256)])
    spectrum = np.fft.fft(frames, axis=1)
    log_power = np.log(np.maximum(spectrum.real**2 + spectrum.imag**2, 1e-10))
    cepstrum = np.fft.ifft(log_power, axis=1).real
    cepstrum[:, 0] /= 2
    # freqt: for each input coefficient, from the last to the first, update the output recursively.
    beta = 1 - alpha * alpha
    g = np.zeros((len(frames), order + 1))
    for m in range(511, -1, -1):
        d = g.copy()
        g[:, 0] = cepstrum[:, m] + alpha * d[:, 0]
        g[:, 1] = beta * d[:, 0] + alpha * d[:, 1]
        for k in range(2, order + 1):
            g[:, k] = d[:, k - 1] + alpha * (d[:, k] - g[:, k - 1])
    return g[:, 1:]


def reference_mcd(a: np.ndarray, b: np.ndarray) -> float:
    """(10 / ln 10) sqrt(2 sum_d (c_d - c'_d)^2) per frame pair; plain O(NM) DTW with steps (1,1), (1,0),
    (0,1) on the summed cost; the mean of the pair distances on the best path."""
    x, y = reference_mel_cepstra(a), reference_mel_cepstra(b)
    dist = np.array([[10 / math.log(10) * math.sqrt(2 * float(((u - v) ** 2).sum())) for v in y] for u in x])
    n, m = dist.shape
    cost, length = np.full((n, m), np.inf), np.zeros((n, m), dtype=int)
    for i in range(n):
        for j in range(m):
            if i == 0 and j == 0:
                cost[0, 0], length[0, 0] = dist[0, 0], 1
                continue
            options = [(cost[i - 1, j - 1], length[i - 1, j - 1]) if i and j else (np.inf, 0),
                       (cost[i, j - 1], length[i, j - 1]) if j else (np.inf, 0),
                       (cost[i - 1, j], length[i - 1, j]) if i else (np.inf, 0)]
            best, steps = min(options, key=lambda t: t[0])
            cost[i, j], length[i, j] = best + dist[i, j], steps + 1
    return float(cost[-1, -1] / length[-1, -1])


@pytest.fixture(scope="module")
def waves(corpus_dir: Path) -> list[np.ndarray]:
    m = read_manifest(corpus_dir / "manifests" / "test.tsv")
    return [read_audio(m.path(row)) for row in m.rows[:2]]


def test_sptk_mcd_matches_the_reference(waves: list[np.ndarray]) -> None:
    a, b = waves[0][:16000], waves[1][:12000]
    noisy = a + (0.01 * np.random.default_rng(0).normal(size=len(a))).astype(np.float32)
    np.testing.assert_allclose(sptk_mel_cepstra(a), reference_mel_cepstra(a), rtol=1e-9, atol=1e-9)
    assert sptk_mel_cepstra(a).shape == ((16000 - 512) // 256 + 1, 23)
    for x, y in [(a, b), (b, a), (a, noisy)]:
        assert sptk_mel_cepstral_distortion(x, y) == pytest.approx(reference_mcd(x, y), rel=1e-9)
    assert sptk_mel_cepstral_distortion(a, a) == 0
    # Peak-normalised and c0 dropped: the level of either side does not matter (to float32 rounding).
    assert sptk_mel_cepstral_distortion(0.2 * a, b) == pytest.approx(sptk_mel_cepstral_distortion(a, b), rel=1e-6)
    # Pinned (pysptk 1.0.1, torchdtw 0.4.2); the bootphon/unit-hifigan mcd.py code gives the same to 1e-5.
    assert sptk_mel_cepstral_distortion(a, b) == pytest.approx(7.96734, abs=1e-5)
    assert math.isnan(sptk_mel_cepstral_distortion(a[:511], b))


def test_resynth_eval_offers_both_mcds(corpus_dir: Path, waves: list[np.ndarray], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from spokenlm_plugin.vocoder.synth import write_wav

    m = read_manifest(corpus_dir / "manifests" / "test.tsv")
    manifest = tmp_path / "two.tsv"
    write_manifest(manifest, m.root, m.rows[:2])
    rng = np.random.default_rng(1)
    for row, wav in zip(m.rows[:2], waves):
        write_wav(tmp_path / "noisy" / f"{row.utt_id}.wav", wav + (0.02 * rng.normal(size=len(wav))).astype(np.float32))
    argv = ["resynth-eval", "--manifest", str(manifest), "--wavs", str(tmp_path / "noisy")]
    assert main([*argv, "--mcd", "both", "--json", str(tmp_path / "both.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split("\t") == ["utt_id", "mcd", "mcd_sptk", "f0_corr"]
    assert "mcd_sptk: the paper's MCD in dB" in out[-1] and "fairseq" in out[-1]
    result = json.loads((tmp_path / "both.json").read_text())
    written = [read_audio(tmp_path / "noisy" / f"{row.utt_id}.wav") for row in m.rows[:2]]
    for r, wav, syn in zip(result["utterances"], waves, written):
        assert r["mcd_sptk"] == pytest.approx(sptk_mel_cepstral_distortion(wav, syn), rel=1e-9)
        assert r["mcd_sptk"] > 1
    assert result["total"]["mcd_sptk"] == pytest.approx(np.mean([r["mcd_sptk"] for r in result["utterances"]]))
    assert main([*argv, "--mcd", "sptk"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split("\t") == ["utt_id", "mcd_sptk", "f0_corr"]
    assert main(argv) == 0  # fairseq's stays the default
    assert capsys.readouterr().out.splitlines()[0].split("\t") == ["utt_id", "mcd", "f0_corr"]
