"""Resynthesis metrics of one (original, resynthesised) pair of 16 kHz waveforms.

- MCD: fairseq's own ``batch_mel_cepstral_distortion`` (``fairseq.tasks.text_to_speech``): 13 MFCCs
  (c0 included) of an 80-band log-mel spectrogram, 50 ms Hann window, 12.5 ms hop; frame distance
  ``sqrt(||x - y||^2 / 13)``; DTW; accumulated cost divided by the path length. Not SPTK's MCD
  (no ``10 / ln 10 * sqrt(2 ...)`` scaling, c0 kept): compare numbers only with the same definition.
- SPTK MCD (the paper's, bootphon/unit-hifigan ``mcd.py``: ESPnet's ``evaluate_mcd`` settings at
  16 kHz): both waveforms peak-normalised to 0.95; periodograms of symmetric Hamming windows of 512
  samples, hop 256, no padding; mel-cepstra of order 23, all-pass constant 0.42, by SPTK's
  non-iterative estimate (pysptk ``sp2mc``: log periodogram -> real cepstrum with c0 halved ->
  ``freqt``); c0 dropped (level-invariant); exact DTW (torchdtw) on the Euclidean frame distance;
  MCD = ``10 sqrt(2) / ln 10`` times the mean distance over the path, in dB. Utterances under 512
  samples have no frame: nan.
- F0 correlation: Pearson correlation of the two F0 tracks (torchaudio's NCCF
  ``detect_pitch_frequency``, 10 ms frames) over the frames voiced in the original, voiced meaning
  energy above 10 % of the utterance's peak frame RMS and a zero-crossing rate below 0.15 (periodic
  speech, not frication or silence). The resynthesis keeps the original's timing (320 samples per
  unit from sample 0), so frames are paired by index, without alignment.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np

#: Frame of the F0 and voicing tracks (torchaudio's default).
F0_FRAME_S = 0.01

McdKind = Literal["fairseq", "sptk"]

#: The SPTK MCD's analysis (module doc): window, hop, mel-cepstral order (c1..c23 kept), all-pass constant.
SPTK_WINDOW = 512
SPTK_HOP = 256
SPTK_ORDER = 23
SPTK_ALPHA = 0.42
#: Peak level both waveforms are scaled to before analysis.
SPTK_PEAK = 0.95
#: Natural-log cepstral distance to dB: 10 sqrt(2) / ln 10.
MCD_DB = 10 * math.sqrt(2) / math.log(10)


def mel_cepstral_distortion(original: np.ndarray, resynthesised: np.ndarray, *, sample_rate: int = 16_000) -> float:
    """fairseq's DTW MCD (path-normalised) between two waveforms."""
    import torch

    from fairseq.tasks.text_to_speech import batch_mel_cepstral_distortion

    ((distortion, _),) = batch_mel_cepstral_distortion(
        [torch.as_tensor(original, dtype=torch.float32)], [torch.as_tensor(resynthesised, dtype=torch.float32)],
        sample_rate)
    return float(distortion)


def _pysptk():
    from ..core.errors import MissingToolError

    with warnings.catch_warnings():  # pysptk 1.0.1 imports pkg_resources, which warns about itself
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        try:
            import pysptk
        except ImportError as e:
            raise MissingToolError(
                f"the SPTK MCD needs pysptk ({e}); install it: .venv/bin/pip install pysptk==1.0.1 "
                "(builds with a C compiler), or use --mcd fairseq"
            ) from None
    return pysptk


def sptk_mel_cepstra(wav: np.ndarray) -> np.ndarray:
    """Mel-cepstra c1..c23 (frames x 23) of a peak-normalised waveform (module doc); 0 frames under 512 samples."""
    x = np.asarray(wav, dtype=np.float64)
    if len(x) < SPTK_WINDOW:
        return np.zeros((0, SPTK_ORDER))
    x = SPTK_PEAK * x / max(float(np.abs(x).max()), 1e-8)
    frames = np.lib.stride_tricks.sliding_window_view(x, SPTK_WINDOW)[::SPTK_HOP] * np.hamming(SPTK_WINDOW)
    power = np.maximum(np.abs(np.fft.rfft(frames, axis=1)) ** 2, 1e-10)
    return _pysptk().sp2mc(power, order=SPTK_ORDER, alpha=SPTK_ALPHA)[:, 1:]


def sptk_mel_cepstral_distortion(original: np.ndarray, resynthesised: np.ndarray) -> float:
    """The paper's MCD in dB (module doc): exact DTW of the SPTK mel-cepstra, mean distance on the path."""
    import torch
    from scipy.spatial.distance import cdist
    from torchdtw import dtw

    a, b = sptk_mel_cepstra(original), sptk_mel_cepstra(resynthesised)
    if not len(a) or not len(b):
        return float("nan")
    # torchdtw's dtw: the accumulated cost of the best path divided by the path's length.
    return MCD_DB * float(dtw(torch.from_numpy(cdist(a, b))))


def mcd(original: np.ndarray, resynthesised: np.ndarray, *, kind: McdKind) -> float:
    """The MCD of ``kind``: ``"fairseq"`` (:func:`mel_cepstral_distortion`) or ``"sptk"`` (the paper's)."""
    if kind == "sptk":
        return sptk_mel_cepstral_distortion(original, resynthesised)
    return mel_cepstral_distortion(original, resynthesised)


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
