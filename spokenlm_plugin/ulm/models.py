"""Unit language models registered with fairseq: the ZeroSpeech 2021 LSTM and a transformer LM.

Both train with fairseq's ``language_modeling`` task on a dataset from ``spokenlm lm-data`` and
can start with an embedding table initialised from the k-means centroids
(``--unit-centroids km.npy --centroid-init pca|project``, see
:mod:`spokenlm_plugin.ulm.embedding`).

Models (``--arch``):

``unit_lstm_lm``
    fairseq's ``lstm_lm`` with the ZeroSpeech 2021 baseline's shape as defaults: 3 layers,
    embedding 200, hidden 1024, output embedding 200, dropout 0.1 (the paper's LM). The optimiser
    settings of the baseline go on the command line (examples/ulm/README.md).
``unit_lstm_lm_small``
    the same at embedding 64, hidden 256, 2 layers (CPU demos and tests).
``unit_transformer_lm``
    fairseq's transformer LM (pre-norm, 6 layers, 512 / 2048, 8 heads) with the centroid option.
``unit_transformer_lm_small``
    2 layers, 128 / 512, 4 heads.

The LSTM's decoder (:class:`FusedLSTMDecoder`) runs training and full-sequence scoring through
torch's fused LSTM kernel instead of fairseq's per-time-step Python loop: same parameters, same
checkpoints, the same outputs up to float rounding; incremental decoding (fairseq-generate) keeps
fairseq's loop.

The centroid file is read when the model is first built (training); the model records its
table's width in the saved config (``centroid_table_dim``), so a checkpoint reloads without the
file (unlike fairseq's own ``--decoder-embed-path``, read at every build). Checkpoints made before
that record read the file on reload, as they always did.
"""

# No ``from __future__ import annotations``: fairseq reads the config fields' types at runtime.
from argparse import Namespace
from dataclasses import dataclass, field
from typing import Any, Optional, cast

import torch
import torch.nn as nn
from torch import Tensor
from omegaconf import II, OmegaConf, open_dict

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import register_model, register_model_architecture
from fairseq.models.lstm import Embedding as LSTMEmbedding
from fairseq.models.lstm import Linear as LSTMLinear
from fairseq.models.lstm import LSTMDecoder
from fairseq.models.lstm_lm import DEFAULT_MAX_TARGET_POSITIONS, LSTMLanguageModel
from fairseq.models.lstm_lm import base_architecture as lstm_lm_base_architecture
from fairseq.models.transformer import Embedding as TransformerEmbedding
from fairseq.models.transformer_lm import TransformerLanguageModel, TransformerLanguageModelConfig
from fairseq.utils import safe_getattr

from ..core.errors import ConfigError
from .embedding import (
    LSTM_INIT_STD,
    ProjectedEmbedding,
    centroid_table,
    fill_unit_rows,
    initial_centroids,
    record_table_dim,
    transformer_init_std,
)

CENTROID_INIT_CHOICES = ChoiceEnum(["pca", "project"])

_CENTROIDS_HELP = (
    "k-means centroids (.npy, K x D): initialise the embedding row of unit k from centroid k "
    "(read when the model is first built; a checkpoint reload does not need the file)"
)
_CENTROID_INIT_HELP = (
    "how centroids of size D become embeddings of size E: 'pca' (fixed PCA of the centroids to E) "
    "or 'project' (a D-wide table followed by a learned linear projection to E)"
)

_TABLE_DIM_HELP = (
    "width of the centroid-initialised table (E with pca, D with project), recorded by the model when "
    "it reads --unit-centroids: when set, the model is built without reading the file, its weights "
    "coming from a checkpoint. Leave unset"
)


def _check_share(cfg) -> None:
    if cfg.unit_centroids and cfg.centroid_init == "project" and cfg.share_decoder_input_output_embed:
        raise ConfigError(
            "--centroid-init project cannot share input and output embeddings (the input table is "
            "D-wide); drop --share-decoder-input-output-embed or use --centroid-init pca"
        )


# ------------------------------------------------------------------------------------- LSTM

IncrementalState = dict[str, dict[str, Optional[Tensor]]]


