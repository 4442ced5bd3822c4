"""Fast in-process checks of the fine-tuning components: label validation, checkpoint validation,
logits/label alignment and the PER metric (against an independent slow reference)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from spokenlm_plugin.core.errors import CheckpointError, DictionaryError, LabelMismatchError
from spokenlm_plugin.data.frame_labels import check_sequence_labels, load_dictionary, read_frame_labels
from spokenlm_plugin.core.phone_metrics import PhoneScores, phone_errors
from spokenlm_plugin.finetune.pretrained import load_pretrained
from spokenlm_plugin.finetune.task import PAD_LABEL, trim_to_labels
from spokenlm_plugin.core.phones import INVENTORY, num_frames


@pytest.fixture
def labelled(tmp_path) -> tuple[Path, Path, Path]:
    """A manifest of 3 utterances (no audio needed), matching frame labels and dict.phn.txt."""
    sizes = [16_000, 24_000, 8_000]
    (tmp_path / "train.tsv").write_text("/audio\n" + "".join(f"s/u{i}.flac\t{n}\n" for i, n in enumerate(sizes)))
    rng = random.Random(0)
    lines = [" ".join(rng.choice(INVENTORY) for _ in range(num_frames(n))) for n in sizes]
    (tmp_path / "train.phn").write_text("\n".join(lines) + "\n")
    (tmp_path / "dict.phn.txt").write_text("".join(f"{p} 1\n" for p in INVENTORY))
    return tmp_path / "train.tsv", tmp_path / "train.phn", tmp_path / "dict.phn.txt"


def _read(manifest: Path, labels: Path, dict_path: Path, **kw) -> list[np.ndarray]:
    d = load_dictionary(dict_path)
    return read_frame_labels(manifest, labels, phones=d.symbols[d.nspecial :], dict_path=dict_path, **kw)


def test_frame_labels_encode_in_dictionary_order(labelled):
    manifest, labels, dict_path = labelled
    encoded = _read(manifest, labels, dict_path)
    assert [len(x) for x in encoded] == [49, 74, 24]
    first = labels.read_text().splitlines()[0].split()
    assert [INVENTORY[i] for i in encoded[0]] == first


def test_one_frame_of_difference_is_tolerated_two_are_not(labelled):
    manifest, labels, dict_path = labelled
    lines = labels.read_text().splitlines()
    lines[1] += " SIL"
    labels.write_text("\n".join(lines) + "\n")
    assert len(_read(manifest, labels, dict_path)[1]) == 75
    lines[1] += " SIL"
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(LabelMismatchError, match=r"train\.phn:2: utterance u1 has 76 label frames .* 74 frames"):
        _read(manifest, labels, dict_path)


def test_labels_of_reordered_manifest_name_the_utterance(labelled):
    manifest, labels, dict_path = labelled
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join([lines[1], lines[0], lines[2]]) + "\n")
    with pytest.raises(LabelMismatchError, match=r"train\.phn:1: utterance u0 has 74 label frames"):
        _read(manifest, labels, dict_path)


def test_row_count_mismatch_for_frame_and_sequence_labels(labelled):
    manifest, labels, dict_path = labelled
    labels.write_text("\n".join(labels.read_text().splitlines()[:2]) + "\n")
    with pytest.raises(LabelMismatchError, match="2 lines for the 3 utterances"):
        _read(manifest, labels, dict_path)
    seq = labels.with_suffix(".phnseq")
    seq.write_text("AA B\nK\n")
    with pytest.raises(LabelMismatchError, match="another manifest"):
        check_sequence_labels(manifest, seq, phones=INVENTORY, dict_path=dict_path)


def test_phone_missing_from_dictionary(labelled):
    manifest, labels, dict_path = labelled
    used = labels.read_text().split()[0]
    dict_path.write_text("".join(f"{p} 1\n" for p in INVENTORY if p != used))
    with pytest.raises(DictionaryError, match=rf"train\.phn:1 \(u0\): phone '{used}' is not in .*dict\.phn\.txt"):
        _read(manifest, labels, dict_path)
    seq = labels.with_suffix(".phnseq")
    seq.write_text(f"AA\nB\n{used}\n")
    with pytest.raises(DictionaryError, match="is not in"):
        check_sequence_labels(manifest, seq, phones=[p for p in INVENTORY if p != used], dict_path=dict_path)


def test_missing_dictionary(tmp_path):
    with pytest.raises(DictionaryError, match="dictionary not found"):
        load_dictionary(tmp_path / "dict.phn.txt")


def test_checkpoint_validation(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_pretrained(tmp_path / "missing.pt")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable pretrained HuBERT checkpoint"):
        load_pretrained(text)
    bare = tmp_path / "bare.pt"
    torch.save({"weights": torch.zeros(2)}, bare)
    with pytest.raises(CheckpointError, match="no 'model' entry"):
        load_pretrained(bare)
    other = tmp_path / "lm.pt"
    torch.save({"model": {}, "cfg": {"model": {"_name": "transformer_lm"}, "task": {}}}, other)
    with pytest.raises(CheckpointError, match="'transformer_lm' model, not a pretrained HuBERT"):
        load_pretrained(other)
    empty = tmp_path / "empty_hubert.pt"
    torch.save({"model": {}, "cfg": {"model": {"_name": "hubert"}, "task": {}}}, empty)
    with pytest.raises(CheckpointError, match="HuBERT weights missing"):
        load_pretrained(empty)


def test_trim_to_labels_masks_padding_and_missing_labels():
    logits = torch.randn(2, 5, 3)
    target = torch.tensor([[0, 1, 2, 1, 0, 2], [1, 1, PAD_LABEL, PAD_LABEL, PAD_LABEL, PAD_LABEL]])
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    lg, tg, mask = trim_to_labels(logits, padding, target)
    assert lg.shape == (2, 5, 3) and tg.shape == (2, 5)
    assert mask.tolist() == [[True] * 5, [True, True, False, False, False]]
    lg, tg, mask = trim_to_labels(torch.randn(1, 7, 3), None, target[:1])
    assert lg.shape == (1, 6, 3) and mask.all()


def _levenshtein(a: list[int], b: list[int]) -> int:
    """Textbook full-matrix edit distance (the slow oracle)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1][-1]


