"""Speed perturbation of the fine-tuning data: labels follow the audio, draws are reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spokenlm_plugin.finetune.task import PhonemeFrameClsConfig, PhonemeFrameClsTask, speed_perturb

SR = 16_000


@pytest.mark.parametrize("factor", [0.9, 0.95, 1.0, 1.04, 1.1])
def test_labels_follow_the_resampled_audio(factor: float) -> None:
    # A tone whose phone changes every 10 frames: after perturbation the label boundaries sit where
    # the tone changes in the new audio.
    frames = 60
    freqs = np.repeat([300.0, 900.0, 300.0, 900.0, 300.0, 900.0], 10)
    t = np.arange(frames * 320) / SR
    wave = torch.from_numpy(np.sin(2 * np.pi * np.repeat(freqs, 320) * t).astype(np.float32))
    labels = np.repeat(np.arange(6), 10)
    out, new = speed_perturb(wave, labels, factor, sample_rate=SR)
    assert abs(len(out) / 320 - len(new)) <= 1
    assert abs(len(new) - frames / factor) <= 1
    assert np.all(np.diff(new) >= 0) and new[0] == 0 and new[-1] == 5
    # Each new frame's dominant frequency is the one of its label's segment (away from boundaries).
    for j in range(len(new)):
        seg = out[j * 320 : (j + 1) * 320].numpy()
        if len(seg) < 320 or (j > 0 and new[j - 1] != new[j]) or (j + 1 < len(new) and new[j + 1] != new[j]):
            continue
        spectrum = np.abs(np.fft.rfft(seg))
        peak = np.fft.rfftfreq(320, 1 / SR)[spectrum.argmax()]
        expected = freqs[labels == new[j]][0] * factor
        assert abs(peak - expected) <= 60, (j, peak, expected)


def test_factor_one_is_the_identity() -> None:
    wave, labels = torch.randn(3200), np.arange(10)
    out, new = speed_perturb(wave, labels, 1.0, sample_rate=SR)
    assert out is wave and new is labels


def _task(corpus_dir: Path, perturb: float) -> PhonemeFrameClsTask:
    cfg = PhonemeFrameClsConfig(data=str(corpus_dir / "manifests"), label_dir=str(corpus_dir / "labels"),
                                speed_perturb=perturb, perturb_split="train", seed=3)
    task = PhonemeFrameClsTask.setup_task(cfg)
    for split in ("train", "valid"):
        task.load_dataset(split)
    return task


def test_only_the_perturb_split_changes_and_draws_repeat(corpus_dir: Path) -> None:
    plain, perturbed = _task(corpus_dir, 0.0), _task(corpus_dir, 0.1)
    assert torch.equal(plain.dataset("valid")[0]["source"], perturbed.dataset("valid")[0]["source"])
    train = perturbed.dataset("train")
    lengths = {}
    for epoch in (1, 2, 3):
        train.set_epoch(epoch)
        items = [train[i] for i in range(4)]
        again = [train[i] for i in range(4)]
        assert all(torch.equal(a["source"], b["source"]) for a, b in zip(items, again))  # reproducible
        lengths[epoch] = [len(x["source"]) for x in items]
        for item in items:  # labels stay within the CNN's frame count, as the task's check requires
            assert abs(len(item["source"]) / 320 - len(item["label"])) <= 1.5
    assert len({tuple(v) for v in lengths.values()}) > 1  # a new draw each epoch
    original = [len(plain.dataset("train")[i]["source"]) for i in range(4)]
    assert any(a != b for a, b in zip(original, lengths[1]))
    ratio = np.array(original) / np.array(lengths[1])
    assert np.all((ratio > 0.88) & (ratio < 1.12))
