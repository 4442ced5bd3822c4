"""convert-hubert --from / --to hubert-phoneme: the paper's fine-tuned HuBERTPhoneme <-> fairseq checkpoints.

The oracle is the source model itself, built here as the paper's code builds it: torchaudio's
``hubert_pretrain_model`` with ``hubert_pretrain_base``'s arguments (2 transformer layers instead of
12, for speed; the converter accepts a Base body of any depth) and its fine-tuning settings, every
parameter perturbed, plus an ``aux`` Linear head (40 classes, or 41 outputs for CTC), saved with
safetensors under the paper's key names (``model.*``, ``aux.*``) beside a ``config.json``
(tests/released_support.py). The converted checkpoints are read by this toolkit's real loaders (``DenseModel``, ``dump-features``,
the evaluation, fairseq's own loader / fairseq-train / fairseq-validate) and must give the
source's forward: ``model.wav2vec2.extract_features`` for layers 1..N, ``aux(last layer)`` for the
logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import spokenlm_plugin  # noqa: F401  (fairseq fixes, plugin registration)
from spokenlm_plugin import cli
from spokenlm_plugin.convert.phoneme import NEVER_LOGIT, PAPER_CLASSES
from spokenlm_plugin.core.audio import read_audio
from spokenlm_plugin.core.io import read_manifest
from spokenlm_plugin.core.phones import INVENTORY
from tests.conftest import REPO, fails_in_one_line, run_cli
from tests.released_support import LAYERS, Paper, make_paper, paper_body, save_paper

TOL = 1e-4
PLUGIN = str(REPO / "spokenlm_plugin")


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Paper, Path]]:
    """One body, two heads: {"frame": (model, folder), "ctc": (model, folder)}."""
    body = paper_body()
    out = {}
    for head, rows in (("frame", 40), ("ctc", 41)):
        model = make_paper(rows=rows, body=body)
        out[head] = (model, save_paper(model, tmp_path_factory.mktemp(head) / "hubert-phoneme"))
    return out


@pytest.fixture(scope="module")
def converted(paper, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """{"frame": (checkpoint, encoder), "ctc": ...}: convert-hubert's outputs for both heads."""
    work = tmp_path_factory.mktemp("converted")
    out = {}
    for head, (_, folder) in paper.items():
        ckpt, encoder = work / f"{head}.pt", work / f"{head}_encoder.pt"
        assert cli.main(["convert-hubert", "--from", "hubert-phoneme", str(folder), "--out", str(ckpt),
                         "--encoder-out", str(encoder)]) == 0
        out[head] = (ckpt, encoder)
    return out


def _waves() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    return [torch.randn(16_000, generator=gen), 0.5 * torch.randn(11_000, generator=gen)]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (tuple(a.shape), tuple(b.shape))
    return (a.float() - b.float()).abs().max().item()


def _fairseq(path: Path):
    from fairseq import checkpoint_utils

    (model,), _, task = checkpoint_utils.load_model_ensemble_and_task([str(path)])
    return model.eval(), task


# ------------------------------------------------------------------------------ frame-level head


def test_paper_class_order_is_the_project_inventory() -> None:
    """SIL then the 39 phones alphabetically: this project's dict.phn.txt order, so the default
    conversion keeps the head's rows in place."""
    assert PAPER_CLASSES == INVENTORY
    assert (REPO / "tests/data/corpus/labels/dict.phn.txt").read_text().split()[::2] == list(INVENTORY)


def test_frame_head_equals_source_forward_through_dense_model(paper, converted) -> None:
    from spokenlm_plugin.units.encoder import DenseModel

    model, _ = paper["frame"]
    ckpt, _ = converted["frame"]
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["cfg"]["model"]["_name"] == "hubert_frame_cls" and state["cfg"]["model"]["layer"] == LAYERS
    assert state["cfg"]["model"]["w2v_args"]["model"]["encoder_layers"] == LAYERS  # self-contained
    waves = _waves()
    refs = [model.layers(w) for w in waves]
    for index, layer in enumerate([*range(1, LAYERS + 1), "logits"]):
        dense = DenseModel.from_checkpoint(ckpt, layer=layer, device="cpu", dtype="float32")
        alone = [dense(w) for w in waves]
        batched = dense.batch(waves)  # padded: DenseModel's exact batching
        for ref, one, two in zip((r[index] for r in refs), alone, batched):
            assert _max_diff(one, ref) < TOL, layer
            assert _max_diff(two, ref) < TOL, layer


