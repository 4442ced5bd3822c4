"""``hubert_frame_cls`` in process: checkpoints from before it was built on fairseq's ``HubertEncoder``
still load and compute what they computed, and the model's own training controls (layer choice,
frozen encoder in eval mode, frozen CNN, the ``train_cnn`` / ``feature_grad_mult`` rule)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spokenlm_plugin.core.errors import ConfigError
from spokenlm_plugin.core.phones import INVENTORY
from tests.conftest import REPO
from tests.units_support import build_frame_classifier, make_hubert_checkpoint

#: A checkpoint written by fairseq-train with the model as it was before (keys ``hubert.*``,
#: ``head.*``; optimizer state dropped) and its outputs then (tests/data/README.md).
OLD = REPO / "tests" / "data" / "finetune" / "hubert_frame_cls_v0.pt"
OLD_OUTPUTS = OLD.with_suffix(".outputs.pt")


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    wav = torch.randn(2, 16_000, generator=g)
    padding = torch.zeros(2, 16_000, dtype=torch.bool)
    padding[1, 9_000:] = True
    return wav, padding


def test_checkpoint_with_the_old_keys_loads_and_computes_the_same(tmp_path):
    from fairseq import checkpoint_utils

    from spokenlm_plugin.core.runtime import torch_threads
    from spokenlm_plugin.units.encoder import DenseModel

    state = torch.load(OLD, map_location="cpu", weights_only=False)
    assert any(k.startswith("hubert.") for k in state["model"]) and "head.weight" in state["model"]
    state["cfg"]["model"]["w2v_path"] = str(tmp_path / "gone.pt")  # self-contained: never opened
    checkpoint = tmp_path / "old.pt"
    torch.save(state, checkpoint)

    (model,), _, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)])
    model.eval()
    expected = torch.load(OLD_OUTPUTS, weights_only=False)
    wav, padding = _inputs()
    # one thread, as when the outputs were recorded: more threads sum in another order (last-bit changes)
    with torch.no_grad(), torch_threads(1):
        out = model(wav, padding)
        layer1, _ = model.extract_features(wav, padding, output_layer=1)
    assert torch.equal(out["logits"], expected["logits"])
    assert torch.equal(out["padding_mask"], expected["padding_mask"])
    assert torch.equal(layer1, expected["layer1"])
    assert "w2v_encoder.proj.weight" in model.state_dict()

    dense = DenseModel.from_checkpoint(checkpoint, layer="logits", device="cpu", dtype="float32")
    short, full = dense.batch([wav[1, :9_000], wav[0]])
    assert torch.allclose(full, expected["logits"][0], atol=1e-5)
    assert torch.allclose(short, expected["logits"][1, : len(short)], atol=1e-5)


@pytest.fixture
def pretrained(tmp_path) -> Path:
    (tmp_path / "dict.phn.txt").write_text("".join(f"{p} 1\n" for p in INVENTORY))
    return make_hubert_checkpoint(tmp_path / "base.pt", extractor_mode="layer_norm", layers=3)


def test_classifier_reads_the_chosen_layer(pretrained):
    _, _, model = build_frame_classifier(pretrained, pretrained.parent, layer=2)
    model.eval()
    wav, padding = _inputs()
    with torch.no_grad():
        logits = model(wav, padding)["logits"]
        second, _ = model.extract_features(wav, padding, output_layer=2)
        last, _ = model.extract_features(wav, padding)
    assert torch.allclose(logits, model.w2v_encoder.proj(second), atol=1e-6)
    assert not torch.allclose(logits, model.w2v_encoder.proj(last), atol=1e-3)
    with pytest.raises(ConfigError, match="layer 4: the encoder has layers 1..3"):
        build_frame_classifier(pretrained, pretrained.parent, layer=4)


def _grads(model) -> dict[str, bool]:
    wav, padding = _inputs()
    model.zero_grad(set_to_none=True)
    model(wav, padding)["logits"].logsumexp(-1).sum().backward()
    has = {n: p.grad is not None and bool(p.grad.abs().sum()) for n, p in model.named_parameters()}
    return {part: any(v for n, v in has.items() if f".{part}." in n) for part in ("feature_extractor", "encoder", "proj")}


def test_frozen_encoder_is_a_fixed_feature_extractor_then_trains_without_the_cnn(pretrained):
    _, _, model = build_frame_classifier(pretrained, pretrained.parent, freeze_finetune_updates=2, mask_prob=0.0,
                                         mask_channel_prob=0.0)
    model.train()
    model.set_num_updates(0)
    hubert = model.w2v_encoder.w2v_model
    assert not hubert.training and model.w2v_encoder.training
    assert _grads(model) == {"feature_extractor": False, "encoder": False, "proj": True}
    model.set_num_updates(2)
    assert hubert.training
    assert _grads(model) == {"feature_extractor": False, "encoder": True, "proj": True}
    assert not any(p.requires_grad for p in hubert.feature_extractor.parameters())  # out of the optimizer


def test_train_cnn_trains_it_and_feature_grad_mult_needs_it(pretrained):
    _, _, model = build_frame_classifier(pretrained, pretrained.parent, freeze_finetune_updates=0, train_cnn=True,
                                         mask_prob=0.0, mask_channel_prob=0.0)
    model.train()
    assert _grads(model)["feature_extractor"]
    with pytest.raises(ConfigError, match="set train_cnn"):
        build_frame_classifier(pretrained, pretrained.parent, feature_grad_mult=0.1)

