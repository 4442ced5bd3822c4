"""spokenlm convert-hubert: torchaudio / transformers HuBERT weights -> fairseq checkpoint.

The oracle is the source model itself: small randomly initialised models of each layout (every
parameter perturbed, so that a swapped layer norm or projection cannot hide behind an identity
initialisation) are converted, loaded with fairseq, and must give the same features at every
transformer layer, alone and in a padded batch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torchaudio.models as ta_models
import transformers  # test-only dependency (requirements.txt)

import spokenlm_plugin  # noqa: F401  (fairseq fixes: torch >= 2.6 checkpoint loading)
from fairseq import checkpoint_utils
from spokenlm_plugin.cli import main
from tests.conftest import run_cli

TOL = 1e-4
LONG, SHORT = 8000, 5600  # samples; SHORT is chosen so both padding conventions agree (see _valid_frames)
#: A small CNN with HuBERT's 320-sample hop (custom kernels: the strides must come from the config).
SMALL_CNN = [(32, 10, 5), (32, 8, 4), (32, 16, 16)]
#: HuBERT's own CNN (kernels 10,3,3,3,3,2,2; strides 5,2,...) with few channels.
HUBERT_CNN = [(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2

_ENCODER = dict(encoder_embed_dim=48, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=16,
                encoder_pos_conv_groups=4, encoder_num_layers=3, encoder_num_heads=4,
                encoder_attention_dropout=0.0, encoder_ff_interm_features=96, encoder_ff_interm_dropout=0.0,
                encoder_dropout=0.0, encoder_layer_drop=0.0)
#: Like hubert_base: group-norm CNN, post-LN. Only the heads are in the config; --arch base gives the rest.
TA_BASE_LIKE = dict(extractor_mode="group_norm", extractor_conv_layer_config=HUBERT_CNN, extractor_conv_bias=False,
                    encoder_layer_norm_first=False, aux_num_out=None, **_ENCODER)
#: Like hubert_pretrain_large: layer-norm CNN with bias, pre-LN, with mask embedding and label embeddings.
TA_PRETRAIN_LARGE_LIKE = dict(
    extractor_mode="layer_norm", extractor_conv_layer_config=SMALL_CNN, extractor_conv_bias=True,
    encoder_layer_norm_first=True, mask_prob=0.8, mask_selection="static", mask_other=0.0, mask_length=10,
    no_mask_overlap=False, mask_min_space=1, mask_channel_prob=0.0, mask_channel_selection="static",
    mask_channel_other=0.0, mask_channel_length=10, no_mask_channel_overlap=False, mask_channel_min_space=1,
    skip_masked=False, skip_nomask=False, num_classes=10, final_dim=16, feature_grad_mult=None, **_ENCODER,
)
_HF_SMALL = dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
                 conv_dim=[c for c, _, _ in SMALL_CNN], conv_kernel=[k for _, k, _ in SMALL_CNN],
                 conv_stride=[s for _, _, s in SMALL_CNN], num_conv_pos_embeddings=16,
                 num_conv_pos_embedding_groups=4, hidden_dropout=0.0, attention_dropout=0.0,
                 activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0)
HF_CASES = {
    "base_like": dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False, hidden_act="gelu"),
    "large_like": dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, hidden_act="gelu_new"),
}


def _perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


def _waves() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    wav = torch.randn(2, LONG, generator=gen)
    wav[1, SHORT:] = 0.0
    return wav


def _valid_frames(conv: list[tuple[int, int, int]], total: int, n: int) -> int:
    """Unpadded frames of an ``n``-sample utterance padded to ``total``, by both conventions.

    torchaudio and transformers apply the CNN length formula to ``n``; fairseq splits the sample
    mask into equal chunks, one per frame, and pads a frame when its whole chunk is padding.
    """
    def conv_len(length: int) -> int:
        for _, k, s in conv:
            length = (length - k) // s + 1
        return length

    frames = conv_len(total)
    fairseq = min(frames, math.ceil(n / ((total - total % frames) // frames)))
    assert conv_len(n) == fairseq, "pick lengths on which the two padding conventions agree"
    return fairseq


def _load_fairseq(path: Path) -> tuple[torch.nn.Module, object]:
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(path)])
    return models[0].eval(), task


def _fairseq_layers(model: torch.nn.Module, wav: torch.Tensor, lengths: list[int] | None = None) -> list[torch.Tensor]:
    """Output of every transformer layer (1-based ``output_layer``), then of the whole encoder."""
    padding_mask = None
    if lengths is not None:
        padding_mask = torch.arange(wav.shape[1])[None, :] >= torch.tensor(lengths)[:, None]
    num_layers = len(model.encoder.layers)
    with torch.no_grad():
        return [model.extract_features(wav, padding_mask=padding_mask, mask=False, output_layer=k)[0]
                for k in [*range(1, num_layers + 1), None]]


def _assert_close(ref: list[torch.Tensor], ours: list[torch.Tensor], frames: list[int] | None = None) -> None:
    assert len(ref) == len(ours)
    for layer, (a, b) in enumerate(zip(ref, ours), start=1):
        assert a.shape == b.shape, f"layer {layer}: {tuple(a.shape)} vs {tuple(b.shape)}"
        for row, n in enumerate(frames or [a.shape[1]] * a.shape[0]):
            diff = (a[row, :n] - b[row, :n]).abs().max().item()
            assert diff < TOL, f"layer {layer}, utterance {row}: max abs difference {diff:.2e}"


def _convert(*args: str) -> None:
    assert main(["convert-hubert", *args]) == 0


# ------------------------------------------------------------------------------------- torchaudio


@pytest.fixture(scope="module")
def ta_base_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path, Path]:
    """A torchaudio Wav2Vec2Model saved as a state dict, with a config holding only its head count."""
    torch.manual_seed(0)
    model = _perturb(ta_models.wav2vec2_model(**TA_BASE_LIKE), seed=10)
    work = tmp_path_factory.mktemp("ta_base_like")
    torch.save(model.state_dict(), work / "model.pt")
    (work / "heads.json").write_text(json.dumps({"encoder_num_heads": TA_BASE_LIKE["encoder_num_heads"]}))
    return model, work / "model.pt", work / "heads.json"


def test_torchaudio_wav2vec2_model(ta_base_like, tmp_path: Path) -> None:
    model, src, heads = ta_base_like
    out = tmp_path / "hubert.pt"
    _convert("--from", "torchaudio", str(src), "--config", str(heads), "--arch", "base", "--out", str(out))
    ours, task = _load_fairseq(out)
    assert not task.cfg.normalize  # group-norm CNN: HuBERT Base convention
    assert task.cfg.label_rate == 50.0

    wav = _waves()
    with torch.no_grad():
        ref = model.extract_features(wav[:1])[0] + [model(wav[:1])[0]]
        _assert_close(ref, _fairseq_layers(ours, wav[:1]))
        lengths = [LONG, SHORT]
        ref = model.extract_features(wav, torch.tensor(lengths))[0] + [model(wav, torch.tensor(lengths))[0]]
    frames = [_valid_frames(HUBERT_CNN, LONG, n) for n in lengths]
    _assert_close(ref, _fairseq_layers(ours, wav, lengths), frames)


def test_torchaudio_bundle_wrapper(ta_base_like, tmp_path: Path) -> None:
    """torchaudio.pipelines bundles may wrap the model as ``.model`` (state dict keys ``model.*``)."""
    model, src, heads = ta_base_like
    torch.save({f"model.{k}": v for k, v in model.state_dict().items()}, tmp_path / "bundle.pt")
    for name, path in (("plain", src), ("bundle", tmp_path / "bundle.pt")):
        _convert("--from", "torchaudio", str(path), "--config", str(heads), "--arch", "base",
                 "--out", str(tmp_path / f"{name}.pt"))
    plain, bundle = (torch.load(tmp_path / f"{x}.pt", weights_only=False)["model"] for x in ("plain", "bundle"))
    assert plain.keys() == bundle.keys() and all(torch.equal(plain[k], bundle[k]) for k in plain)


def test_wrong_layer_norm_order_changes_features(ta_base_like, tmp_path: Path) -> None:
    """Negative control: the features comparison detects an architecture the weights do not have."""
    model, src, heads = ta_base_like
    out = tmp_path / "wrong.pt"
    _convert("--from", "torchaudio", str(src), "--config", str(heads), "--arch", "large", "--out", str(out))
    ours, _ = _load_fairseq(out)
    assert ours.encoder.layer_norm_first
    with pytest.raises(AssertionError, match="max abs difference"):
        with torch.no_grad():
            _assert_close(model.extract_features(_waves()[:1])[0], _fairseq_layers(ours, _waves()[:1])[:-1])


def test_torchaudio_hubert_pretrain_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _perturb(ta_models.hubert_pretrain_model(**TA_PRETRAIN_LARGE_LIKE), seed=11)
    torch.save(model.state_dict(), tmp_path / "pretrain.pt")
    (tmp_path / "config.json").write_text(json.dumps(TA_PRETRAIN_LARGE_LIKE))
    out = tmp_path / "hubert.pt"
    _convert("--from", "torchaudio", str(tmp_path / "pretrain.pt"), "--config", str(tmp_path / "config.json"),
             "--out", str(out))
    ours, task = _load_fairseq(out)
    assert task.cfg.normalize  # layer-norm CNN: HuBERT Large convention
    # What HuBERTPretrainModel has beyond the encoder is kept; label rows follow fairseq's 4 specials.
    assert torch.equal(ours.mask_emb, model.mask_generator.mask_embedding)
    assert torch.equal(ours.final_proj.weight, model.logit_generator.final_proj.weight)
    assert torch.equal(ours.label_embs_concat[4:], model.logit_generator.label_embeddings)
    assert [task.dictionaries[0][i] for i in range(4, 14)] == [str(u) for u in range(10)]

    encoder, wav, lengths = model.wav2vec2, _waves(), [LONG, SHORT]
    with torch.no_grad():
        ref = encoder.extract_features(wav[:1])[0] + [encoder(wav[:1])[0]]
        _assert_close(ref, _fairseq_layers(ours, wav[:1]))
        ref = encoder.extract_features(wav, torch.tensor(lengths))[0] + [encoder(wav, torch.tensor(lengths))[0]]
    frames = [_valid_frames(SMALL_CNN, LONG, n) for n in lengths]
    _assert_close(ref, _fairseq_layers(ours, wav, lengths), frames)


# ------------------------------------------------------------------------------------ transformers


def _hf_model(case: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.HubertConfig(**_HF_SMALL, **HF_CASES[case])
    return _perturb(transformers.HubertModel(config), seed=seed)


def _hf_layers(
    model: torch.nn.Module, wav: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(wav, attention_mask=attention_mask, output_hidden_states=True)
    # hidden_states[0] is the transformer's input; [k] the raw output of layer k.
    return list(out.hidden_states[1:]) + [out.last_hidden_state]


@pytest.mark.parametrize("case", sorted(HF_CASES))
def test_hf_hubert_model(case: str, tmp_path: Path) -> None:
    model = _hf_model(case, seed=12)
    model.save_pretrained(tmp_path / "hf", safe_serialization=True)
    out = tmp_path / "hubert.pt"
    _convert("--from", "hf", str(tmp_path / "hf"), "--out", str(out))
    ours, task = _load_fairseq(out)
    assert task.cfg.normalize == (case == "large_like")
    assert torch.equal(ours.mask_emb, model.masked_spec_embed)

    wav, lengths = _waves(), [LONG, SHORT]
    _assert_close(_hf_layers(model, wav[:1]), _fairseq_layers(ours, wav[:1]))
    attention_mask = (torch.arange(LONG)[None, :] < torch.tensor(lengths)[:, None]).long()
    frames = [_valid_frames(SMALL_CNN, LONG, n) for n in lengths]
    _assert_close(_hf_layers(model, wav, attention_mask), _fairseq_layers(ours, wav, lengths), frames)


def test_hf_single_file_with_task_head(tmp_path: Path) -> None:
    """A HubertForCTC weights file alone, its config.json elsewhere: the head is dropped."""
    torch.manual_seed(0)
    config = transformers.HubertConfig(**_HF_SMALL, **HF_CASES["base_like"], vocab_size=7)
    model = _perturb(transformers.HubertForCTC(config), seed=13)
    model.save_pretrained(tmp_path / "ctc", safe_serialization=True)
    weights = (tmp_path / "ctc" / "model.safetensors").rename(tmp_path / "weights.safetensors")
    out = tmp_path / "hubert.pt"
    _convert("--from", "hf", str(weights), "--config", str(tmp_path / "ctc" / "config.json"), "--out", str(out))
    ours, _ = _load_fairseq(out)
    dropped = torch.load(out, weights_only=False)["extra_state"]["converted_from"]["dropped"]
    assert sorted(dropped) == ["lm_head.bias", "lm_head.weight"]
    _assert_close(_hf_layers(model.hubert, _waves()[:1]), _fairseq_layers(ours, _waves()[:1]))


def test_conversion_is_reproducible(tmp_path: Path) -> None:
    _hf_model("base_like", seed=14).save_pretrained(tmp_path / "hf", safe_serialization=True)
    _convert("--from", "hf", str(tmp_path / "hf"), "--out", str(tmp_path / "a.pt"))
    _convert("--from", "hf", str(tmp_path / "hf"), "--out", str(tmp_path / "b.pt"))
    a, b = (torch.load(tmp_path / f"{x}.pt", weights_only=False)["model"] for x in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # created parts included


def test_fairseq_hubert_ctc_loads_converted_checkpoint(tmp_path: Path) -> None:
    """fairseq's own fine-tuning model reads the converted file as its ``w2v_path``."""
    from fairseq.models.hubert.hubert_asr import HubertCtc, HubertCtcConfig
    from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig, HubertPretrainingTask
    from omegaconf import OmegaConf

    model = _hf_model("large_like", seed=15)
    model.save_pretrained(tmp_path / "hf", safe_serialization=True)
    _convert("--from", "hf", str(tmp_path / "hf"), "--out", str(tmp_path / "hubert.pt"))
    (tmp_path / "dict.ltr.txt").write_text("A 1\nB 1\n")
    task = HubertPretrainingTask(HubertPretrainingConfig(data=str(tmp_path), fine_tuning=True, labels=["ltr"]))
    cfg = OmegaConf.structured(HubertCtcConfig(w2v_path=str(tmp_path / "hubert.pt"), normalize=True,
                                               data=str(tmp_path)))
    # fairseq 0.12's HubertEncoder reads cfg.autoregressive, which HubertCtcConfig lacks.
    cfg = OmegaConf.create({**OmegaConf.to_container(cfg), "autoregressive": False})
    ctc = HubertCtc.build_model(cfg, task).eval()
    _assert_close(_hf_layers(model, _waves()[:1])[-1:], _fairseq_layers(ctc.w2v_encoder.w2v_model, _waves()[:1])[-1:])


