"""Mel-spectrogram pictures: original vs resynthesised speech, one row per waveform."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core.report import save_figure, use_agg


def plot_mels(waves: Sequence[tuple[str, np.ndarray]], path: Path, *, title: str = "") -> Path:
    """One log-mel panel per (label, 16 kHz waveform), on a shared colour scale; PNG, atomic."""
    use_agg()
    import matplotlib.pyplot as plt

    from .losses import LogMel

    mel = LogMel()
    with torch.no_grad():
        specs = [mel(torch.as_tensor(np.asarray(w, dtype=np.float32))[None])[0].numpy() for _, w in waves]
    lo, hi = min(s.min() for s in specs), max(s.max() for s in specs)
    fig, axes = plt.subplots(len(specs), 1, figsize=(8, 1.8 * len(specs)), squeeze=False)
    for ax, (label, _), s in zip(axes[:, 0], waves, specs):
        ax.imshow(s, origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma",
                  extent=(0, s.shape[1] * 256 / 16_000, 0, s.shape[0]))
        ax.set_ylabel("mel bin")
        ax.set_title(label, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("seconds")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)
