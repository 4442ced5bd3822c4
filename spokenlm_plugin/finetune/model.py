"""Model ``hubert_frame_cls``: a pretrained HuBERT plus a linear phone classifier on one layer.

Built on fairseq's fine-tuning encoder (``hubert_asr``'s ``HubertEncoder`` and ``HubertAsrConfig``):
the pretrained model rebuilt from ``w2v_args`` without its pretraining modules, fine-tuning
dropouts and masking applied to its config, final dropout, ``freeze_finetune_updates``. What this
model changes, following the paper's code:

- the classifier reads transformer layer ``layer`` (fairseq's encoder reads the last) and has one
  output per phone (not per dictionary symbol: no special symbols);
- the CNN feature extractor is frozen unless ``train_cnn`` (a small base on a CPU budget gains
  from training it); while the encoder is frozen (default: the first tenth of ``max_update``) it
  also runs in eval mode, a fixed feature extractor (no dropout, no layerdrop), and only the
  classifier trains; masking applies in training only;
- the pretrained file is read once, at the first build, with one-line errors, and the fine-tuned
  checkpoint is self-contained (see :mod:`spokenlm_plugin.finetune.pretrained`); the frame padding
  mask is exact (``pretrained._exact_padding_class``).

Checkpoints written before the model was built on ``HubertEncoder`` (keys ``hubert.*``, ``head.*``)
load through :meth:`HubertFrameClassifier.upgrade_state_dict_named`.
"""

# No `from __future__ import annotations`: fairseq reads config field types at run time.
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from fairseq.models import BaseFairseqModel, register_model
from fairseq.models.hubert.hubert_asr import HubertAsrConfig, HubertEncoder
from omegaconf import II, open_dict
from torch import nn

from ..core.errors import ConfigError
from .pretrained import check_normalize, encoder_args, load_encoder_weights, load_pretrained, use_exact_padding

logger = logging.getLogger(__name__)

#: Key prefixes of checkpoints made before this model used fairseq's encoder -> now.
_OLD_PREFIXES = {"hubert.": "w2v_encoder.w2v_model.", "head.": "w2v_encoder.proj."}


@dataclass
class HubertFrameClsConfig(HubertAsrConfig):
    layer: Optional[int] = field(
        default=None,
        metadata={"help": "transformer layer (1-based, like HubertModel's output_layer) feeding the classifier; "
                  "default: the last"},
    )
    freeze_finetune_updates: Optional[int] = field(
        default=None,
        metadata={"help": "train only the classifier for this many updates; default: a tenth of max_update. "
                  "A value >= max_update gives a linear probe"},
    )
    max_update: int = field(
        default=II("optimization.max_update"),
        metadata={"help": "the run's max_update (for the default freeze_finetune_updates)"},
    )
    train_cnn: bool = field(
        default=False,
        metadata={"help": "train the CNN feature extractor with the encoder (after freeze_finetune_updates); "
                  "default: frozen, the paper's recipe"},
    )
    feature_grad_mult: float = field(
        default=0.0,
        metadata={"help": "with train_cnn: scale of the CNN's gradient (default 0: unscaled, 1.0)"},
    )
    autoregressive: bool = field(
        default=False, metadata={"help": "always false: no decoder (read by fairseq's HubertEncoder)"}
    )
    # The paper's fine-tuning settings as defaults (fairseq's switch masking and layerdrop off).
    apply_mask: bool = field(default=True, metadata={"help": "apply time and channel masking in training"})
    mask_prob: float = field(default=0.75, metadata={"help": "probability of a frame starting a time mask"})
    mask_channel_prob: float = field(default=0.5, metadata={"help": "probability of a channel starting a channel mask"})
    layerdrop: float = field(default=0.1, metadata={"help": "probability of skipping a transformer layer in training"})
    activation_dropout: float = field(default=0.1, metadata={"help": "dropout inside the feed-forward blocks"})


def _pretrained_overrides(cfg: HubertFrameClsConfig) -> dict[str, Any]:
    """The fine-tuning settings of the pretrained model's config: the ones ``HubertEncoder`` applies
    when it reads ``w2v_path`` itself (it does not when given ``w2v_args``, as here)."""
    names = (
        "dropout", "activation_dropout", "dropout_input", "attention_dropout", "mask_length", "mask_prob",
        "mask_selection", "mask_other", "no_mask_overlap", "mask_channel_length", "mask_channel_prob",
        "mask_channel_selection", "mask_channel_other", "no_mask_channel_overlap",
    )
    overrides = {name: cfg[name] for name in names}
    overrides["encoder_layerdrop"] = cfg.layerdrop
    # 0: fairseq runs the CNN under no_grad.
    overrides["feature_grad_mult"] = (cfg.feature_grad_mult or 1.0) if cfg.train_cnn else 0.0
    return overrides


class _NoLabels:
    """What ``HubertEncoder`` reads from the fine-tuning task: the task state it hands to the
    pretraining task, here without label dictionaries (the model is then built without label
    embeddings, so neither the pretraining labels nor the pretrained file are needed to rebuild
    it), and the target dictionary, here none (no projection: the phone classifier is built below)."""

    target_dictionary = None

    @staticmethod
    def state_dict() -> dict[str, Any]:
        return {"dictionaries": [None]}