def test_dump_features_cli_every_layer_and_logits(paper, converted, corpus_dir, tmp_path) -> None:
    model, _ = paper["frame"]
    ckpt, _ = converted["frame"]
    lines = (corpus_dir / "manifests" / "valid.tsv").read_text().splitlines()
    manifest = tmp_path / "two.tsv"
    manifest.write_text("\n".join(lines[:3]) + "\n")
    rows = read_manifest(manifest)
    refs = {row.utt_id: model.layers(torch.from_numpy(read_audio(rows.path(row)))) for row in rows.rows}
    for index, layer in enumerate([*map(str, range(1, LAYERS + 1)), "logits"]):
        out = tmp_path / f"feats_{layer}"
        assert cli.main(["dump-features", "--checkpoint", str(ckpt), "--layer", layer, "--manifest", str(manifest),
                         "--out", str(out), "--per-utterance", "--device", "cpu", "--dtype", "float32",
                         "--no-progress"]) == 0
        for utt, ref in refs.items():
            assert _max_diff(torch.from_numpy(np.load(out / f"{utt}.npy")), ref[index]) < TOL, (layer, utt)


def test_evaluation_scores_the_source_predictions(paper, converted, corpus_dir) -> None:
    """The demo's evaluation (evaluate_phones) loads the converted checkpoint and counts exactly the
    frames the source model gets right."""
    from spokenlm_plugin.finetune.evaluate import evaluate_phones

    model, _ = paper["frame"]
    ckpt, _ = converted["frame"]
    manifest = read_manifest(corpus_dir / "manifests" / "valid.tsv")
    labels = (corpus_dir / "labels" / "valid.phn").read_text().splitlines()
    correct = frames = 0
    for row, line in zip(manifest.rows, labels):
        predicted = model.layers(torch.from_numpy(read_audio(manifest.path(row))))[-1].argmax(-1)
        target = torch.tensor([INVENTORY.index(p) for p in line.split()])
        n = min(len(predicted), len(target))
        correct += int((predicted[:n] == target[:n]).sum())
        frames += n
    scores = evaluate_phones(ckpt, data=corpus_dir / "manifests", split="valid", label_dir=corpus_dir / "labels")
    assert (scores.utterances, scores.frames, scores.correct) == (len(manifest.rows), frames, correct)


def test_dictionary_option_permutes_the_head_rows(paper, tmp_path) -> None:
    """A dict.phn.txt in another order: class c of the fairseq model is still the phone the
    dictionary names at c (its logit is the source's logit of that phone)."""
    from spokenlm_plugin.units.encoder import DenseModel

    model, folder = paper["frame"]
    order = list(reversed(INVENTORY))
    (tmp_path / "dict.phn.txt").write_text("".join(f"{p} 1\n" for p in order))
    out = tmp_path / "reordered.pt"
    assert cli.main(["convert-hubert", "--from", "hubert-phoneme", str(folder / "model.safetensors"),
                     "--dictionary", str(tmp_path / "dict.phn.txt"), "--out", str(out)]) == 0
    ours, task = _fairseq(out)
    assert task.phones == tuple(order)
    wav = _waves()[0]
    logits = DenseModel(ours, layer="logits", device="cpu", dtype="float32")(wav)
    ref = model.layers(wav)[-1]
    assert _max_diff(logits, ref[:, [INVENTORY.index(p) for p in order]]) < TOL
    assert _max_diff(logits.argmax(-1), torch.tensor([order.index(INVENTORY[c]) for c in ref.argmax(-1)])) == 0


# ------------------------------------------------------------------------------------- CTC head