# ------------------------------------------------------------------------------------------ errors


def _edited(ta_base_like, tmp_path: Path, edit) -> Path:
    state = dict(torch.load(ta_base_like[1], weights_only=True))
    edit(state)
    torch.save(state, tmp_path / "edited.pt")
    return tmp_path / "edited.pt"


def _unknown_key(state):
    state["encoder.transformer.layers.0.attention.rotary.weight"] = torch.zeros(4)


def _bad_shape(state):
    state["encoder.transformer.layers.2.feed_forward.output_dense.bias"] = torch.zeros(7)


def _missing(state):
    del state["encoder.transformer.layers.1.final_layer_norm.bias"]


@pytest.mark.parametrize(("edit", "expected"), [
    (_unknown_key, "'encoder.transformer.layers.0.attention.rotary.weight'"),
    (_bad_shape, "'encoder.transformer.layers.2.feed_forward.output_dense.bias' has shape (7,), expected (48,)"),
    (_missing, "'encoder.layers.1.final_layer_norm.bias'"),
])
def test_bad_state_dict(ta_base_like, tmp_path: Path, capsys, edit, expected: str) -> None:
    src, out = _edited(ta_base_like, tmp_path, edit), tmp_path / "out.pt"
    code = main(["convert-hubert", "--from", "torchaudio", str(src), "--config", str(ta_base_like[2]),
                 "--arch", "base", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert str(src) in err and expected in err
    assert not out.exists()


def test_not_a_hubert_source(ta_base_like, tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("not a model\n")
    torch.save({"weights": [1, 2]}, tmp_path / "lists.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a pickled module, not a state dict
    hf = tmp_path / "w2v"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    cases = [
        (["torchaudio", str(tmp_path / "notes.txt")], "not a file written by torch.save"),
        (["torchaudio", str(tmp_path / "lists.pt")], "entry 'weights' is a list, not a tensor"),
        (["torchaudio", str(tmp_path / "module.pt")], "holds Python objects besides tensors"),
        # 48 dims is none of torchaudio's HuBERT factories: the head count must be given.
        (["torchaudio", str(ta_base_like[1])], "pass --config"),
        (["hf", str(hf)], "model_type is 'wav2vec2', not 'hubert'"),
        (["hf", str(ta_base_like[1])], "config.json: not found"),
    ]
    for (layout, src), expected in cases:
        code = main(["convert-hubert", "--from", layout, src, "--out", str(tmp_path / "out.pt")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "out.pt").exists()


def test_console_script(ta_base_like, tmp_path: Path) -> None:
    _, src, heads = ta_base_like
    proc = run_cli("spokenlm", "convert-hubert", "--from", "torchaudio", str(src), "--config", str(heads),
                   "--arch", "base", "--out", str(tmp_path / "hubert.pt"))
    assert "3 layers x 48 (4 heads" in proc.stdout and "post-LN" in proc.stdout
    assert "initialised (absent from" in proc.stdout and "mask_emb" in proc.stdout
    assert (tmp_path / "hubert.pt").is_file()