class FrameClsEncoder(HubertEncoder):
    """fairseq's ``HubertEncoder`` whose ``proj`` (``num_classes`` outputs) reads layer ``cfg.layer``."""

    def __init__(self, cfg: HubertFrameClsConfig, *, num_classes: int) -> None:
        with open_dict(cfg.w2v_args):
            cfg.w2v_args.model.update(_pretrained_overrides(cfg))
        super().__init__(cfg, _NoLabels())
        use_exact_padding(self.w2v_model)
        self.num_layers = len(self.w2v_model.encoder.layers)
        self.layer = self.check_layer(cfg.layer) if cfg.layer is not None else self.num_layers
        if cfg.freeze_finetune_updates is None:
            self.freeze_finetune_updates = int(0.1 * cfg.max_update) if cfg.max_update and cfg.max_update > 0 else 0
        if not cfg.train_cnn:
            # Frozen CNN weights stay out of the optimizer, not only out of the graph.
            self.w2v_model.feature_extractor.requires_grad_(False)
        self.proj = nn.Linear(self.w2v_model.encoder.embedding_dim, num_classes)

    def check_layer(self, layer: int) -> int:
        if not 1 <= layer <= self.num_layers:
            raise ConfigError(f"layer {layer}: the encoder has layers 1..{self.num_layers}")
        return layer

    @property
    def frozen(self) -> bool:
        return self.num_updates < self.freeze_finetune_updates

    def set_num_updates(self, num_updates: int) -> None:
        was_frozen = self.frozen
        super().set_num_updates(num_updates)
        if was_frozen != self.frozen:
            # At the switch during training only; loading a finished checkpoint jumps past it silently.
            log = logger.info if num_updates == self.freeze_finetune_updates else logger.debug
            log(f"update {num_updates}: encoder {'frozen' if self.frozen else 'unfrozen'}")
            self.train(self.training)

    def train(self, mode: bool = True) -> "FrameClsEncoder":
        super().train(mode)
        if self.frozen:
            self.w2v_model.eval()  # a frozen encoder is a fixed feature extractor: no dropout, no layerdrop
        return self

    def forward(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None, tbc: bool = True,
                **kwargs) -> dict[str, Any]:
        """``HubertEncoder.forward`` reading layer ``self.layer`` (and no graph when frozen in training only)."""
        with torch.no_grad() if self.frozen and self.training else contextlib.nullcontext():
            x, padding_mask = self.w2v_model.extract_features(
                source, padding_mask=padding_mask, mask=self.apply_mask and self.training, output_layer=self.layer
            )
        x = self.proj(self.final_dropout(x))
        return {"encoder_out": x.transpose(0, 1) if tbc else x, "encoder_padding_mask": padding_mask,
                "padding_mask": padding_mask}


@register_model("hubert_frame_cls", dataclass=HubertFrameClsConfig)
class HubertFrameClassifier(BaseFairseqModel):
    """HuBERT encoder + ``Linear(encoder_embed_dim, num_classes)`` on layer ``cfg.layer``."""

    def __init__(self, cfg: HubertFrameClsConfig, w2v_encoder: FrameClsEncoder, *, phones: tuple[str, ...]) -> None:
        super().__init__()
        self.cfg = cfg
        self.w2v_encoder = w2v_encoder
        self.phones = phones

    @classmethod
    def build_model(cls, cfg: HubertFrameClsConfig, task) -> "HubertFrameClassifier":
        pretrained = None
        if cfg.w2v_args is None:
            pretrained = load_pretrained(cfg.w2v_path)
            cfg.w2v_args = encoder_args(pretrained)
        check_normalize(cfg.w2v_args, normalize=task.cfg.normalize, path=cfg.w2v_path)
        if cfg.feature_grad_mult and not cfg.train_cnn:
            raise ConfigError(f"feature_grad_mult {cfg.feature_grad_mult}: the CNN is frozen; set train_cnn to train it")
        encoder = FrameClsEncoder(cfg, num_classes=len(task.phones))
        if pretrained is not None and not cfg.no_pretrained_weights:
            load_encoder_weights(encoder.w2v_model, pretrained)
            logger.info(f"loaded pretrained HuBERT from {cfg.w2v_path}")
        return cls(cfg, encoder, phones=task.phones)

    def upgrade_state_dict_named(self, state_dict: dict[str, torch.Tensor], name: str) -> None:
        prefix = f"{name}." if name else ""
        for key in list(state_dict):
            for old, new in _OLD_PREFIXES.items():
                if key.startswith(prefix + old):
                    state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)
        super().upgrade_state_dict_named(state_dict, name)

    @property
    def num_layers(self) -> int:
        return self.w2v_encoder.num_layers

    @property
    def layer(self) -> int:
        """The transformer layer (1-based) feeding the classifier."""
        return self.w2v_encoder.layer

    @property
    def head(self) -> nn.Linear:
        """The phone classifier: logits = ``head(features of layer)`` (in eval mode), so a dump of that
        layer gives the logits without a second pass (the demo's logits units)."""
        return self.w2v_encoder.proj

    def extract_features(
        self,
        source: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        *,
        output_layer: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Hidden states ``(B, T, D)`` of transformer layer ``output_layer`` (1-based; default: the
        last), without masking, and the frame padding mask ``(B, T)`` (None without padding)."""
        layer = self.num_layers if output_layer is None else self.w2v_encoder.check_layer(output_layer)
        return self.w2v_encoder.w2v_model.extract_features(source, padding_mask=padding_mask, mask=False,
                                                           output_layer=layer)

    def forward(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None, **kwargs) -> dict[str, Any]:
        """Phone logits ``(B, T, C)`` of every frame and the frame padding mask."""
        out = self.w2v_encoder(source, padding_mask, tbc=False)
        return {"logits": out["encoder_out"], "padding_mask": out["padding_mask"]}

    def max_positions(self) -> None:
        return None
