"""Resynthesis metrics of one (original, resynthesised) pair of 16 kHz waveforms.

- MCD: fairseq's own ``batch_mel_cepstral_distortion`` (``fairseq.tasks.text_to_speech``): 13 MFCCs
  (c0 included) of an 80-band log-mel spectrogram, 50 ms Hann window, 12.5 ms hop; frame distance
  ``sqrt(||x - y||^2 / 13)``; DTW; accumulated cost divided by the path length. Not SPTK's MCD
  (no ``10 / ln 10 * sqrt(2 ...)`` scaling, c0 kept): compare numbers only with the same definition.
- F0 correlation: Pearson correlation of the two F0 tracks (torchaudio's NCCF
  ``detect_pitch_frequency``, 10 ms frames) over the frames voiced in the original, voiced meaning
  energy above 10 % of the utterance's peak frame RMS and a zero-crossing rate below 0.15 (periodic
  speech, not frication or silence). The resynthesis keeps the original's timing (320 samples per
  unit from sample 0), so frames are paired by index, without alignment.
"""

from __future__ import annotations

import numpy as np

#: Frame of the F0 and voicing tracks (torchaudio's default).
F0_FRAME_S = 0.01


def mel_cepstral_distortion(original: np.ndarray, resynthesised: np.ndarray, *, sample_rate: int = 16_000) -> float:
    """fairseq's DTW MCD (path-normalised) between two waveforms."""
    import torch

    from fairseq.tasks.text_to_speech import batch_mel_cepstral_distortion

    ((distortion, _),) = batch_mel_cepstral_distortion(
        [torch.as_tensor(original, dtype=torch.float32)], [torch.as_tensor(resynthesised, dtype=torch.float32)],
        sample_rate)
    return float(distortion)


def f0_track(wav: np.ndarray, *, sample_rate: int = 16_000) -> np.ndarray:
    """F0 (Hz) of every 10 ms frame (torchaudio NCCF, 60-500 Hz search range)."""
    import torch

    import torchaudio.functional as AF

    return AF.detect_pitch_frequency(torch.as_tensor(wav, dtype=torch.float32), sample_rate,
                                     frame_time=F0_FRAME_S, freq_low=60, freq_high=500).numpy()


def voiced_frames(wav: np.ndarray, *, sample_rate: int = 16_000) -> np.ndarray:
    """Boolean per 10 ms frame: loud enough and a low zero-crossing rate (see the module doc)."""
    hop = int(F0_FRAME_S * sample_rate)
    n = len(wav) // hop
    frames = np.asarray(wav[: n * hop], dtype=np.float64).reshape(n, hop)
    rms = np.sqrt((frames**2).mean(axis=1))
    zcr = (np.diff(np.signbit(frames).astype(np.int8), axis=1) != 0).mean(axis=1)
    return (rms > 0.1 * rms.max()) & (zcr < 0.15) if n else np.zeros(0, dtype=bool)


def f0_correlation(original: np.ndarray, resynthesised: np.ndarray, *, sample_rate: int = 16_000) -> float:
    """Pearson correlation of F0 over the original's voiced frames (nan if under 3 such frames)."""
    f_orig, f_syn = f0_track(original, sample_rate=sample_rate), f0_track(resynthesised, sample_rate=sample_rate)
    voiced = voiced_frames(original, sample_rate=sample_rate)
    n = min(len(f_orig), len(f_syn), len(voiced))
    mask = voiced[:n]
    a, b = f_orig[:n][mask], f_syn[:n][mask]
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
