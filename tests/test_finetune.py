"""Phoneme fine-tuning through the real fairseq CLIs: a tiny HuBERT pretrained with fairseq's own
``hubert_pretraining``, then ``phoneme_frame_cls`` (frame CE), the CTC variant and the hydra demo
config; self-contained reloads; bad inputs stopped before training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from spokenlm_plugin.demo import stage_finetune
from tests.conftest import REPO, run_cli
from tests.finetune_support import PLUGIN, common_args, frame_args


def _train_log(stdout: str) -> list[dict]:
    """fairseq's per-update json log lines (``--log-format json --log-interval 1``)."""
    return [json.loads(line.split("| train_inner | ", 1)[1]) for line in stdout.splitlines() if "| train_inner | " in line]


def _valid_log(stdout: str) -> dict:
    lines = [line.split("| valid | ", 1)[1] for line in stdout.splitlines() if "| valid | " in line]
    return json.loads(lines[-1])


def _losses_fall(log: list[dict]) -> tuple[float, float]:
    losses = [float(x["loss"]) for x in log]
    assert len(losses) >= 10, losses
    return sum(losses[:4]) / 4, sum(losses[-4:]) / 4


def _hubert_weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in torch.load(path, map_location="cpu", weights_only=False)["model"].items()}


@pytest.fixture(scope="module")
def frame_run(corpus, tiny_base, tmp_path_factory):
    """Fine-tune a copy of the tiny base (deleted afterwards) for 30 updates."""
    work = tmp_path_factory.mktemp("frame")
    base = work / "base.pt"
    shutil.copy(tiny_base, base)
    proc = run_cli(*frame_args(corpus, base, work / "ckpt", max_update=30), "--freeze-finetune-updates", "5")
    pretrained = _hubert_weights(base)
    base.unlink()
    return proc, work / "ckpt" / "checkpoint_last.pt", pretrained


def test_frame_cls_loss_falls_and_validation_reports_accuracy_and_per(corpus, frame_run):
    from spokenlm_plugin.finetune.evaluate import evaluate_phones

    proc, checkpoint, _ = frame_run
    first, last = _losses_fall(_train_log(proc.stdout))
    assert last < first - 0.2, (first, last)
    assert "update 5: encoder unfrozen" in proc.stdout
    # fairseq-train's validation (padded batches, the criterion's counts, fairseq's averaging) gives
    # the numbers of the plugin's evaluation of the final checkpoint, one utterance at a time.
    valid = _valid_log(proc.stdout)
    scores = evaluate_phones(checkpoint, data=corpus / "manifests", split="valid", label_dir=corpus / "labels")
    assert scores.utterances == len((corpus / "manifests" / "valid.tsv").read_text().splitlines()) - 1
    assert float(valid["valid_accuracy"]) == pytest.approx(scores.frame_accuracy, abs=0.005)
    assert float(valid["valid_per"]) == pytest.approx(scores.per, abs=0.005)


def test_frame_cls_checkpoint_reloads_without_pretrained_file(frame_run):
    from fairseq import checkpoint_utils

    _, checkpoint, pretrained = frame_run
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)])
    model = models[0].eval()
    assert type(model).__name__ == "HubertFrameClassifier"
    assert model.num_layers == 2 and model.layer == 2
    assert model.phones == task.phones and model.phones[0] == "SIL" and len(model.phones) == 40
    # CNN frozen all along; the transformer trained after update 5.
    state = model.state_dict()
    for k, v in pretrained.items():
        if k.startswith("feature_extractor."):
            assert torch.equal(state[f"w2v_encoder.w2v_model.{k}"], v), k
    assert not torch.equal(state["w2v_encoder.w2v_model.encoder.layers.0.fc1.weight"], pretrained["encoder.layers.0.fc1.weight"])

    wav = torch.randn(2, 16_000)
    padding = torch.zeros(2, 16_000, dtype=torch.bool)
    padding[1, 9_000:] = True
    with torch.no_grad():
        out = model(wav, padding)
        feats, frame_padding = model.extract_features(wav, padding)
        first, _ = model.extract_features(wav, padding, output_layer=1)
    assert out["logits"].shape == (2, 49, 40)
    assert feats.shape == (2, 49, 64) and first.shape == (2, 49, 64)
    assert torch.allclose(out["logits"], model.w2v_encoder.proj(feats), atol=1e-5)
    assert not torch.allclose(first, feats)
    assert frame_padding[0].sum() == 0 and 20 <= frame_padding[1].sum() <= 23


def test_linear_probe_keeps_encoder_unchanged(corpus, tiny_base, tmp_path):
    proc = run_cli(
        *frame_args(corpus, tiny_base, tmp_path / "ckpt", max_update=4),
        "--freeze-finetune-updates", "1000", "--disable-validation",
    )
    assert len(_train_log(proc.stdout)) == 4
    state = _hubert_weights(tmp_path / "ckpt" / "checkpoint_last.pt")
    pretrained = _hubert_weights(tiny_base)
    for k, v in pretrained.items():
        if not k.startswith(("label_embs_concat", "final_proj")):
            assert torch.equal(state[f"w2v_encoder.w2v_model.{k}"], v), k
    assert "w2v_encoder.proj.weight" in state