def test_ctc_head_equals_source_forward(paper, converted) -> None:
    model, _ = paper["ctc"]
    ours, task = _fairseq(converted["ctc"][0])
    assert type(ours).__name__ == "HubertPhoneCtc"
    d = task.target_dictionary
    assert d[0] == "<s>" and d.symbols[d.nspecial:] == list(INVENTORY)  # fairseq's blank, then dict.phn.txt
    wav = _waves()[0]
    ref = model.layers(wav)
    with torch.no_grad():
        for layer in range(1, LAYERS + 1):
            feats, _ = ours.w2v_encoder.w2v_model.extract_features(wav[None], padding_mask=None, mask=False,
                                                                   output_layer=layer)
            assert _max_diff(feats[0], ref[layer - 1]) < TOL
        logits = ours(source=wav[None], padding_mask=None)["encoder_out"][:, 0]  # (T, len(d))
    lprobs = torch.log_softmax(logits, -1)
    # The paper's 41 outputs: phones in its order, blank last; fairseq's <pad> </s> <unk> never win.
    order = [d.index(p) for p in PAPER_CLASSES] + [d.index("<s>")]
    assert _max_diff(lprobs[:, order], torch.log_softmax(ref[-1], -1)) < TOL
    assert _max_diff(logits[:, order], ref[-1]) < TOL
    assert torch.exp(lprobs[:, 1:4]).max() == 0 and torch.all(logits[:, 1:4] == NEVER_LOGIT)


def test_ctc_checkpoint_dumps_every_layer_and_logits(paper, converted) -> None:
    from spokenlm_plugin.units.encoder import DenseModel

    model, _ = paper["ctc"]
    wav = _waves()[0]
    ref = model.layers(wav)
    for index, layer in enumerate([*range(1, LAYERS + 1), "logits"]):
        out = DenseModel.from_checkpoint(converted["ctc"][0], layer=layer, device="cpu", dtype="float32")(wav)
        if layer == "logits":
            d = _fairseq(converted["ctc"][0])[1].target_dictionary
            out = out[:, [d.index(p) for p in PAPER_CLASSES] + [d.index("<s>")]]
        assert _max_diff(out, ref[index]) < TOL


