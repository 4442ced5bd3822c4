"""Architectures of the joint speech-unit / text LM: fairseq's ``transformer_lm`` at two sizes.

``sutlm_transformer_lm_350m``
    the paper's size (~350M parameters at a ~10k vocabulary): GPT-2 medium's shape, 24 layers of
    1024 (ffn 4096, 16 heads), pre-norm, tied input / output embeddings.
``sutlm_transformer_lm_tiny``
    2 layers of 128 (ffn 512, 4 heads), tied embeddings: CPU demos and tests.

Only the defaults differ from fairseq's ``transformer_lm``; every option of it still applies.
"""

from fairseq.models import register_model_architecture
from fairseq.models.transformer_lm import base_lm_architecture
from fairseq.utils import safe_getattr


def _shape(args, *, embed: int, ffn: int, layers: int, heads: int) -> None:
    args.decoder_embed_dim = safe_getattr(args, "decoder_embed_dim", embed)
    args.decoder_ffn_embed_dim = safe_getattr(args, "decoder_ffn_embed_dim", ffn)
    args.decoder_layers = safe_getattr(args, "decoder_layers", layers)
    args.decoder_attention_heads = safe_getattr(args, "decoder_attention_heads", heads)
    args.share_decoder_input_output_embed = safe_getattr(args, "share_decoder_input_output_embed", True)
    args.decoder_normalize_before = True  # fairseq's transformer_lm: "not stable without this"
    base_lm_architecture(args)


@register_model_architecture("transformer_lm", "sutlm_transformer_lm_350m")
def sutlm_transformer_lm_350m(args) -> None:
    args.dropout = safe_getattr(args, "dropout", 0.1)
    args.attention_dropout = safe_getattr(args, "attention_dropout", 0.1)
    args.activation_fn = safe_getattr(args, "activation_fn", "gelu")
    _shape(args, embed=1024, ffn=4096, layers=24, heads=16)


@register_model_architecture("transformer_lm", "sutlm_transformer_lm_tiny")
def sutlm_transformer_lm_tiny(args) -> None:
    args.dropout = safe_getattr(args, "dropout", 0.1)
    _shape(args, embed=128, ffn=512, layers=2, heads=4)