class FusedLSTMDecoder(LSTMDecoder):
    """fairseq's ``LSTMDecoder`` whose full-sequence pass runs torch's fused LSTM kernel.

    fairseq steps through time in Python, one ``nn.LSTMCell`` call per layer and step. Without
    attention, input feeding, residuals or cached state (a language model's training and scoring),
    each layer's recurrence is instead one ``torch._VF.lstm`` call over the whole sequence with the
    layer's own ``LSTMCell`` weights (same gate order), so parameters and checkpoints are unchanged.
    Dropout sits where fairseq puts it: ``dropout_in`` on the embeddings, ``dropout_out`` on each
    layer's output before the next layer and on the last layer's output. Anything else (a
    generation step with cached state, an encoder, residuals) goes through fairseq's loop.
    """

    def fusable(self, *, encoder_out: Optional[tuple[Tensor, Tensor, Tensor, Tensor]],
                incremental_state: Optional[IncrementalState]) -> bool:
        """Whether :meth:`extract_features` may take the fused path for this call."""
        return (
            encoder_out is None
            and (incremental_state is None or len(incremental_state) == 0)
            and self.attention is None
            and self.encoder_output_units == 0  # no input feeding
            and not self.residuals
            and all(cell.bias for cell in self.layers)
        )

    def extract_features(
        self,
        prev_output_tokens: Tensor,
        encoder_out: Optional[tuple[Tensor, Tensor, Tensor, Tensor]] = None,
        incremental_state: Optional[IncrementalState] = None,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """Features (B x T x C) and attention scores (``None``), as fairseq's decoder returns them."""
        if not self.fusable(encoder_out=encoder_out, incremental_state=incremental_state):
            return super().extract_features(prev_output_tokens, encoder_out, incremental_state)
        bsz = prev_output_tokens.size(0)
        x = self.dropout_in_module(self.embed_tokens(prev_output_tokens)).transpose(0, 1)  # T x B x C
        zero = x.new_zeros(1, bsz, self.hidden_size)
        hiddens: list[Tensor] = []
        cells: list[Tensor] = []
        for i, cell in enumerate(self.layers):
            if i > 0:
                x = self.dropout_out_module(x)
            weights = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
            # (input, hx, weights, has_biases, num_layers, dropout, train, bidirectional, batch_first):
            # one layer per call so that fairseq's own dropout module runs between layers.
            x, h_n, c_n = torch._VF.lstm(x, (zero, zero), weights, True, 1, 0.0, self.training, False, False)
            hiddens.append(h_n[0])
            cells.append(c_n[0])
        x = self.dropout_out_module(x)
        if incremental_state is not None:
            # The first call of a generation (empty cache): leave the state fairseq's loop resumes from.
            cache: dict[str, Optional[Tensor]] = {
                "prev_hiddens": torch.stack(hiddens), "prev_cells": torch.stack(cells), "input_feed": None,
            }
            self.set_incremental_state(incremental_state, "cached_state", cache)
        x = x.transpose(1, 0)  # B x T x C
        if hasattr(self, "additional_fc") and self.adaptive_softmax is None:
            x = self.dropout_out_module(self.additional_fc(x))
        return x, None


@dataclass
class UnitLSTMLMConfig(FairseqDataclass):
    dropout: float = field(default=0.1, metadata={"help": "dropout probability"})
    decoder_embed_dim: int = field(default=200, metadata={"help": "input embedding size E"})
    decoder_hidden_size: int = field(default=1024, metadata={"help": "LSTM hidden size"})
    decoder_layers: int = field(default=3, metadata={"help": "number of LSTM layers"})
    decoder_out_embed_dim: int = field(
        default=200, metadata={"help": "output embedding size (hidden -> this -> vocabulary)"}
    )
    decoder_dropout_in: Optional[float] = field(
        default=None, metadata={"help": "dropout on the input embeddings (default: --dropout)"}
    )
    decoder_dropout_out: Optional[float] = field(
        default=None, metadata={"help": "dropout on the LSTM outputs (default: --dropout)"}
    )
    residuals: bool = field(default=False, metadata={"help": "residual connections between LSTM layers"})
    share_decoder_input_output_embed: bool = field(
        default=False, metadata={"help": "tie input and output embeddings (needs embed dim == out embed dim)"}
    )
    unit_centroids: Optional[str] = field(default=None, metadata={"help": _CENTROIDS_HELP})
    # valid-type: fairseq's ChoiceEnum makes the Enum at runtime (its argparse choices come from this annotation)
    centroid_init: CENTROID_INIT_CHOICES = field(  # type: ignore[valid-type]
        default="pca", metadata={"help": _CENTROID_INIT_HELP})
    centroid_table_dim: Optional[int] = field(default=None, metadata={"help": _TABLE_DIM_HELP})
    tokens_per_sample: int = II("task.tokens_per_sample")
    max_target_positions: Optional[int] = II("task.max_target_positions")


@register_model("unit_lstm_lm", dataclass=UnitLSTMLMConfig)
class UnitLSTMLanguageModel(LSTMLanguageModel):
    """fairseq's ``lstm_lm`` as a unit LM, optionally with centroid-initialised embeddings.

    fairseq builds the decoder (its own default embedding included); the centroids then fill that
    embedding's unit rows (``pca``), or replace it by a D-wide table and a learned projection to E
    (``project``).
    """

    @classmethod
    def add_args(cls, parser) -> None:
        # The options come from the dataclass (fairseq's default for models that have one), not
        # from lstm_lm's argparse list (--decoder-embed-path, --adaptive-softmax-cutoff, ...).
        super(LSTMLanguageModel, cls).add_args(parser)

    @classmethod
    def build_model(cls, cfg: UnitLSTMLMConfig, task) -> "UnitLSTMLanguageModel":
        _check_share(cfg)
        if cfg.share_decoder_input_output_embed and cfg.decoder_embed_dim != cfg.decoder_out_embed_dim:
            raise ConfigError(
                "--share-decoder-input-output-embed needs --decoder-embed-dim equal to --decoder-out-embed-dim "
                f"({cfg.decoder_embed_dim} != {cfg.decoder_out_embed_dim})"
            )
        # lstm_lm is an argparse model: unset (None) options are left out of its namespace, so its
        # base_architecture() fills them (dropout in / out = --dropout).
        values = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))  # a DictConfig gives a dict
        args = Namespace(**{k: v for k, v in values.items() if v is not None})
        lstm_lm_base_architecture(args)
        max_positions = getattr(args, "max_target_positions", None)
        if max_positions is None:
            max_positions = getattr(args, "tokens_per_sample", DEFAULT_MAX_TARGET_POSITIONS)
        # lstm_lm's build_model with the fused decoder: the same modules built in the same order, so
        # a seed gives the same initial weights. No --decoder-embed-path, no adaptive softmax here.
        decoder = FusedLSTMDecoder(
            dictionary=task.dictionary,
            embed_dim=args.decoder_embed_dim,
            hidden_size=args.decoder_hidden_size,
            out_embed_dim=args.decoder_out_embed_dim,
            num_layers=args.decoder_layers,
            dropout_in=args.decoder_dropout_in,
            dropout_out=args.decoder_dropout_out,
            attention=False,
            encoder_output_units=0,
            share_input_output_embed=args.share_decoder_input_output_embed,
            max_target_positions=max_positions,
            residuals=args.residuals,
        )
        model = cls(decoder)
        if cfg.unit_centroids:
            model.decoder.embed_tokens = cls.centroid_embedding(cfg, task.source_dictionary, model.decoder.embed_tokens)
        return model

    @staticmethod
    def centroid_embedding(cfg: UnitLSTMLMConfig, dictionary, embed_tokens: nn.Embedding) -> nn.Module:
        """The decoder's input embedding with its unit rows from the centroids: ``embed_tokens``
        itself (``pca``) or a D-wide table and a learned projection (``project``). Without the
        centroid file (a reload), the same modules with fairseq's default initialisation."""
        centroids = initial_centroids(cfg)
        if cfg.centroid_init == "project":
            width = cfg.centroid_table_dim if centroids is None else int(centroids.shape[1])
            table = LSTMEmbedding(len(dictionary), width, dictionary.pad())
        else:
            table = embed_tokens
        if centroids is not None:
            values = centroid_table(
                centroids, mode=cfg.centroid_init, dim=cfg.decoder_embed_dim, target_std=LSTM_INIT_STD
            )
            fill_unit_rows(table, dictionary, values)
            record_table_dim(cfg, table.embedding_dim)
        if cfg.centroid_init == "project":
            return ProjectedEmbedding(table, LSTMLinear(table.embedding_dim, cfg.decoder_embed_dim))
        return table


