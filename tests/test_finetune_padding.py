"""Training and read-out see the same features: padding in a fine-tuning batch does not change them.

Fine-tuning batches padded utterances (``padding_mask``); dumps and evaluation read utterances
unpadded. The fine-tuning model's HuBERT (``hubert_frame_cls``) masks exactly the frames an unpadded
pass makes, and the shipped small HuBERT's ``layer_norm`` CNN normalises each frame on its own, so
a frame's features do not depend on its batch-mates. fairseq's own ``HubertModel`` (chunked frame
mask) and HuBERT Base's ``default`` CNN (GroupNorm over time) do not have that property: the
contrast tests show that the first test can fail.
"""

from __future__ import annotations

import torch

from spokenlm_plugin.core.phones import INVENTORY
from spokenlm_plugin.finetune.pretrained import load_pretrained
from tests.units_support import build_frame_classifier, make_hubert_checkpoint


def _padded_vs_alone(tmp_path, mode: str, *, fairseq_mask: bool = False) -> float:
    (tmp_path / "dict.phn.txt").write_text("".join(f"{p} 1\n" for p in INVENTORY))
    pretrained = make_hubert_checkpoint(tmp_path / f"{mode}.pt", extractor_mode=mode)
    model = build_frame_classifier(pretrained, tmp_path)[2].w2v_encoder.w2v_model  # weights loaded, as in training
    if fairseq_mask:
        from fairseq.models.hubert import HubertModel

        model.forward_padding_mask = HubertModel.forward_padding_mask.__get__(model)
    model.eval()
    g = torch.Generator().manual_seed(0)
    short, long = torch.randn(1, 16000, generator=g), torch.randn(1, 24000, generator=g)
    batch = torch.zeros(2, 24000)
    batch[0, :16000], batch[1] = short[0], long[0]
    mask = torch.zeros(2, 24000, dtype=torch.bool)
    mask[0, 16000:] = True
    with torch.no_grad():
        alone, _ = model.extract_features(short, padding_mask=None, mask=False)
        padded, _ = model.extract_features(batch, padding_mask=mask, mask=False)
    n = alone.shape[1]
    return float((alone[0] - padded[0, :n]).abs().max() / alone[0].abs().max())


def test_padded_batch_gives_unpadded_features(tmp_path):
    assert _padded_vs_alone(tmp_path, "layer_norm") < 1e-5


def test_fairseq_chunked_mask_does_not(tmp_path):
    assert _padded_vs_alone(tmp_path, "layer_norm", fairseq_mask=True) > 1e-2


def test_group_norm_cnn_does_not(tmp_path):
    assert _padded_vs_alone(tmp_path, "default") > 1e-2


def test_shipped_base_uses_the_padding_invariant_cnn():
    from spokenlm_plugin.pretrain.hubert import shipped_checkpoint

    cfg = load_pretrained(shipped_checkpoint()).cfg
    assert cfg.model.extractor_mode == "layer_norm"
