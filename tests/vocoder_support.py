"""Small inputs for the vocoder tests: gold-phone units of the test corpus (50 Hz, K = 40) and tiny
vocoders trained on them in a few seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from spokenlm_plugin.units.phone_units import write_phone_units
from spokenlm_plugin.vocoder.config import DiscriminatorConfig, TrainConfig
from spokenlm_plugin.vocoder.data import UnitSet, VocoderCorpus
from spokenlm_plugin.vocoder.train import train_vocoder

#: Phones of tests/data/corpus/labels/dict.phn.txt: the unit vocabulary of the gold-phone units.
K = 40
#: A generator narrow enough for seconds-long CPU tests (the published width is 512).
CHANNELS = 32


def phone_km(corpus: Path, out: Path) -> dict[str, Path]:
    """``out/<split>.km`` for train / valid / test: each 50 Hz frame's gold phone as a unit."""
    paths = {}
    for split in ("train", "valid", "test"):
        paths[split] = out / f"{split}.km"
        if not paths[split].is_file():
            write_phone_units(corpus / "labels" / f"{split}.phn", corpus / "labels" / "dict.phn.txt", paths[split])
    return paths


def tiny_train(corpus: Path, km: Path, out: Path, *, steps: int, mel_only: bool = True, **kwargs) -> dict:
    """A 32-channel vocoder on the train split; mel-only by default (the fastest way to learn)."""
    cfg = TrainConfig(steps=steps, batch_size=2, segment_units=16, checkpoint_every=kwargs.pop("checkpoint_every", 1000),
                      valid_every=0, adversarial_from=steps if mel_only else 0, lr=kwargs.pop("lr", 2e-4),
                      discriminator=DiscriminatorConfig(scale=1 / 32))
    return train_vocoder(corpus / "manifests" / "train.tsv", [UnitSet("units", km, K)], out, train=cfg,
                         channels=CHANNELS, embedding_dim=32, progress=False, log=lambda _: None, **kwargs)


def interrupt_at_batch(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Make training stop (KeyboardInterrupt, as Ctrl-C) when it draws its ``n``-th batch (1 = at once)."""
    segments = VocoderCorpus.segments
    calls = {"n": 0}

    def interrupted(self, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return segments(self, **kwargs)

    monkeypatch.setattr(VocoderCorpus, "segments", interrupted)