# ---------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("head", ["frame", "ctc"])
def test_round_trip_is_exact(paper, converted, head: str, tmp_path) -> None:
    """safetensors -> fairseq -> safetensors gives the source's tensors (logit generator included) and
    config; fairseq -> safetensors -> fairseq gives the converted checkpoint's tensors, bit for bit."""
    _, folder = paper[head]
    ckpt, _ = converted[head]
    assert cli.main(["convert-hubert", "--to", "hubert-phoneme", str(ckpt), "--out", str(tmp_path / "out")]) == 0
    source, exported = load_file(folder / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert sorted(source) == sorted(exported)
    assert all(torch.equal(source[k], exported[k]) for k in source)
    assert json.loads((tmp_path / "out" / "config.json").read_text()) == json.loads((folder / "config.json").read_text())

    assert cli.main(["convert-hubert", "--from", "hubert-phoneme", str(tmp_path / "out"),
                     "--out", str(tmp_path / "again.pt")]) == 0
    first, again = (torch.load(p, map_location="cpu", weights_only=False)["model"] for p in (ckpt, tmp_path / "again.pt"))
    assert sorted(first) == sorted(again) and all(torch.equal(first[k], again[k]) for k in first)


# ------------------------------------------------------------------------------ fairseq tools


def _train_args(corpus: Path, save_dir: Path, head: str, converted) -> list[str]:
    ckpt, encoder = converted[head]
    task = (["--task", "phoneme_frame_cls", "--arch", "hubert_frame_cls", "--criterion", "frame_phoneme_ce",
             "--freeze-finetune-updates", "0"] if head == "frame" else
            ["--task", "phoneme_ctc", "--labels", '["phnseq"]', "--arch", "hubert_phone_ctc", "--criterion", "ctc",
             "--zero-infinity", "--post-process", "none"])
    return ["fairseq-train", str(corpus / "manifests"), "--user-dir", PLUGIN, "--label-dir", str(corpus / "labels"),
            *task, "--w2v-path", str(encoder), "--finetune-from-model", str(ckpt), "--optimizer", "adam",
            "--lr", "1e-05", "--max-update", "1", "--max-tokens", "160000", "--seed", "1", "--save-dir", str(save_dir),
            "--no-epoch-checkpoints", "--num-workers", "0", "--disable-validation", "--log-format", "json",
            "--log-interval", "1"]


def _continues(corpus: Path, head: str, converted, tmp_path: Path) -> None:
    """One fairseq-train update from the converted checkpoint (head included), then the exported
    fine-tune re-imports bit for bit."""
    ckpt, _ = converted[head]
    proc = run_cli(*_train_args(corpus, tmp_path / "ckpt", head, converted), env={"OMP_NUM_THREADS": "1"})
    assert f"Loaded checkpoint {ckpt}" in proc.stdout + proc.stderr and '"num_updates": "1"' in proc.stdout
    trained = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    start = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
    assert sorted(trained) == sorted(start)
    # One Adam step of lr 1e-5 moves a weight by about 1e-5: every tensor, the head included, started from the file.
    assert max(_max_diff(trained[k], start[k]) for k in start) < 1e-4
    assert _max_diff(trained["w2v_encoder.proj.weight"], start["w2v_encoder.proj.weight"]) > 0

    exported, again = tmp_path / "exported", tmp_path / "again.pt"
    assert cli.main(["convert-hubert", "--to", "hubert-phoneme", str(tmp_path / "ckpt" / "checkpoint_last.pt"),
                     "--out", str(exported)]) == 0
    assert cli.main(["convert-hubert", "--from", "hubert-phoneme", str(exported), "--out", str(again)]) == 0
    back = torch.load(again, map_location="cpu", weights_only=False)["model"]
    assert sorted(back) == sorted(trained) and all(torch.equal(back[k], trained[k]) for k in trained)


def test_fairseq_train_continues_from_converted_frame_checkpoint(converted, corpus_dir, tmp_path) -> None:
    _continues(corpus_dir, "frame", converted, tmp_path)


@pytest.mark.slow  # two fairseq CLI runs of a Base-width model: CI runs it (--slow)
def test_fairseq_train_continues_from_converted_ctc_checkpoint(converted, corpus_dir, tmp_path) -> None:
    _continues(corpus_dir, "ctc", converted, tmp_path)


@pytest.mark.slow  # two fairseq-validate runs of a Base-width model: CI runs it (--slow)
def test_fairseq_validate_scores_converted_checkpoints(paper, converted, corpus_dir) -> None:
    from spokenlm_plugin.finetune.evaluate import evaluate_phones

    common = ["fairseq-validate", str(corpus_dir / "manifests"), "--user-dir", PLUGIN, "--label-dir",
              str(corpus_dir / "labels"), "--valid-subset", "valid", "--batch-size", "1"]
    frame = run_cli(*common, "--path", str(converted["frame"][0]), "--task", "phoneme_frame_cls",
                    env={"OMP_NUM_THREADS": "1"})
    line = next(x for x in (frame.stdout + frame.stderr).splitlines() if "valid on 'valid' subset" in x)
    accuracy = float(line.split("| accuracy ")[1].split()[0])
    scores = evaluate_phones(converted["frame"][0], data=corpus_dir / "manifests", split="valid",
                             label_dir=corpus_dir / "labels")
    assert accuracy == pytest.approx(scores.frame_accuracy, abs=1e-4)
    ctc = run_cli(*common, "--path", str(converted["ctc"][0]), "--task", "phoneme_ctc", "--labels", '["phnseq"]',
                  env={"OMP_NUM_THREADS": "1"})
    assert "| uer " in ctc.stdout + ctc.stderr


# ------------------------------------------------------------------------------------- refusals


def _edited(paper, tmp_path: Path, edit, head: str = "frame") -> Path:
    state = paper[head][0].state_dict()
    edit(state)
    folder = tmp_path / "edited"
    folder.mkdir(parents=True)
    save_file(state, folder / "model.safetensors")
    return folder


def test_refusals_of_the_import(paper, tmp_path, capsys) -> None:
    out = tmp_path / "out.pt"
    frame, ctc = paper["frame"][1], paper["ctc"][1]
    vocoder = tmp_path / "vocoder.safetensors"
    save_file({"unit_embedding.weight": torch.zeros(500, 128), "generator.upsamplers.0.bias": torch.zeros(256)}, vocoder)
    argv = ["convert-hubert", "--from", "hubert-phoneme"]
    fails_in_one_line([*argv, str(vocoder), "--out", str(out)], capsys, str(vocoder), "unit vocoder", "not a HuBERT phoneme")
    fails_in_one_line([*argv, str(ctc), "--head", "frame", "--out", str(out)], capsys, "a ctc head (41 outputs, blank = 40)",
                      "--head frame")
    wide = _edited(paper, tmp_path, lambda s: s.update({
        "model.wav2vec2.encoder.transformer.layers.1.feed_forward.intermediate_dense.weight": torch.zeros(1024, 768)}))
    fails_in_one_line([*argv, str(wide), "--out", str(out)], capsys, str(wide / "model.safetensors"),
                      "has shape (1024, 768), HuBERT Base", "(3072, 768)")
    rows42 = _edited(paper, tmp_path / "r", lambda s: s.update({"aux.weight": torch.zeros(42, 768),
                                                                 "aux.bias": torch.zeros(42)}))
    fails_in_one_line([*argv, str(rows42), "--out", str(out)], capsys, "aux.weight has shape (42, 768)", "41 (CTC, blank = 40)")
    headless = _edited(paper, tmp_path / "h", lambda s: [s.pop("aux.weight"), s.pop("aux.bias")])
    fails_in_one_line([*argv, str(headless), "--out", str(out)], capsys, "no phone head (aux.weight, aux.bias)")
    fails_in_one_line([*argv, str(tmp_path), "--out", str(out)], capsys, "no model.safetensors in this folder")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes((frame / "model.safetensors").read_bytes()[:100_000])  # an interrupted download
    fails_in_one_line([*argv, str(cut), "--out", str(out)], capsys, str(cut), "unreadable safetensors file")
    fails_in_one_line([*argv, str(frame), "--normalize", "--out", str(out)], capsys, "raw waveforms")
    (tmp_path / "dict.phn.txt").write_text("".join(f"{p} 1\n" for p in [*INVENTORY[:-1], "AX"]))
    fails_in_one_line([*argv, str(frame), "--dictionary", str(tmp_path / "dict.phn.txt"), "--out", str(out)], capsys,
                      str(tmp_path / "dict.phn.txt"), "has 'AX', not one of the paper's classes")
    assert not out.exists()


def test_other_layouts_point_to_hubert_phoneme(paper, tmp_path, capsys) -> None:
    """--from torchaudio with the paper's weights would drop the phone head: refused, and the
    state dict saved with torch.save converts with --from hubert-phoneme."""
    model, folder = paper["frame"]
    torch.save(model.state_dict(), tmp_path / "hubert_phoneme.pt")
    fails_in_one_line(["convert-hubert", "--from", "torchaudio", str(tmp_path / "hubert_phoneme.pt"), "--out",
                       str(tmp_path / "x.pt")], capsys, "a HuBERTPhoneme", "aux (40, 768)", "--from hubert-phoneme")
    fails_in_one_line(["convert-hubert", "--from", "torchaudio", str(folder / "model.safetensors"), "--out",
                       str(tmp_path / "x.pt")], capsys, "a safetensors file", "--from hubert-phoneme")
    fails_in_one_line(["convert-hubert", "--from", "torchaudio", str(tmp_path / "hubert_phoneme.pt"), "--head", "frame",
                       "--out", str(tmp_path / "x.pt")], capsys, "--head applies to --from hubert-phoneme only")
    assert not (tmp_path / "x.pt").exists()
    assert cli.main(["convert-hubert", "--from", "hubert-phoneme", str(tmp_path / "hubert_phoneme.pt"),
                     "--out", str(tmp_path / "ok.pt")]) == 0


def test_refusals_of_the_export(converted, tmp_path, capsys) -> None:
    ckpt, encoder = converted["frame"]
    out = tmp_path / "out"
    fails_in_one_line(["convert-hubert", "--to", "hubert-phoneme", str(encoder), "--out", str(out)], capsys,
                      str(encoder), "a 'hubert' model (a pretrained HuBERT has no phone head)")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    state["cfg"]["model"]["layer"] = 1
    torch.save(state, tmp_path / "layer1.pt")
    fails_in_one_line(["convert-hubert", "--to", "hubert-phoneme", str(tmp_path / "layer1.pt"), "--out", str(out)], capsys,
                      "reads layer 1 of 2", "the last layer")
    fails_in_one_line(["convert-hubert", "--to", "hubert-phoneme", str(ckpt), "--head", "frame", "--out", str(out)], capsys,
                      "--head does not apply to --to hubert-phoneme")
    assert not out.exists()
