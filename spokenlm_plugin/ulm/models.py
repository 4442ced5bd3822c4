"""Unit language models registered with fairseq: the ZeroSpeech 2021 LSTM and a transformer LM.

Both train with fairseq's ``language_modeling`` task on a dataset from ``spokenlm lm-data`` and
can start with an embedding table initialised from the k-means centroids
(``--unit-centroids km.npy --centroid-init pca|project``, see
:mod:`spokenlm_plugin.ulm.embedding`).

Models (``--arch``):

``unit_lstm_lm``
    fairseq's LSTM decoder with the ZeroSpeech 2021 baseline's shape as defaults: 3 layers,
    embedding 200, hidden 1024, output embedding 200, dropout 0.1 (the paper's LM). The optimiser
    settings of the baseline go on the command line (examples/ulm/README.md).
``unit_lstm_lm_small``
    the same at embedding 64, hidden 256, 2 layers (CPU demos and tests).
``unit_transformer_lm``
    fairseq's transformer LM (pre-norm, 6 layers, 512 / 2048, 8 heads) with the centroid option.
``unit_transformer_lm_small``
    2 layers, 128 / 512, 4 heads.

The centroid file is read whenever the model is built, reloading a checkpoint included (as
fairseq's own ``--decoder-embed-path``); its values then matter no more, as the checkpoint's
weights replace them, but in ``project`` mode its width sets the table's. Keep it beside the
units, or rebuild it at the same path.
"""

# No ``from __future__ import annotations``: fairseq reads the config fields' types at runtime.
from dataclasses import dataclass, field
from typing import Optional

from omegaconf import II, open_dict

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import FairseqLanguageModel, register_model, register_model_architecture
from fairseq.models.lstm import Embedding as LSTMEmbedding
from fairseq.models.lstm import Linear as LSTMLinear
from fairseq.models.lstm import LSTMDecoder
from fairseq.models.transformer import Embedding as TransformerEmbedding
from fairseq.models.transformer_lm import TransformerLanguageModel, TransformerLanguageModelConfig
from fairseq.utils import safe_getattr

from ..core.errors import ConfigError
from .embedding import (
    LSTM_INIT_STD,
    ProjectedEmbedding,
    centroid_table,
    fill_unit_rows,
    load_unit_centroids,
    transformer_init_std,
)

CENTROID_INIT_CHOICES = ChoiceEnum(["pca", "project"])

_CENTROIDS_HELP = (
    "k-means centroids (.npy, K x D): initialise the embedding row of unit k from centroid k "
    "(read again whenever the model is built, checkpoint reloads included)"
)
_CENTROID_INIT_HELP = (
    "how centroids of size D become embeddings of size E: 'pca' (fixed PCA of the centroids to E) "
    "or 'project' (a D-wide table followed by a learned linear projection to E)"
)


def _check_share(cfg) -> None:
    if cfg.unit_centroids and cfg.centroid_init == "project" and cfg.share_decoder_input_output_embed:
        raise ConfigError(
            "--centroid-init project cannot share input and output embeddings (the input table is "
            "D-wide); drop --share-decoder-input-output-embed or use --centroid-init pca"
        )


# ------------------------------------------------------------------------------------- LSTM


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
    centroid_init: CENTROID_INIT_CHOICES = field(default="pca", metadata={"help": _CENTROID_INIT_HELP})
    tokens_per_sample: int = II("task.tokens_per_sample")
    max_target_positions: Optional[int] = II("task.max_target_positions")


@register_model("unit_lstm_lm", dataclass=UnitLSTMLMConfig)
class UnitLSTMLanguageModel(FairseqLanguageModel):
    """fairseq's LSTM decoder as a unit LM, optionally with centroid-initialised embeddings."""

    @classmethod
    def build_model(cls, cfg: UnitLSTMLMConfig, task) -> "UnitLSTMLanguageModel":
        _check_share(cfg)
        dictionary = task.source_dictionary
        embed_tokens = cls.build_embedding(cfg, dictionary)
        dropout_in = cfg.dropout if cfg.decoder_dropout_in is None else cfg.decoder_dropout_in
        dropout_out = cfg.dropout if cfg.decoder_dropout_out is None else cfg.decoder_dropout_out
        decoder = LSTMDecoder(
            dictionary=dictionary,
            embed_dim=cfg.decoder_embed_dim,
            hidden_size=cfg.decoder_hidden_size,
            out_embed_dim=cfg.decoder_out_embed_dim,
            num_layers=cfg.decoder_layers,
            dropout_in=dropout_in,
            dropout_out=dropout_out,
            attention=False,  # no encoder to attend to
            encoder_output_units=0,
            pretrained_embed=embed_tokens,
            share_input_output_embed=cfg.share_decoder_input_output_embed,
            adaptive_softmax_cutoff=None,
            max_target_positions=cfg.max_target_positions or cfg.tokens_per_sample,
            residuals=cfg.residuals,
        )
        return cls(decoder)

    @staticmethod
    def build_embedding(cfg: UnitLSTMLMConfig, dictionary):
        """fairseq's LSTM embedding, its unit rows taken from the centroids when given."""
        if not cfg.unit_centroids:
            return LSTMEmbedding(len(dictionary), cfg.decoder_embed_dim, dictionary.pad())
        centroids = load_unit_centroids(cfg.unit_centroids)
        table = centroid_table(
            centroids, mode=cfg.centroid_init, dim=cfg.decoder_embed_dim, target_std=LSTM_INIT_STD
        )
        embedding = LSTMEmbedding(len(dictionary), table.shape[1], dictionary.pad())
        fill_unit_rows(embedding, dictionary, table)
        if cfg.centroid_init == "project":
            return ProjectedEmbedding(embedding, LSTMLinear(table.shape[1], cfg.decoder_embed_dim))
        return embedding


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
    centroid_init: CENTROID_INIT_CHOICES = field(default="pca", metadata={"help": _CENTROID_INIT_HELP})


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
                cfg.decoder_input_dim = int(load_unit_centroids(cfg.unit_centroids).shape[1])
        return super().build_model(cfg, task)

    @classmethod
    def build_embedding(cls, cfg, dictionary, embed_dim, path=None):
        if not cfg.unit_centroids:
            return TransformerEmbedding(len(dictionary), embed_dim, dictionary.pad())
        centroids = load_unit_centroids(cfg.unit_centroids)
        width = embed_dim if cfg.centroid_init == "pca" else centroids.shape[1]
        table = centroid_table(
            centroids, mode=cfg.centroid_init, dim=embed_dim, target_std=transformer_init_std(width)
        )
        embedding = TransformerEmbedding(len(dictionary), width, dictionary.pad())
        fill_unit_rows(embedding, dictionary, table)
        return embedding


@register_model_architecture("unit_transformer_lm", "unit_transformer_lm_small")
def unit_transformer_lm_small(args) -> None:
    args.decoder_embed_dim = safe_getattr(args, "decoder_embed_dim", 128)
    args.decoder_ffn_embed_dim = safe_getattr(args, "decoder_ffn_embed_dim", 512)
    args.decoder_layers = safe_getattr(args, "decoder_layers", 2)
    args.decoder_attention_heads = safe_getattr(args, "decoder_attention_heads", 4)
