"""Pretrained HuBERT checkpoints: read and check them once, rebuild the encoder from a stored config.

A fine-tuned checkpoint must load without the pretrained file it started from (fairseq's
``hubert_asr`` re-reads ``w2v_path`` at load time). So the pretrained file is read only when a
model is first built: its ``{task, model}`` config is kept in the fine-tuning model's config
(``w2v_args``) and saved with the fine-tuned checkpoint, and a reload rebuilds the encoder from
that config alone, its weights coming from the fine-tuned state dict.
"""

from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from ..core.checkpoints import read_checkpoint
from ..core.errors import CheckpointError

#: Keys every HuBERT state dict has (CNN feature extractor and transformer encoder).
_REQUIRED_KEYS = ("feature_extractor.conv_layers.0.0.weight", "encoder.layers.0.self_attn.k_proj.weight")
#: Pretraining-only parameters, dropped when fine-tuning (the model is built without them).
_PRETRAINING_ONLY = ("label_embs_concat", "final_proj.", "target_glu.")


@dataclass(frozen=True)
class PretrainedHubert:
    """A pretrained HuBERT checkpoint, checked."""

    path: Path
    #: ``{"task": ..., "model": ...}`` of the pretraining run (fairseq's ``cfg`` without the rest).
    cfg: DictConfig
    state_dict: dict[str, torch.Tensor]
    #: fairseq task state (the pretraining label dictionaries), empty for converted checkpoints.
    task_state: dict[str, Any]


def load_pretrained(path: str | Path) -> PretrainedHubert:
    """Read a fairseq HuBERT checkpoint (the format of ``hubert_base_ls960.pt``); raise
    :class:`CheckpointError` if it is missing, unreadable or not a HuBERT model."""
    path = Path(path)
    hint = "pass a fairseq HuBERT checkpoint (e.g. hubert_base_ls960.pt, or one made by `spokenlm convert-hubert`)"
    # Read as saved, without fairseq's upgrade step: converted checkpoints and older ones with
    # 'args' instead of 'cfg' are handled below.
    state = read_checkpoint(path, hint=hint, what="pretrained HuBERT checkpoint", loader="pickle", required=("model",))
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"{path}: its 'model' entry is not a state dict, so not a fairseq checkpoint; {hint}")
    if state.get("cfg") is not None:
        cfg = state["cfg"] if isinstance(state["cfg"], DictConfig) else OmegaConf.create(state["cfg"])
    elif isinstance(state.get("args"), Namespace):
        from fairseq.dataclass.utils import convert_namespace_to_omegaconf

        cfg = convert_namespace_to_omegaconf(state["args"])
    else:
        raise CheckpointError(f"{path}: neither 'cfg' nor 'args' in the checkpoint, so not a fairseq checkpoint; {hint}")
    name = cfg.get("model", {}).get("_name") if cfg.get("model") is not None else None
    if name != "hubert":
        raise CheckpointError(
            f"{path}: the checkpoint holds a {name!r} model, not a pretrained HuBERT ('hubert'); {hint}"
        )
    missing = [k for k in _REQUIRED_KEYS if k not in state["model"]]
    if missing:
        raise CheckpointError(f"{path}: HuBERT weights missing ({', '.join(missing)}); {hint}")
    return PretrainedHubert(
        path=path,
        cfg=OmegaConf.create({"task": cfg.task, "model": cfg.model}),
        state_dict=state["model"],
        task_state=state.get("task_state") or {},
    )


def _known(dataclass_type: type, values: DictConfig) -> dict[str, Any]:
    """The entries of ``values`` that ``dataclass_type`` declares (checkpoints of other fairseq
    versions carry extra or missing fields)."""
    names = {f.name for f in fields(dataclass_type)}
    container = OmegaConf.to_container(values, resolve=True)
    return {k: v for k, v in container.items() if k in names}


def build_hubert(w2v_args: DictConfig, *, overrides: dict[str, Any]):
    """A fairseq ``HubertModel`` of the shape in ``w2v_args`` (random weights), without the
    pretraining-only modules, with ``overrides`` (dropouts, masking) applied to its config."""
    from fairseq.models.hubert import HubertConfig, HubertModel
    from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig

    task_cfg = OmegaConf.merge(
        OmegaConf.structured(HubertPretrainingConfig), _known(HubertPretrainingConfig, w2v_args.task)
    )
    model_values = _known(HubertConfig, w2v_args.model)
    # label_rate only sets the pretraining target ratio; a converted checkpoint may not have it.
    model_values.setdefault("label_rate", float(task_cfg.label_rate))
    model_cfg = OmegaConf.merge(OmegaConf.structured(HubertConfig), model_values, overrides)
    # [None]: no pretraining label dictionaries, so no label embeddings are created.
    model = _exact_padding_class(HubertModel)(model_cfg, task_cfg, [None])
    model.remove_pretraining_modules()
    return model


def _exact_padding_class(hubert_class: type) -> type:
    class ExactPaddingHubert(hubert_class):
        """fairseq's ``HubertModel`` whose frame padding mask follows the CNN arithmetic.

        fairseq cuts the sample mask into equal chunks, one per frame, so a padded utterance gets
        an extra "real" frame made of padding, which every other frame then attends to (15 % of
        the features' scale on a test model). Counting each row's real samples through the CNN
        gives exactly the frames an unpadded forward pass makes: padded fine-tuning batches and
        one-by-one read-out (dumps, evaluation) then see the same features.
        """

        def forward_padding_mask(self, features: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
            n = (~padding_mask).sum(-1)
            for block in self.feature_extractor.conv_layers:
                conv = block[0]
                (k,), (stride,) = conv.kernel_size, conv.stride
                n = torch.div(n - k, stride, rounding_mode="floor") + 1
            n = n.clamp(min=0)
            return torch.arange(features.size(1), device=features.device)[None, :] >= n[:, None]

    return ExactPaddingHubert


def load_encoder_weights(model: torch.nn.Module, pretrained: PretrainedHubert) -> None:
    """Copy the pretrained weights into ``model`` (built by :func:`build_hubert`)."""
    result = model.load_state_dict(pretrained.state_dict, strict=False)
    unexpected = [k for k in result.unexpected_keys if not k.startswith(_PRETRAINING_ONLY)]
    if result.missing_keys or unexpected:
        raise CheckpointError(
            f"{pretrained.path}: weights do not match the model its config describes "
            f"(missing: {result.missing_keys[:5]}, unexpected: {unexpected[:5]}); the checkpoint is damaged "
            "or was written by an incompatible converter"
        )


def keep_pretrained_cfg(model_cfg: DictConfig, model: torch.nn.Module) -> None:
    """Copy the ``w2v_args`` a model filled in (in its own merged copy of the config) back into
    the run's config, which is what fairseq saves in the checkpoint."""
    w2v_args = getattr(getattr(model, "cfg", None), "w2v_args", None)
    if w2v_args is not None:
        with open_dict(model_cfg):
            model_cfg.w2v_args = w2v_args
