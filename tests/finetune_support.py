"""fairseq-train arguments of the phoneme fine-tuning tests (tests/test_finetune.py,
tests/test_distributed.py). The ``corpus`` and ``tiny_base`` fixtures they train on are in
tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

PLUGIN = str(Path(__file__).resolve().parents[1] / "spokenlm_plugin")


def common_args(corpus: Path, save_dir: Path, *, max_update: int) -> list[str]:
    """Data, optimisation and logging arguments shared by the frame and CTC fine-tuning runs."""
    return [
        str(corpus / "manifests"), "--user-dir", PLUGIN, "--label-dir", str(corpus / "labels"),
        "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-08",
        "--lr", "0.002", "--lr-scheduler", "tri_stage", "--phase-ratio", "[0.1,0.4,0.5]",
        "--init-lr-scale", "0.01", "--final-lr-scale", "0.05", "--clip-norm", "5.0",
        "--max-update", str(max_update), "--max-tokens", "160000", "--seed", "1",
        "--save-dir", str(save_dir), "--no-epoch-checkpoints", "--num-workers", "0",
        "--log-format", "json", "--log-interval", "1",
    ]


def frame_args(corpus: Path, base: Path, save_dir: Path, *, max_update: int) -> list[str]:
    """``fairseq-train`` of the frame classifier (``phoneme_frame_cls``) on the pretrained ``base``."""
    return [
        "fairseq-train", *common_args(corpus, save_dir, max_update=max_update),
        "--task", "phoneme_frame_cls", "--arch", "hubert_frame_cls", "--w2v-path", str(base),
        "--criterion", "frame_phoneme_ce",
    ]