@pytest.mark.slow  # a whole CLI integration run: CI runs it (--slow)
def test_ctc_variant_with_fairseq_ctc_criterion(corpus, tiny_base, tmp_path):
    from fairseq import checkpoint_utils

    base = tmp_path / "base.pt"
    shutil.copy(tiny_base, base)
    proc = run_cli(
        "fairseq-train", *common_args(corpus, tmp_path / "ckpt", max_update=30),
        "--task", "phoneme_ctc", "--labels", '["phnseq"]',
        "--arch", "hubert_phone_ctc", "--w2v-path", str(base), "--apply-mask", "--mask-prob", "0.75",
        "--mask-channel-prob", "0.5", "--mask-channel-length", "10", "--layerdrop", "0.1",
        "--activation-dropout", "0.1", "--feature-grad-mult", "0.0", "--freeze-finetune-updates", "5",
        "--criterion", "ctc", "--zero-infinity", "--post-process", "none",
    )
    first, last = _losses_fall(_train_log(proc.stdout))
    assert last < first, (first, last)
    assert "valid_uer" in _valid_log(proc.stdout)  # fairseq's ctc criterion decodes the plugin's model
    base.unlink()
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(tmp_path / "ckpt" / "checkpoint_last.pt")])
    model = models[0].eval()
    with torch.no_grad():
        out = model(source=torch.randn(1, 16_000), padding_mask=torch.zeros(1, 16_000, dtype=torch.bool))
    assert out["encoder_out"].shape == (49, 1, len(task.target_dictionary))
    assert task.target_dictionary.index("<s>") == 0  # CTC blank


@pytest.mark.slow  # a whole CLI integration run: CI runs it (--slow)
def test_hydra_demo_config_as_documented(corpus, tiny_base, tmp_path):
    from spokenlm_plugin.finetune.evaluate import load_frame_classifier

    save_dir = tmp_path / "demo"
    run_cli(
        "fairseq-hydra-train", "--config-dir", str(REPO / "examples/finetune/config"), "--config-name", "demo",
        f"common.user_dir={PLUGIN}", f"task.data={corpus / 'manifests'}", f"task.label_dir={corpus / 'labels'}",
        f"model.w2v_path={tiny_base}", f"checkpoint.save_dir={save_dir}",
        "optimization.max_update=3", "dataset.max_tokens=160000", "dataset.disable_validation=true",
        cwd=REPO,
    )
    model, task = load_frame_classifier(save_dir / "checkpoint_last.pt")
    assert model.cfg.mask_prob == 0.0 and model.w2v_encoder.freeze_finetune_updates == 60 and model.cfg.train_cnn and task.cfg.labels == "phn"


def test_labels_for_another_manifest_stop_before_training(corpus, tiny_base, tmp_path):
    labels = tmp_path / "labels"
    shutil.copytree(corpus / "labels", labels)
    (labels / "train.phn").write_text((corpus / "labels" / "valid.phn").read_text())
    args = frame_args(corpus, tiny_base, tmp_path / "ckpt", max_update=3)
    args[args.index("--label-dir") + 1] = str(labels)
    proc = run_cli(*args, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # One line (the plugin's excepthook), naming the file and the cause; no traceback.
    assert f"fairseq-train: error: {labels / 'train.phn'}:" in out and "another manifest" in out
    assert "Traceback" not in out
    assert "Start iterating over samples" not in out
    assert not list((tmp_path / "ckpt").glob("*.pt"))


def test_not_hubert_checkpoint_stops_before_training(corpus, tiny_base, tmp_path):
    state = torch.load(tiny_base, map_location="cpu", weights_only=False)
    state["cfg"]["model"]["_name"] = "wav2vec2"
    fake = tmp_path / "wav2vec2.pt"
    torch.save(state, fake)
    proc = run_cli(*frame_args(corpus, fake, tmp_path / "ckpt", max_update=3), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "fairseq-train: error: " in out and "'wav2vec2' model, not a pretrained HuBERT" in out
    assert "Traceback" not in out
    assert "Start iterating over samples" not in out


@pytest.mark.slow  # a minute: the real stage (fine-tuning, probe, log-mel classifier, scoring)
def test_demo_stage_quick(corpus, tmp_path):
    """The demo stage end to end on the committed corpus with the shipped small HuBERT."""
    from spokenlm_plugin.demo.context import DemoContext
    from spokenlm_plugin.finetune.evaluate import load_frame_classifier
    from spokenlm_plugin.pretrain.hubert import shipped_checkpoint

    ctx = DemoContext(work=tmp_path, quick=True, artifacts={"corpus": corpus}, log=lambda _: None)
    result = stage_finetune.run(ctx)
    assert ctx.artifacts["base_checkpoint"] == shipped_checkpoint()
    assert (ctx.artifacts["base_layer"], ctx.artifacts["finetuned_layer"]) == (3, 4)
    model, _ = load_frame_classifier(ctx.artifacts["finetuned_checkpoint"])
    assert model.layer == 4
    [table] = result.tables
    assert [row[0] for row in table.rows][:3] == ["linear probe (frozen base)", "fine-tuned (CPU regime)",
                                                  "baseline: linear on log-mel (+-2 frames)"]
    assert table.rows[3][0].startswith("resynthesis judge: fine-tuned + all")
    # the judge: its own checkpoint, trained on from the fine-tuned weights, with the train labels' switch rate
    judge = ctx.artifacts["recognizer"]
    assert judge["checkpoint"] != ctx.artifacts["finetuned_checkpoint"] and 0 < judge["switch_prob"] < 0.5
    judge_model, _ = load_frame_classifier(judge["checkpoint"])
    assert judge_model.layer == 4
    recognizer = result.metrics["recognizer"]
    assert recognizer["updates"] == stage_finetune.RECOGNIZER[True].max_update
    assert 0 < recognizer["per_smoothed"] and 0 < recognizer["frame_accuracy"] < 1
    assert result.metrics["logmel_classifier"]["converged"]
    for run in ("probe", "finetuned", "logmel_classifier"):
        metrics = result.metrics[run]
        assert 0.0 < metrics["frame_accuracy"] < 1.0 and metrics["per"] > 0.0
        assert metrics["test_utterances"] == 8
