"""The fairseq compatibility fixes (spokenlm_plugin.compat) under torch 2.11 / torchaudio 2.11."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import spokenlm_plugin  # noqa: F401  (applies the fixes)
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fairseq transformer LM trained for a few updates through the real CLIs."""
    work = tmp_path_factory.mktemp("compat_lm")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(12)]
    for split, n in (("train", 200), ("valid", 20)):
        # A deterministic successor structure, so the LM has something to learn.
        lines = []
        for _ in range(n):
            w = rng.randrange(12)
            lines.append(" ".join(words[(w + k) % 12] for k in range(rng.randint(5, 12))))
        (work / f"{split}.txt").write_text("\n".join(lines) + "\n")
    run_cli("fairseq-preprocess", "--only-source", "--trainpref", str(work / "train.txt"),
            "--validpref", str(work / "valid.txt"), "--destdir", str(work / "bin"), "--workers", "1")
    return work


def _train(work: Path, max_update: int) -> str:
    return run_cli(
        "fairseq-train", str(work / "bin"), "--user-dir", "spokenlm_plugin",
        "--task", "language_modeling", "--arch", "transformer_lm", "--decoder-layers", "1",
        "--decoder-embed-dim", "32", "--decoder-ffn-embed-dim", "64", "--decoder-attention-heads", "2",
        "--tokens-per-sample", "64", "--max-tokens", "512", "--optimizer", "adam", "--lr", "0.005",
        "--max-update", str(max_update), "--save-dir", str(work / "ckpt"), "--no-epoch-checkpoints",
        "--cpu", "--seed", "1", "--log-format", "simple", "--log-interval", "1",
    ).stdout


@pytest.mark.slow  # a whole CLI integration run: CI runs it (--slow)
def test_train_resume_and_generate(tiny_lm: Path) -> None:
    _train(tiny_lm, 4)
    ckpt = tiny_lm / "ckpt" / "checkpoint_last.pt"
    assert ckpt.is_file()
    # Resuming reloads checkpoint_last.pt: the torch >= 2.6 weights_only failure point.
    out = _train(tiny_lm, 6)
    assert "loaded checkpoint" in out.lower() and "@ 4 updates" in out
    state = torch.load(ckpt, weights_only=False)
    assert state["optimizer_history"][-1]["num_updates"] == 6

    gen = run_cli(
        "fairseq-generate", str(tiny_lm / "bin"), "--user-dir", "spokenlm_plugin",
        "--task", "language_modeling", "--path", str(ckpt), "--gen-subset", "valid",
        "--batch-size", "4", "--max-len-a", "1", "--max-len-b", "5", "--beam", "1", "--sampling",
        "--sampling-topk", "3", "--sample-break-mode", "eos", "--tokens-per-sample", "64", "--cpu", "--seed", "1",
    ).stdout
    prompts = {line.split("\t")[0][2:]: line.split("\t")[1].split() for line in gen.splitlines() if line.startswith("S-")}
    hypos = {line.split("\t")[0][2:]: line.split("\t")[2].split() for line in gen.splitlines() if line.startswith("H-")}
    assert len(hypos) == 20 and hypos.keys() == prompts.keys()  # every valid line, none dropped
    follows = total = 0
    for key, hypo in hypos.items():
        prompt = prompts[key]
        assert hypo[: len(prompt)] == prompt and len(hypo) > len(prompt)
        for a, b in zip(hypo[len(prompt) - 1 :], hypo[len(prompt) :]):
            total += 1
            follows += int(b[1:]) == (int(a[1:]) + 1) % 12
    # The reloaded model continues the training data's successor pattern.
    assert follows / total > 0.5


def test_plain_torch_load_still_defaults_to_weights_only(tmp_path: Path) -> None:
    """The fix is scoped to fairseq's checkpoint loader, not torch.load everywhere."""
    import argparse
    import pickle

    path = tmp_path / "x.pt"
    torch.save({"args": argparse.Namespace(a=1)}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


def test_get_waveform_without_sox(tmp_path: Path) -> None:
    from fairseq.data.audio.audio_utils import get_waveform

    t = np.arange(16000) / 16000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t) * 0.5], axis=1) * 0.5
    sf.write(tmp_path / "s.wav", stereo, 16000)
    wav, sr = get_waveform(str(tmp_path / "s.wav"), mono=True, output_sample_rate=8000)
    assert sr == 8000 and wav.shape == (1, 8000)
    # Downmix = channel mean; resampling keeps a 440 Hz tone's amplitude.
    assert np.abs(wav).max() == pytest.approx(0.375, abs=0.02)
    same, sr2 = get_waveform(str(tmp_path / "s.wav"), mono=False)
    assert sr2 == 16000 and same.shape == (2, 16000)


@pytest.mark.parametrize("n", [1, 7, 8, 12, 43])
def test_batch_by_size_keeps_every_index(n: int) -> None:
    """fairseq-fixed drops a last batch smaller than required_batch_size_multiple; the fix restores it."""
    from fairseq.data import data_utils

    rng = np.random.default_rng(n)
    sizes = rng.integers(5, 30, size=n)
    indices = np.argsort(sizes, kind="stable")
    batches = data_utils.batch_by_size(
        indices, lambda i: int(sizes[i]), num_tokens_vec=sizes[indices], max_tokens=100,
        required_batch_size_multiple=8,
    )
    flat = np.concatenate(batches).tolist()
    assert flat == indices.tolist()
    assert all(int(sizes[b].max()) * len(b) <= 100 for b in batches)
