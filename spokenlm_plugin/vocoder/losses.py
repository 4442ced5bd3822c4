"""HiFi-GAN losses: least-squares GAN, feature matching, mel-spectrogram L1 (speech-resynthesis
recipe: 80 mels, n_fft 1024, hop 256, window 1024, 0-8 kHz, log of the clamped magnitude)."""

from __future__ import annotations

from typing import cast  # sum() of a non-empty list of tensors is a tensor; its stub says "| Literal[0]"

import torch
import torch.nn.functional as F
from torch import nn

from .model import DiscOutput


class LogMel(nn.Module):
    """log(max(mel magnitude, 1e-5)) of a batch of waveforms (B, T) -> (B, 80, frames)."""

    def __init__(self, *, sample_rate: int = 16_000, n_fft: int = 1024, hop: int = 256, n_mels: int = 80,
                 f_max: float = 8000.0) -> None:
        super().__init__()
        import torchaudio

        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, win_length=n_fft, hop_length=hop, f_min=0.0, f_max=f_max,
            n_mels=n_mels, power=1.0, norm="slaney", mel_scale="slaney", center=True, pad_mode="reflect")

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.clamp(self.mel(wav), min=1e-5))


def discriminator_loss(real: list[DiscOutput], fake: list[DiscOutput]) -> torch.Tensor:
    """LSGAN: sum over branches of mean (1 - D(real))^2 + mean D(fake)^2."""
    return cast(torch.Tensor, sum(torch.mean((1 - r[1]) ** 2) + torch.mean(f[1] ** 2) for r, f in zip(real, fake)))


def generator_adv_loss(fake: list[DiscOutput]) -> torch.Tensor:
    """LSGAN: sum over branches of mean (1 - D(fake))^2."""
    return cast(torch.Tensor, sum(torch.mean((1 - f[1]) ** 2) for f in fake))


def feature_matching_loss(real: list[DiscOutput], fake: list[DiscOutput]) -> torch.Tensor:
    """Sum over branches and layers of the mean L1 between real and fake features."""
    return cast(torch.Tensor, sum(F.l1_loss(f, r.detach()) for rb, fb in zip(real, fake) for r, f in zip(rb[0], fb[0])))


def mel_loss(mel: LogMel, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Mean L1 between log-mel spectrograms of equal-length waveforms (B, T)."""
    return F.l1_loss(mel(fake), mel(real))