@register_model_architecture("unit_lstm_lm", "unit_lstm_lm_small")
def unit_lstm_lm_small(args) -> None:
    args.decoder_embed_dim = safe_getattr(args, "decoder_embed_dim", 64)
    args.decoder_hidden_size = safe_getattr(args, "decoder_hidden_size", 256)
    args.decoder_out_embed_dim = safe_getattr(args, "decoder_out_embed_dim", 64)
    args.decoder_layers = safe_getattr(args, "decoder_layers", 2)


# ------------------------------------------------------------------------------ transformer


@dataclass
class UnitTransformerLMConfig(TransformerLanguageModelConfig):
    # fairseq's transformer_lm architecture forces pre-norm ("not stable without this").
    decoder_normalize_before: bool = field(
        default=True, metadata={"help": "apply layernorm before each decoder block"}
    )
    decoder_input_dim: Optional[int] = field(
        default=None,
        metadata={"help": "input embedding size (default: --decoder-embed-dim; with --centroid-init "
                          "project: the centroid size D)"},
    )
    decoder_output_dim: Optional[int] = field(
        default=None, metadata={"help": "output embedding size (default: --decoder-embed-dim)"}
    )
    unit_centroids: Optional[str] = field(default=None, metadata={"help": _CENTROIDS_HELP})
    # valid-type: fairseq's ChoiceEnum makes the Enum at runtime (its argparse choices come from this annotation)
    centroid_init: CENTROID_INIT_CHOICES = field(  # type: ignore[valid-type]
        default="pca", metadata={"help": _CENTROID_INIT_HELP})
    centroid_table_dim: Optional[int] = field(default=None, metadata={"help": _TABLE_DIM_HELP})


