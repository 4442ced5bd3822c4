"""Pretrained HuBERT checkpoints: read and check them once; the config the fine-tuning encoder is rebuilt from.

A fine-tuned checkpoint must load without the pretrained file it started from. fairseq's
``hubert_asr`` encoder rebuilds the pretrained model from ``w2v_args`` when it is set, and reads
``w2v_path`` only when it is not (and then also needs the pretraining label dictionaries again).
So the plugin reads the pretrained file itself, once, when a model is first built: the checks
here give one-line errors, its ``{task, model}`` config becomes ``w2v_args`` (saved with the
fine-tuned checkpoint) and its weights are copied in after the encoder is built; a reload
rebuilds the encoder from ``w2v_args`` alone, its weights coming from the fine-tuned state dict.
"""

from __future__ import annotations

import functools
from argparse import Namespace
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from ..core.checkpoints import read_checkpoint
from ..core.errors import CheckpointError, ConfigError

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
    container = cast(dict[str, Any], OmegaConf.to_container(values, resolve=True))  # a DictConfig gives a dict
    return {k: v for k, v in container.items() if k in names}


def encoder_args(pretrained: PretrainedHubert) -> DictConfig:
    """``w2v_args`` for fairseq's ``HubertEncoder``: the pretrained ``{task, model}`` config
    restricted to the fields this fairseq declares."""
    from fairseq.models.hubert import HubertConfig
    from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig

    task = _known(HubertPretrainingConfig, pretrained.cfg.task)
    model = _known(HubertConfig, pretrained.cfg.model)
    # label_rate only sets the pretraining target ratio; a converted checkpoint may not have it.
    model.setdefault("label_rate", float(task.get("label_rate", HubertPretrainingConfig.label_rate)))
    return OmegaConf.create({"task": task, "model": model})


def check_normalize(w2v_args: DictConfig, *, normalize: bool, path: str) -> None:
    """Raise :class:`ConfigError` unless the fine-tuning task normalises waveforms as pretraining
    did (fairseq only asserts it)."""
    pretrained = bool(w2v_args.task.get("normalize", False))
    if pretrained != bool(normalize):
        raise ConfigError(
            f"{path}: the model was pretrained with normalize={pretrained} but task.normalize={normalize}; "
            "set task.normalize to match"
        )


def use_exact_padding(model: torch.nn.Module) -> None:
    """Give a fairseq ``HubertModel`` (built by fairseq) the exact frame padding mask below."""
    # arg-type: torch's stubs type Module.__hash__ as an instance method, so mypy deems classes unhashable
    model.__class__ = _exact_padding_class(type(model))  # type: ignore[arg-type]


@functools.cache
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
    """Copy the pretrained weights into ``model`` (a ``HubertModel`` without its pretraining modules),
    checking that every weight is there (fairseq loads them with ``strict=False``, unchecked)."""
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
