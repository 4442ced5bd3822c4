"""SUTLM end to end: sutlm-data -> fairseq-train --task speech_text_lm -> CRA, with one-line refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from spokenlm_plugin.sutlm.data import build
from spokenlm_plugin.sutlm.evaluate import CONDITIONS, cra, eval_items, renderer_for, split_pair
from spokenlm_plugin.sutlm.data import read_aligned
from spokenlm_plugin.sutlm.score import continuation_logprobs, indices, load_lm
from spokenlm_plugin.sutlm.tokens import modality_of

from .conftest import run_cli
from .sutlm_support import CFG, small_corpus
from .vocoder_support import phone_km, tiny_train

TRAIN = ["--arch", "sutlm_transformer_lm_tiny", "--decoder-embed-dim", "64", "--decoder-ffn-embed-dim", "256",
         "--sample-break-mode", "eos", "--tokens-per-sample", "512", "--max-tokens", "1024", "--optimizer", "adam",
         "--lr", "5e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "10", "--dropout", "0",
         "--no-epoch-checkpoints", "--no-save-optimizer-state", "--cpu", "--num-workers", "0", "--seed", "1"]
ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("sutlm")
    corpus, km = small_corpus(tmp)
    build(corpus, km, tmp / "out", cfg=CFG, workers=2)
    return tmp / "out"


@pytest.fixture(scope="module")
def trained(data: Path) -> Path:
    save = data.parent / "ckpt"
    run_cli("fairseq-train", str(data / "units-raw"), "--user-dir", str(Path(__file__).parents[1] / "spokenlm_plugin"),
            "--task", "speech_text_lm", *TRAIN, "--max-update", "300", "--speech-ratio", "0.2", "--paired-ratio", "0.6",
            "--text-ratio", "0.2", "--valid-subset", "valid_speech,valid_ast", "--save-dir", str(save), env=ENV)
    return save / "checkpoint_last.pt"


def test_data_dictionary_and_subsets(data: Path) -> None:
    import json

    meta = json.loads((data / "sutlm-data.json").read_text())
    for name in ("units-raw", "units-sp60"):
        symbols = [line.split()[0] for line in (data / name / "dict.txt").read_text().splitlines()]
        assert symbols[:2] == ["[SPEECH]", "[TEXT]"] and len(set(symbols)) == len(symbols)
        for split in ("train", "valid", "test"):
            for kind in ("speech", "text", "cst", "tsc", "ast"):
                assert (data / name / f"{split}_{kind}.bin").is_file()
    raw = [line.split()[0] for line in (data / "units-raw" / "dict.txt").read_text().splitlines()]
    assert sum(modality_of(s) == "speech" for s in raw) == 40
    assert meta["variants"]["units-raw"]["subsets"]["train_ast"]["sequences"] == 2 * 34
    corpus = Path(meta["corpus"])
    used = {line for f in (corpus / "transcripts").glob("*.wrd") for line in f.read_text().splitlines()}
    assert not used & set((data / "text_corpus.txt").read_text().splitlines())


@pytest.mark.slow  # trains joint LMs with fairseq-train: CI runs it (--slow)
def test_trained_joint_lm_beats_untrained_on_cra(data: Path, trained: Path) -> None:
    torch.set_num_threads(1)
    model, task = load_lm(trained, data=data / "units-raw")
    torch.manual_seed(0)
    from fairseq import checkpoint_utils

    untrained = task.build_model(checkpoint_utils.load_checkpoint_to_cpu(str(trained))["cfg"].model).eval()
    renderer = renderer_for(data / "units-raw")
    # the training utterances: what a few hundred updates can learn on 34 utterances
    items = eval_items(read_aligned(data / "aligned" / "train.jsonl"), max_items=32)
    acc = {name: np.mean([cra(m, task.source_dictionary, renderer, items, condition=c, candidates=8,
                               resamples=0).accuracy for c in CONDITIONS])
           for name, m in (("trained", model), ("untrained", untrained))}
    assert acc["trained"] >= acc["untrained"] + 0.15, acc


@pytest.mark.slow  # trains joint LMs with fairseq-train: CI runs it (--slow)
def test_cra_scores_match_a_prefix_by_prefix_reference(data: Path, trained: Path) -> None:
    torch.set_num_threads(1)
    model, task = load_lm(trained, data=data / "units-raw")
    d = task.source_dictionary
    renderer = renderer_for(data / "units-raw")
    items = eval_items(read_aligned(data / "aligned" / "test.jsonl"), max_items=3)
    pairs = [split_pair(renderer, u, c) for u in items for c in ("u2t", "t2u")]
    ctx = [indices(d, p[0]) for p in pairs]
    cont = [indices(d, p[1]) for p in pairs]
    fast = continuation_logprobs(model, d, ctx, cont, batch_size=4)
    with torch.no_grad():
        for c, x, value in zip(ctx, cont, fast):
            slow = 0.0
            for t in range(len(x)):
                prefix = torch.tensor([[d.eos(), *c, *x[:t]]])
                slow += torch.log_softmax(model(prefix)[0][0, -1].double(), -1)[x[t]].item()
            assert value == pytest.approx(slow, abs=1e-3)


def _train_fails(data_dir: Path, *extra: str) -> str:
    proc = run_cli("fairseq-train", str(data_dir), "--user-dir", str(Path(__file__).parents[1] / "spokenlm_plugin"),
                   "--task", "speech_text_lm", *TRAIN, "--max-update", "1", "--save-dir", str(data_dir / "ck"),
                   *extra, check=False, env=ENV)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (data_dir / "ck" / "checkpoint_last.pt").exists()
    return proc.stderr.strip().splitlines()[-1]


@pytest.mark.slow  # trains joint LMs with fairseq-train: CI runs it (--slow)
def test_bad_ratios_and_missing_marker_are_one_line(data: Path, tmp_path: Path) -> None:
    line = _train_fails(data / "units-raw", "--speech-ratio", "0.5", "--paired-ratio", "0.5", "--text-ratio", "0.5")
    assert line.startswith("fairseq-train: error: mixing ratios") and "sum to 1.5000" in line
    broken = tmp_path / "broken"
    shutil.copytree(data / "units-raw", broken)
    lines = (broken / "dict.txt").read_text().splitlines()
    (broken / "dict.txt").write_text("\n".join(lines[1:]) + "\n")
    line = _train_fails(broken)
    assert line == (f"fairseq-train: error: {broken / 'dict.txt'}: the modality marker(s) [SPEECH] are missing from "
                    "the dictionary; make the data with 'spokenlm sutlm-data'")


def test_paired_difference_interval_of_known_scores() -> None:
    from spokenlm_plugin.sutlm.metrics import paired_difference_ci

    a = np.array([0.0, 1.0, 0.0, 1.0] * 10)
    assert paired_difference_ci(a, a) == (0.0, 0.0)
    assert paired_difference_ci(np.zeros(40), np.ones(40)) == (1.0, 1.0)
    # b wins 4 items of 40 more than a: the interval is above 0 only if the wins are consistent.
    b = a.copy()
    b[[0, 2, 4, 6]] = 1.0
    lo, hi = paired_difference_ci(a, b)
    assert 0 < lo <= 0.1 <= hi
    with pytest.raises(ValueError):
        paired_difference_ci(np.zeros(3), np.zeros(4))


@pytest.mark.slow  # a whole CLI integration run: CI runs it (--slow)
def test_zero_shot_transfer_end_to_end(data: Path, trained: Path, tmp_path: Path) -> None:
    import json

    from spokenlm_plugin.sutlm.transfer import pooled_features, sentence_labels, zero_shot

    torch.set_num_threads(1)
    model, task = load_lm(trained, data=data / "units-raw")
    d = task.source_dictionary
    renderer = renderer_for(data / "units-raw")
    train = read_aligned(data / "aligned" / "train.jsonl")
    # batched, right-padded features = each utterance alone, pooled over its content tokens by hand
    batched = pooled_features(model, d, renderer, train[:5], modality="speech", batch_size=5)
    with torch.no_grad():
        for u, row in zip(train[:5], batched):
            seq = [d.eos(), *indices(d, ["[SPEECH]", *renderer.units.encode_units(list(u.units))])]
            alone = model(torch.tensor([seq]), features_only=True)[0][0, 2:].double().mean(0).numpy()
            np.testing.assert_allclose(row, alone, atol=1e-5)
    labels = sentence_labels()
    # tested on its own training utterances, a linear classifier separates them in either modality:
    # features that lost the sentence (constant, or all padding) would stay at the majority class
    z = zero_shot(model, d, renderer, train, train, labels=labels, min_count=2, resamples=0)
    assert [r.name for r in z.results] == ["t->u", "u->t", "t->t", "u->u"]
    assert z.chance == 1 / len(z.classes) and z.majority < 0.9
    within = {r.name: r.accuracy for r in z.results}
    assert within["t->t"] == within["u->u"] == 1.0, within
    out = tmp_path / "eval.json"
    proc = run_cli("spokenlm", "sutlm-eval", "--checkpoint", str(trained), "--data", str(data / "units-raw"),
                   "--items", str(data / "aligned" / "test.jsonl"), "--conditions", "t2t", "--candidates", "2",
                   "--zero-shot", "--zero-shot-min-count", "2", "--ci-resamples", "10", "--json", str(out), env=ENV)
    assert "zero-shot pos" in proc.stdout and "t->u" in proc.stdout, proc.stdout
    result = json.loads(out.read_text())["zero_shot"]
    assert [(r["train"], r["test"]) for r in result["results"]] == [
        ("text", "speech"), ("speech", "text"), ("text", "text"), ("speech", "speech")]
    assert result["test_items"] > 0 and result["train_items"] >= 2 * len(result["classes"])


@pytest.mark.slow  # a whole CLI integration run: CI runs it (--slow)
def test_hydra_demo_config_trains_and_loads(data: Path, tmp_path: Path) -> None:
    """examples/sutlm/config/demo.yaml through fairseq-hydra-train, as examples/sutlm/README.md runs it."""
    repo = Path(__file__).parents[1]
    save = tmp_path / "hydra_ckpt"
    run_cli("fairseq-hydra-train", "--config-dir", str(repo / "examples/sutlm/config"), "--config-name", "demo",
            f"task.data={data / 'units-raw'}", f"common.user_dir={repo / 'spokenlm_plugin'}",
            f"checkpoint.save_dir={save}", "optimization.max_update=3", "common.cpu=true",
            "dataset.validate_interval_updates=3", cwd=tmp_path, env=ENV)
    model, task = load_lm(save / "checkpoint_last.pt")
    assert type(task).__name__ == "SpeechTextLMTask"
    assert model.decoder.embed_tokens.embedding_dim == 128  # the config's shape, not the arch default


@pytest.mark.slow  # trains a joint LM with fairseq-train: CI runs it (--slow)
def test_generate_voices_unit_continuations(data: Path, trained: Path, corpus_dir: Path, tmp_path: Path) -> None:
    import soundfile as sf

    # the joint LM's units are the corpus' gold-phone units (K = 40): a vocoder of the same units
    voc = tmp_path / "voc"
    tiny_train(corpus_dir, phone_km(corpus_dir, tmp_path / "km")["train"], voc, steps=2, duration_predictor=True)
    item = read_aligned(data / "aligned" / "test.jsonl")[0]
    prompt = item.word_units(0, len(item.words) // 2)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"speech {' '.join(map(str, prompt))}\ntext {' '.join(item.words[:2])}\n")
    args = ["spokenlm", "sutlm-generate", "--checkpoint", str(trained), "--data", str(data / "units-raw"),
            "--prompts", str(prompts), "--to", "speech", "--out", str(tmp_path / "c.km")]
    run_cli(*args, "--vocoder", str(voc / "vocoder.pt"), "--wav-dir", str(tmp_path / "wav"), env=ENV)
    conts = [list(map(int, line.split())) for line in (tmp_path / "c.km").read_text().splitlines()]
    assert sorted(p.name for p in (tmp_path / "wav").glob("*.wav")) == [f"{i:06d}.wav" for i, c in
                                                                       enumerate(conts, start=1) if c]
    # every unit lasts at least one 320-sample frame (fairseq clamps predicted durations at 1): line 1 holds
    # the speech prompt's units before its continuation, line 2 (a text prompt) only its continuation
    for i, (before, c) in enumerate([(prompt, conts[0]), ([], conts[1])], start=1):
        if c:
            assert len(sf.read(tmp_path / "wav" / f"{i:06d}.wav")[0]) >= 320 * (len(before) + len(c))
    refused = run_cli(*args[:-4], "--to", "text", "--out", str(tmp_path / "t.txt"), "--vocoder", str(voc / "vocoder.pt"),
                      "--wav-dir", str(tmp_path / "w2"), check=False)
    assert refused.returncode != 0 and "--vocoder and --wav-dir go together, with --to speech" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