@register_model("unit_transformer_lm", dataclass=UnitTransformerLMConfig)
class UnitTransformerLanguageModel(TransformerLanguageModel):
    """fairseq's transformer LM as a unit LM, optionally with centroid-initialised embeddings.

    In ``project`` mode the table is D-wide and fairseq's ``project_in_dim`` (a learned linear
    map to ``--decoder-embed-dim``) is the projection.
    """

    @classmethod
    def build_model(cls, cfg: UnitTransformerLMConfig, task) -> "UnitTransformerLanguageModel":
        _check_share(cfg)
        with open_dict(cfg):
            cfg.decoder_output_dim = cfg.decoder_output_dim or cfg.decoder_embed_dim
            cfg.decoder_input_dim = cfg.decoder_input_dim or cfg.decoder_embed_dim
            if cfg.unit_centroids and cfg.centroid_init == "project":
                centroids = initial_centroids(cfg)
                cfg.decoder_input_dim = cfg.centroid_table_dim if centroids is None else int(centroids.shape[1])
        return super().build_model(cfg, task)

    @classmethod
    def build_embedding(cls, cfg, dictionary, embed_dim, path=None):
        # embed_dim is fairseq's decoder_input_dim: E, or the centroid size D in project mode.
        embedding = TransformerEmbedding(len(dictionary), embed_dim, dictionary.pad())
        centroids = initial_centroids(cfg)
        if centroids is not None:
            table = centroid_table(
                centroids, mode=cfg.centroid_init, dim=embed_dim, target_std=transformer_init_std(embed_dim)
            )
            fill_unit_rows(embedding, dictionary, table)
            record_table_dim(cfg, embed_dim)
        return embedding


@register_model_architecture("unit_transformer_lm", "unit_transformer_lm_small")
def unit_transformer_lm_small(args) -> None:
    args.decoder_embed_dim = safe_getattr(args, "decoder_embed_dim", 128)
    args.decoder_ffn_embed_dim = safe_getattr(args, "decoder_ffn_embed_dim", 512)
    args.decoder_layers = safe_getattr(args, "decoder_layers", 2)
    args.decoder_attention_heads = safe_getattr(args, "decoder_attention_heads", 4)
