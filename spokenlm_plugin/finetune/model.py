"""Model ``hubert_frame_cls``: a pretrained HuBERT plus a linear phone classifier on one layer.

Training controls follow the paper's code: the CNN feature extractor is frozen (unless
``train_cnn``: a small base on a CPU budget gains from training it); the whole
encoder is frozen (no gradient, eval mode: no dropout or layerdrop) for the first
``freeze_finetune_updates`` updates while only the classifier trains; time and channel masking
apply in training only. The pretrained file is read once, at the first build; the fine-tuned
checkpoint is self-contained (see :mod:`spokenlm_plugin.finetune.pretrained`).
"""

# No `from __future__ import annotations`: fairseq reads config field types at run time.
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from fairseq.dataclass import FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model
from omegaconf import II, MISSING
from torch import nn

from ..core.errors import ConfigError
from .pretrained import build_hubert, load_encoder_weights, load_pretrained

logger = logging.getLogger(__name__)


@dataclass
class HubertFrameClsConfig(FairseqDataclass):
    w2v_path: str = field(
        default=MISSING,
        metadata={"help": "pretrained HuBERT checkpoint (fairseq format); read only when the model is first built"},
    )
    w2v_args: Any = field(
        default=None,
        metadata={"help": "the pretrained model's {task, model} config; filled in at the first build and saved "
                  "with the fine-tuned checkpoint, which then reloads without w2v_path. Leave unset"},
    )
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
    apply_mask: bool = field(default=True, metadata={"help": "apply time and channel masking in training"})
    mask_prob: float = field(default=0.75, metadata={"help": "probability of a frame starting a time mask"})
    mask_length: int = field(default=10, metadata={"help": "time mask length (frames)"})
    mask_channel_prob: float = field(default=0.5, metadata={"help": "probability of a channel starting a channel mask"})
    mask_channel_length: int = field(default=10, metadata={"help": "channel mask length (channels)"})
    layerdrop: float = field(default=0.1, metadata={"help": "probability of skipping a transformer layer in training"})
    dropout: float = field(default=0.0, metadata={"help": "dropout inside the transformer"})
    attention_dropout: float = field(default=0.0, metadata={"help": "dropout on attention weights"})
    activation_dropout: float = field(default=0.1, metadata={"help": "dropout inside the feed-forward blocks"})
    dropout_input: float = field(default=0.0, metadata={"help": "dropout on the CNN features"})
    final_dropout: float = field(default=0.0, metadata={"help": "dropout before the classifier"})


@register_model("hubert_frame_cls", dataclass=HubertFrameClsConfig)
class HubertFrameClassifier(BaseFairseqModel):
    """HuBERT encoder + ``Linear(encoder_embed_dim, num_classes)`` on layer ``cfg.layer``."""

    def __init__(self, cfg: HubertFrameClsConfig, hubert: nn.Module, *, phones: tuple[str, ...]) -> None:
        super().__init__()
        self.cfg = cfg
        self.hubert = hubert
        self.phones = phones
        self.num_layers = len(hubert.encoder.layers)
        self.layer = self._check_layer(cfg.layer) if cfg.layer is not None else self.num_layers
        self.head = nn.Linear(hubert.encoder.embedding_dim, len(phones))
        self.final_dropout = nn.Dropout(cfg.final_dropout)
        if cfg.freeze_finetune_updates is not None:
            self.freeze_updates = cfg.freeze_finetune_updates
        else:
            self.freeze_updates = int(0.1 * cfg.max_update) if cfg.max_update and cfg.max_update > 0 else 0
        self.num_updates = 0
        if not cfg.train_cnn:
            for p in hubert.feature_extractor.parameters():
                p.requires_grad_(False)

    @classmethod
    def build_model(cls, cfg: HubertFrameClsConfig, task) -> "HubertFrameClassifier":
        overrides = {
            "mask_prob": cfg.mask_prob,
            "mask_length": cfg.mask_length,
            "mask_channel_prob": cfg.mask_channel_prob,
            "mask_channel_length": cfg.mask_channel_length,
            "encoder_layerdrop": cfg.layerdrop,
            "dropout": cfg.dropout,
            "attention_dropout": cfg.attention_dropout,
            "activation_dropout": cfg.activation_dropout,
            "dropout_input": cfg.dropout_input,
            # 0: fairseq runs the CNN under no_grad.
            "feature_grad_mult": 1.0 if cfg.train_cnn else 0.0,
        }
        pretrained = None
        if cfg.w2v_args is None:
            pretrained = load_pretrained(cfg.w2v_path)
            cfg.w2v_args = pretrained.cfg
        normalize = getattr(task.cfg, "normalize", None)
        if normalize is not None and normalize != cfg.w2v_args.task.get("normalize", False):
            raise ConfigError(
                f"{cfg.w2v_path}: the model was pretrained with normalize={cfg.w2v_args.task.get('normalize', False)} "
                f"but task.normalize={normalize}; set task.normalize to match"
            )
        hubert = build_hubert(cfg.w2v_args, overrides=overrides)
        if pretrained is not None:
            load_encoder_weights(hubert, pretrained)
            logger.info(f"loaded pretrained HuBERT from {cfg.w2v_path}")
        return cls(cfg, hubert, phones=task.phones)

    def _check_layer(self, layer: int) -> int:
        if not 1 <= layer <= self.num_layers:
            raise ConfigError(f"layer {layer}: the encoder has layers 1..{self.num_layers}")
        return layer

    @property
    def encoder_frozen(self) -> bool:
        return self.num_updates < self.freeze_updates

    def set_num_updates(self, num_updates: int) -> None:
        was_frozen = self.encoder_frozen
        super().set_num_updates(num_updates)
        self.num_updates = num_updates
        if was_frozen != self.encoder_frozen:
            # At the switch during training only; loading a finished checkpoint jumps past it silently.
            log = logger.info if num_updates == self.freeze_updates else logger.debug
            log(f"update {num_updates}: encoder {'frozen' if self.encoder_frozen else 'unfrozen'}")
            self.train(self.training)

    def train(self, mode: bool = True) -> "HubertFrameClassifier":
        super().train(mode)
        if self.encoder_frozen:
            self.hubert.eval()  # a frozen encoder is a fixed feature extractor: no dropout, no layerdrop
        return self

    def extract_features(
        self,
        source: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        *,
        output_layer: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Hidden states ``(B, T, D)`` of transformer layer ``output_layer`` (1-based; default: the
        last), without masking, and the frame padding mask ``(B, T)`` (None without padding)."""
        layer = self.num_layers if output_layer is None else self._check_layer(output_layer)
        return self.hubert.extract_features(source, padding_mask=padding_mask, mask=False, output_layer=layer)

    def forward(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None, **kwargs) -> dict[str, Any]:
        """Phone logits ``(B, T, C)`` of every frame and the frame padding mask."""
        frozen = self.encoder_frozen and self.training
        with torch.no_grad() if frozen else contextlib.nullcontext():
            x, padding_mask = self.hubert.extract_features(
                source,
                padding_mask=padding_mask,
                mask=self.cfg.apply_mask and self.training,
                output_layer=self.layer,
            )
        logits = self.head(self.final_dropout(x))
        return {"logits": logits, "padding_mask": padding_mask}

    def max_positions(self) -> None:
        return None