def _greedy(frames: list[int], sil: int | None) -> list[int]:
    runs = [f for i, f in enumerate(frames) if i == 0 or frames[i - 1] != f]
    return [r for r in runs if r != sil]


def test_phone_errors_match_reference_implementation():
    rng = random.Random(1)
    for _ in range(200):
        ref = [rng.randrange(5) for _ in range(rng.randrange(0, 30))]
        hyp = [rng.randrange(5) for _ in range(rng.randrange(0, 30))]
        sil = rng.choice([None, 0])
        expected_ref = _greedy(ref, sil)
        assert phone_errors(hyp, ref, sil=sil) == (_levenshtein(_greedy(hyp, sil), expected_ref), len(expected_ref))


def test_phone_scores_totals():
    pred = torch.tensor([[0, 1, 1, 2, 0, 3], [2, 2, 0, 0, 0, 0]])
    target = torch.tensor([[0, 1, 1, 1, 0, 3], [2, 2, 1, 0, 0, 0]])
    mask = torch.tensor([[True] * 6, [True, True, True, False, False, False]])
    scores = PhoneScores()
    scores.add(pred, target, mask, sil=0)
    # frames: 6 + 3 labelled, 5 + 2 correct; phones (SIL=0 dropped): [1,2,3] vs [1,3]; [2] vs [2,1].
    assert (scores.frames, scores.correct) == (9, 7)
    assert (scores.edits, scores.ref_phones) == (2, 4)
    assert scores.frame_accuracy == pytest.approx(7 / 9) and scores.per == pytest.approx(0.5)
    # Interior frames (both neighbours share the label, within the labelled frames): only frame 2 of
    # the first utterance (1 between 1 and 1); the second utterance's labelled part [2, 2, 1] has none.
    assert (scores.interior_frames, scores.interior_correct) == (1, 1)
    assert scores.boundary_share == pytest.approx(8 / 9)


def test_example_configs_match_the_recipes_they_document():
    from omegaconf import OmegaConf

    from spokenlm_plugin.demo.stage_finetune import FULL
    from spokenlm_plugin.pretrain.hubert import PretrainSettings, SmallHubert
    from tests.conftest import REPO

    small = OmegaConf.load(REPO / "examples/pretrain/config/small.yaml")
    spec, settings = SmallHubert(), PretrainSettings()
    assert small.model.conv_feature_layers == spec.conv_feature_layers
    assert (small.model.encoder_layers, small.model.encoder_embed_dim, small.model.encoder_ffn_embed_dim) == (
        spec.layers, spec.dim, spec.ffn_dim)
    assert (small.model.encoder_attention_heads, small.model.conv_pos, small.model.final_dim) == (
        spec.heads, spec.conv_pos, spec.final_dim)
    assert (small.optimization.max_update, small.optimization.lr[0], small.lr_scheduler.warmup_updates) == (
        settings.max_update, settings.lr, settings.warmup_updates)
    assert (small.dataset.max_tokens, small.task.max_sample_size, small.task.min_sample_size) == (
        settings.max_tokens, settings.max_sample_size, settings.min_sample_size)

    demo = OmegaConf.load(REPO / "examples/finetune/config/demo.yaml")
    assert (demo.optimization.max_update, demo.optimization.lr[0], demo.model.freeze_finetune_updates) == (
        FULL.max_update, FULL.lr, FULL.freeze_updates)
    assert demo.dataset.max_tokens == FULL.max_tokens
    assert (demo.model.train_cnn, demo.model.mask_prob, demo.model.mask_channel_prob, demo.model.layerdrop) == (
        FULL.train_cnn, FULL.mask_prob, FULL.mask_channel_prob, FULL.layerdrop)
    assert (small.model.extractor_mode, small.model.feature_grad_mult, small.model.mask_prob) == (
        spec.extractor_mode, spec.feature_grad_mult, spec.mask_prob)
    assert (small.model.dropout, small.model.encoder_layerdrop, small.criterion.pred_nomask_weight) == (
        spec.dropout, spec.layerdrop, settings.nomask_weight)
