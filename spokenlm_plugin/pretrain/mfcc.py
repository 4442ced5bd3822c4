"""MFCC features for HuBERT's first pretraining iteration (the k-means targets).

The features of fairseq's ``examples/hubert/simple_kmeans`` recipe: 13 Kaldi MFCCs without
energy (25 ms window, 10 ms shift, so 100 Hz), plus deltas and delta-deltas: 39 dims. Targets stay
at 100 Hz, which fairseq's ``hubert_pretraining`` task accepts as ``label_rate: 100``: the model
reads every second target to match its 50 Hz frames (``feat2tar_ratio`` = 2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..core.phones import SAMPLE_RATE

if TYPE_CHECKING:  # imported where used: `spokenlm <command> --help` must not wait seconds for torch
    import torch

#: MFCC frame rate (10 ms shift).
MFCC_RATE = 100


def mfcc_features(wav: np.ndarray | torch.Tensor, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """39-d MFCC + delta + delta-delta of a mono waveform, ``(frames, 39)`` float32 at 100 Hz."""
    import torch
    import torchaudio

    x = torch.as_tensor(wav, dtype=torch.float32).view(1, -1)
    with torch.no_grad():
        mfcc = torchaudio.compliance.kaldi.mfcc(x, sample_frequency=sample_rate, use_energy=False)  # (T, 13)
        mfcc = mfcc.transpose(0, 1)  # compute_deltas works along the last axis
        delta = torchaudio.functional.compute_deltas(mfcc)
        delta2 = torchaudio.functional.compute_deltas(delta)
        feats = torch.cat([mfcc, delta, delta2], dim=0).transpose(0, 1)
    return feats.contiguous().numpy()


