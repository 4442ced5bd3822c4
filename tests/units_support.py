"""Tiny fairseq HuBERT checkpoints and small inputs for the units tests (tests/test_units*.py).

The checkpoints have the real on-disk format: what ``fairseq-train`` saves (``cfg`` with model and
task, ``model`` state dict, ``task_state`` with the dictionaries, bookkeeping entries), built from
fairseq's own ``HubertModel`` and the plugin's ``hubert_frame_cls`` with a few thousand weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
from omegaconf import OmegaConf

import spokenlm_plugin  # noqa: F401  (registers the plugin's tasks and models)

#: HuBERT's CNN arithmetic (400-sample receptive field, 320 hop) with 32 channels.
CONV_LAYERS = "[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2"


def _save(path: Path, cfg, model: torch.nn.Module, task_state: dict) -> Path:
    cfg_dict = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
    state = {
        "args": None,
        "cfg": cfg_dict,
        "model": model.state_dict(),
        "criterion": None,
        "optimizer_history": [{"criterion_name": "HubertCriterion", "optimizer_name": "Adam",
                               "lr_scheduler_state": {}, "num_updates": 0}],
        "task_state": task_state,
        "extra_state": {"epoch": 1, "train_iterator": {"epoch": 1, "iterations_in_epoch": 0}},
        "last_optimizer_state": None,
    }
    torch.save(state, path)
    return path


def make_hubert_checkpoint(
    path: Path,
    *,
    extractor_mode: Literal["default", "layer_norm"] = "default",
    layers: int = 3,
    dim: int = 32,
    normalize: bool = False,
    seed: int = 0,
) -> Path:
    """A pretrained-format HuBERT (model ``hubert``, task ``hubert_pretraining``) with random weights.

    The task's data folder does not exist: loading must rely on the saved task state.
    """
    from fairseq.data import Dictionary
    from fairseq.dataclass.configs import FairseqConfig
    from fairseq.models.hubert import HubertConfig, HubertModel
    from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig, HubertPretrainingTask

    torch.manual_seed(seed)
    model_cfg = HubertConfig(
        _name="hubert", label_rate=50.0, extractor_mode=extractor_mode, encoder_layers=layers,
        encoder_embed_dim=dim, encoder_ffn_embed_dim=2 * dim, encoder_attention_heads=2,
        conv_feature_layers=CONV_LAYERS, final_dim=16, conv_pos=16, conv_pos_groups=4,
    )
    task_cfg = HubertPretrainingConfig(
        _name="hubert_pretraining", data=str(path.parent / "no-such-data-dir"), labels=["km"],
        label_rate=50.0, normalize=normalize,
    )
    task = HubertPretrainingTask(task_cfg)
    dictionary = Dictionary()
    for unit in range(20):
        dictionary.add_symbol(str(unit))
    task.state.merge_state_dict({"dictionaries": [dictionary]})  # what fairseq-train loads from dict.km.txt
    model = HubertModel(model_cfg, task_cfg, task.dictionaries)
    with torch.no_grad():  # HuBERT's init leaves the CNN close to silent; make layers differ clearly
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cfg = FairseqConfig()
    cfg.model, cfg.task = model_cfg, task_cfg
    return _save(path, cfg, model, task.state_dict())


def build_frame_classifier(pretrained: Path, label_dir: Path, **model_fields):
    """``(cfg, task, model)``: a ``hubert_frame_cls`` model (task ``phoneme_frame_cls``, labels and
    ``dict.phn.txt`` in ``label_dir``) built on ``pretrained`` as fairseq-train builds it."""
    from fairseq import tasks
    from fairseq.dataclass.configs import FairseqConfig

    from spokenlm_plugin.finetune.model import HubertFrameClsConfig
    from spokenlm_plugin.finetune.task import PhonemeFrameClsConfig

    cfg = FairseqConfig()
    cfg.task = PhonemeFrameClsConfig(_name="phoneme_frame_cls", data=str(label_dir), label_dir=str(label_dir))
    cfg.model = HubertFrameClsConfig(_name="hubert_frame_cls", w2v_path=str(pretrained), max_update=10, **model_fields)
    cfg = OmegaConf.structured(cfg)
    task = tasks.setup_task(cfg.task)
    return cfg, task, task.build_model(cfg.model)


def make_frame_cls_checkpoint(path: Path, pretrained: Path, label_dir: Path, *, seed: int = 0) -> Path:
    """A ``hubert_frame_cls`` checkpoint (task ``phoneme_frame_cls``) built on ``pretrained``."""
    torch.manual_seed(seed)
    cfg, task, model = build_frame_classifier(pretrained, label_dir)
    _ = task.target_dictionary  # fairseq saves the loaded dictionary in the task state
    with torch.no_grad():
        model.w2v_encoder.proj.weight.normal_()
    return _save(path, cfg, model, task.state_dict())


def write_noise_corpus(root: Path, lengths: list[int], *, seed: int = 0) -> Path:
    """Random-noise FLAC files and their manifest ``root/noise.tsv`` (a split named ``noise``)."""
    rng = np.random.default_rng(seed)
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    lines = [str(audio.resolve())]
    for i, n in enumerate(lengths):
        # Band-limited noise with a slow envelope, so features vary along the utterance.
        wav = np.convolve(rng.normal(size=n), np.ones(4) / 4, mode="same") * (1.2 + np.sin(np.arange(n) / 900))
        sf.write(audio / f"utt{i:03d}.flac", (0.1 * wav).astype(np.float32), 16000)
        lines.append(f"utt{i:03d}.flac\t{n}")
    manifest = root / "noise.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest
