"""Unit LMs: lm-data, the registered LSTM / transformer LMs trained with the real fairseq-train
(and fairseq-hydra-train), centroid-initialised embeddings, lm-score against a direct
computation with the model, sWUGGY / sBLIMP pair scoring against a reference, and unit
continuation with the real fairseq-generate."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import spokenlm_plugin  # noqa: F401  (registers the unit LMs; fixes torch.load for checkpoints)
from spokenlm_plugin import cli
from spokenlm_plugin.core.errors import ConfigError
from spokenlm_plugin.core.km import write_km
from spokenlm_plugin.ulm.embedding import LSTM_INIT_STD, transformer_init_std
from spokenlm_plugin.ulm.discrimination import lexical_accuracy, syntactic_accuracy
from spokenlm_plugin.ulm.score import load_unit_lm, read_submission
from tests.conftest import REPO, run_cli
from tests.ulm_support import D, ENV, K, USER_DIR, train_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lstm_ckpt(lm_data: Path, units: Path) -> Path:
    save = lm_data.parent / "lstm"
    run_cli(*train_args(lm_data, save, "unit_lstm_lm_small", "--decoder-embed-dim", "16", "--decoder-hidden-size",
                        "32", "--decoder-out-embed-dim", "16", "--unit-centroids", str(units / "centroids.npy"),
                        "--centroid-init", "pca"), env=ENV)
    return save / "checkpoint_best.pt"


@pytest.fixture(scope="module")
def transformer_ckpt(lm_data: Path, units: Path) -> Path:
    save = lm_data.parent / "transformer"
    run_cli(*train_args(lm_data, save, "unit_transformer_lm_small", "--decoder-embed-dim", "32",
                        "--decoder-ffn-embed-dim", "64", "--decoder-attention-heads", "2",
                        "--unit-centroids", str(units / "centroids.npy"), "--centroid-init", "project"), env=ENV)
    return save / "checkpoint_best.pt"


# ------------------------------------------------------------------------------------ lm-data


def test_lm_data_fixed_dictionary(lm_data: Path, units: Path, tmp_path: Path) -> None:
    from fairseq.data import Dictionary, data_utils

    assert [line.split()[0] for line in (lm_data / "dict.txt").read_text().splitlines()] == [str(u) for u in range(K)]
    dictionary = Dictionary.load(str(lm_data / "dict.txt"))
    assert len(dictionary) == K + 4  # <s> <pad> </s> <unk>, no madeupword padding
    rows = [list(map(int, line.split())) for line in (units / "valid.km").read_text().splitlines()]
    ds = data_utils.load_indexed_dataset(str(lm_data / "valid"), dictionary)
    assert len(ds) == len(rows)
    for i, r in enumerate(rows):
        assert ds[i].tolist() == [u + 4 for u in r] + [dictionary.eos()]

    # Deduplicated, any split name, same indices.
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "heldout.km").write_text("3 3 3 7 7 3\n0 29 29\n")
    assert cli.main(["lm-data", "--units-dir", str(tmp_path / "in"), "--splits", "heldout",
                     "--out", str(tmp_path / "bin"), "--vocab-size", str(K), "--dedup"]) == 0
    ds = data_utils.load_indexed_dataset(str(tmp_path / "bin" / "heldout"), dictionary)
    assert [ds[0].tolist(), ds[1].tolist()] == [[7, 11, 7, 2], [4, 33, 2]]
    assert (tmp_path / "bin" / "dict.txt").read_text().splitlines()[3] == "3 2"  # counts after dedup


def test_unit_lookup_accepts_frequency_sorted_dictionaries(tmp_path: Path) -> None:
    """LMs binarized by plain fairseq-preprocess (frequency order, madeupword padding) score too."""
    from fairseq.data import Dictionary

    from spokenlm_plugin.ulm.data import read_dictionary_size
    from spokenlm_plugin.ulm.score import unit_indices

    order = [3, 0, 4, 1, 2]
    (tmp_path / "dict.txt").write_text("".join(f"{u} {10 - i}\n" for i, u in enumerate(order))
                                       + "madeupword0000 0\nmadeupword0001 0\n")
    assert read_dictionary_size(tmp_path / "dict.txt") == 5
    dictionary = Dictionary.load(str(tmp_path / "dict.txt"))
    assert unit_indices(dictionary).tolist() == [dictionary.index(str(u)) for u in range(5)] == [5, 7, 8, 4, 6]
    (tmp_path / "gap.txt").write_text("0 1\n2 1\n")
    with pytest.raises(spokenlm_plugin.core.errors.DictionaryError, match="must be 0..K-1"):
        read_dictionary_size(tmp_path / "gap.txt")


@pytest.mark.parametrize("line, problem", [("1 2 30 4", "unit 30 is outside the dictionary"),
                                           ("1 x 2", "'x' is not a unit id")])
def test_lm_data_rejects_units_outside_dictionary(tmp_path: Path, capsys, line: str, problem: str) -> None:
    write_km(tmp_path / "train.km", [[1, 2, 3]])
    (tmp_path / "train.km").write_text("1 2 3\n" + line + "\n")
    code = cli.main(["lm-data", "--units-dir", str(tmp_path), "--splits", "train", "--out", str(tmp_path / "bin"),
                     "--vocab-size", str(K)])
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path / 'train.km'}:2: " in err and problem in err
    assert not (tmp_path / "bin" / "train.bin").exists()


# --------------------------------------------------------------------- centroid-initialised embeddings


def _build(arch: str, centroids: Path | None, mode: str, *, seed: int = 0, **fields):
    from fairseq.data import Dictionary
    from fairseq.tasks.language_modeling import LanguageModelingTask
    from omegaconf import OmegaConf, open_dict

    from spokenlm_plugin.ulm.models import UnitLSTMLMConfig, UnitTransformerLMConfig

    dictionary = Dictionary()
    for u in range(K):
        dictionary.add_symbol(str(u))
    dc = UnitLSTMLMConfig if arch == "unit_lstm_lm" else UnitTransformerLMConfig
    extra = dict(add_bos_token=False, tpu=False) if arch == "unit_transformer_lm" else {}
    cfg = OmegaConf.structured(dc(tokens_per_sample=64, max_target_positions=64, centroid_init=mode,
                                  unit_centroids=str(centroids) if centroids else None, **extra, **fields))
    with open_dict(cfg):
        cfg._name = arch
    torch.manual_seed(seed)
    return LanguageModelingTask(argparse.Namespace(data=None), dictionary).build_model(cfg), dictionary


def _aligned(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """``expected`` with each column's sign matched to ``actual`` (principal axes have no sign)."""
    return expected * np.sign((actual * expected).sum(axis=0, keepdims=True))


def _dims(arch: str, embed_dim: int = 8) -> dict:
    if arch == "unit_lstm_lm":
        return dict(decoder_embed_dim=embed_dim, decoder_hidden_size=16, decoder_out_embed_dim=8, decoder_layers=1)
    return dict(decoder_embed_dim=embed_dim, decoder_ffn_embed_dim=16, decoder_layers=1, decoder_attention_heads=2)


@pytest.mark.parametrize("arch, target_std", [
    ("unit_lstm_lm", LSTM_INIT_STD), ("unit_transformer_lm", transformer_init_std(8))])
def test_pca_init_row_k_is_centroid_k(units: Path, arch: str, target_std: float) -> None:
    from sklearn.decomposition import PCA

    centroids = np.load(units / "centroids.npy").astype(np.float64)
    embed_dim = 8
    dims = _dims(arch, embed_dim)
    model, dictionary = _build(arch, units / "centroids.npy", "pca", **dims)
    table = model.decoder.embed_tokens.weight.detach().numpy().astype(np.float64)
    rows = table[[dictionary.index(str(k)) for k in range(K)]]
    # Reference: scikit-learn's PCA of the centroids, rescaled to the layer's init std.
    ref = PCA(n_components=embed_dim).fit_transform(centroids)
    ref *= target_std / ref.std()
    np.testing.assert_allclose(rows, _aligned(rows, ref), rtol=1e-4, atol=1e-6)
    # Special symbols keep the default initialisation (same seed, no centroids).
    plain, _ = _build(arch, None, "pca", **dims)
    specials = list(range(dictionary.nspecial))
    np.testing.assert_array_equal(table[specials], plain.decoder.embed_tokens.weight.detach().numpy()[specials])
    assert not table[dictionary.pad()].any()


@pytest.mark.parametrize("arch", ["unit_lstm_lm", "unit_transformer_lm"])
def test_project_init_keeps_centroid_width_and_learns_projection(units: Path, arch: str) -> None:
    centroids = np.load(units / "centroids.npy").astype(np.float64)
    model, dictionary = _build(arch, units / "centroids.npy", "project", **_dims(arch))
    embed = model.decoder.embed_tokens
    table = (embed.table if arch == "unit_lstm_lm" else embed).weight.detach().numpy().astype(np.float64)
    assert table.shape == (K + 4, D)
    ref = centroids - centroids.mean(axis=0)
    ref *= (LSTM_INIT_STD if arch == "unit_lstm_lm" else transformer_init_std(D)) / ref.std()
    np.testing.assert_allclose(table[[dictionary.index(str(k)) for k in range(K)]], ref, rtol=1e-5, atol=1e-7)
    # The learned D -> E projection: our module for the LSTM, fairseq's project_in_dim for the transformer.
    proj = embed.proj if arch == "unit_lstm_lm" else model.decoder.project_in_dim
    assert (proj.in_features, proj.out_features) == (D, 8) and proj.weight.requires_grad
    out, _ = model(torch.tensor([[2, 4, 5, 6]]))
    assert out.shape == (1, 4, K + 4)


def test_centroid_init_errors(units: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", np.random.default_rng(0).normal(size=(K + 1, D)).astype(np.float32))
    with pytest.raises(ConfigError, match="dictionary has 30 units but the centroids 31 rows"):
        _build("unit_lstm_lm", tmp_path / "c.npy", "project", **_dims("unit_lstm_lm"))
    with pytest.raises(ConfigError, match="exceeds min"):
        _build("unit_transformer_lm", units / "centroids.npy", "pca", **_dims("unit_transformer_lm", D + 1))
    with pytest.raises(ConfigError, match="cannot share"):
        _build("unit_lstm_lm", units / "centroids.npy", "project", share_decoder_input_output_embed=True,
               **_dims("unit_lstm_lm"))


# ------------------------------------------------------------------------- training and lm-score


def _oracle_logprob(model, dictionary, units: list[int], *, begin: int) -> float:
    """Log p(units, </s> | begin) one prefix at a time, each recomputed from scratch, no padding."""
    seq = [begin] + [dictionary.index(str(u)) for u in units] + [dictionary.eos()]
    total = 0.0
    with torch.no_grad():
        for t in range(1, len(seq)):
            logits, _ = model(torch.tensor([seq[:t]]))
            total += torch.log_softmax(logits[0, -1].double(), dim=-1)[seq[t]].item()
    return total


@pytest.mark.parametrize("which", ["lstm", "transformer"])
def test_trained_lm_scores_match_direct_computation(request, units: Path, tmp_path: Path, which: str) -> None:
    ckpt = request.getfixturevalue(f"{which}_ckpt")
    model, task = load_unit_lm(ckpt)
    assert type(model).__name__ == ("UnitLSTMLanguageModel" if which == "lstm" else "UnitTransformerLanguageModel")
    rows = [list(map(int, line.split())) for line in (units / "test.km").read_text().splitlines()]
    out = tmp_path / "scores.txt"
    argv = ["lm-score", "--checkpoint", str(ckpt), "--units", str(units / "test.km"), "--ids", str(units / "test.ids"),
            "--batch-size", "7"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert [line.split()[0] for line in lines] == [f"utt{i}" for i in range(20)]  # file order, '<file> <score>'
    scores = read_submission(out)
    d = task.source_dictionary
    for i in (0, 7, 19):
        assert scores[f"utt{i}"] == pytest.approx(_oracle_logprob(model, d, rows[i], begin=d.eos()), abs=1e-4)
    # --mean: per predicted unit (the units and </s>); --begin bos: the ZeroSpeech 2021 script's <s>.
    assert cli.main([*argv, "--out", str(tmp_path / "mean.txt"), "--mean"]) == 0
    means = read_submission(tmp_path / "mean.txt")
    assert means["utt3"] == pytest.approx(scores["utt3"] / (len(rows[3]) + 1), rel=1e-9)
    assert cli.main([*argv, "--out", str(tmp_path / "bos.txt"), "--begin", "bos"]) == 0
    bos = read_submission(tmp_path / "bos.txt")
    assert bos["utt5"] == pytest.approx(_oracle_logprob(model, d, rows[5], begin=d.bos()), abs=1e-4)
    assert bos["utt5"] != pytest.approx(scores["utt5"], abs=1e-6)


def test_lm_score_bad_input(lstm_ckpt: Path, units: Path, tmp_path: Path, capsys) -> None:
    base = ["lm-score", "--checkpoint", str(lstm_ckpt), "--ids", str(units / "test.ids"), "--out", str(tmp_path / "s")]
    lines = (units / "test.km").read_text().splitlines()
    lines[1] += f" {K}"
    bad = tmp_path / "bad.km"
    bad.write_text("\n".join(lines) + "\n")
    assert cli.main([*base, "--units", str(bad)]) == 2
    assert f"{bad}:2: unit 30 is outside the dictionary" in capsys.readouterr().err
    short = tmp_path / "short.km"
    short.write_text("1 2\n")
    assert cli.main([*base, "--units", str(short)]) == 2
    assert "1 lines but 20 utterance ids" in capsys.readouterr().err
    # A gold.csv naming files that were not scored.
    gold = tmp_path / "gold.csv"
    gold.write_text("id,filename,voice,frequency,word,phones,correct\n1,utt0,v,3,a,A,1\n1,nope,v,3,,A B,0\n")
    assert cli.main([*base, "--units", str(units / "test.km"), "--gold", str(gold), "--task", "lexical"]) == 2
    assert "1 of its 2 files have no score (e.g. nope)" in capsys.readouterr().err


# --------------------------------------------------------------------------------- pair scoring


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_lexical_accuracy_hand_computed(tmp_path: Path) -> None:
    # id 1 (in vocab): voice a wins, voice b ties -> 0.75; id 2 (oov): a loses, b wins -> 0.5;
    # id 3 (frequency 12): both voices win -> 1.  all = 2.25 / 3, in-vocab = (0.75 + 1) / 2.
    rows = [
        [1, "w1a", "a", 3, "cat", "K AE T", 1], [1, "n1a", "a", "", "", "K AE D", 0],
        [1, "w1b", "b", 3, "cat", "K AE T", 1], [1, "n1b", "b", "", "", "K AE D", 0],
        [2, "w2a", "a", 0, "zyx", "Z IH K", 1], [2, "n2a", "a", "", "", "Z IH G", 0],
        [2, "w2b", "b", 0, "zyx", "Z IH K", 1], [2, "n2b", "b", "", "", "Z IH G", 0],
        [3, "w3a", "a", 12, "dog", "D AO G", 1], [3, "n3a", "a", "", "", "D AO K", 0],
        [3, "w3b", "b", 12, "dog", "D AO G", 1], [3, "n3b", "b", "", "", "D AO K", 0],
    ]
    scores = {"w1a": -1.0, "n1a": -2.0, "w1b": -5.0, "n1b": -5.0, "w2a": -9.0, "n2a": -3.0, "w2b": -1.0,
              "n2b": -1.5, "w3a": -2.0, "n3a": -4.0, "w3b": -0.5, "n3b": -0.7}
    random.Random(0).shuffle(rows)  # pairing is by (voice, id), not by row order
    _write_csv(tmp_path / "gold.csv", ["id", "filename", "voice", "frequency", "word", "phones", "correct"], rows)
    r = lexical_accuracy(tmp_path / "gold.csv", scores)
    assert (r.all, r.in_vocab, r.n_ids, r.n_in_vocab_ids, r.n_pairs) == (pytest.approx(0.75), 0.875, 3, 2, 6)
    assert r.by_frequency == {"oov": {"n": 1, "score": 0.5}, "1-5": {"n": 1, "score": 0.75},
                              "6-20": {"n": 1, "score": 1.0}}


def _reference_lexical(gold_rows: list[dict], scores: dict[str, float]) -> tuple[float, float]:
    """sLM21 sWUGGY, written out independently: sort words and non-words by (voice, id), zip them."""
    words = sorted((r for r in gold_rows if r["correct"] == "1"), key=lambda r: (r["voice"], r["id"]))
    nonwords = sorted((r for r in gold_rows if r["correct"] == "0"), key=lambda r: (r["voice"], r["id"]))
    per_id: dict[str, list[float]] = {}
    freq = {}
    for w, n in zip(words, nonwords):
        assert (w["voice"], w["id"]) == (n["voice"], n["id"])
        a, b = scores[w["filename"]], scores[n["filename"]]
        per_id.setdefault(w["id"], []).append(0.5 * (a == b) + (a > b))
        freq[w["id"]] = float(w["frequency"])
    id_scores = {i: np.mean(v) for i, v in per_id.items()}
    return float(np.mean(list(id_scores.values()))), float(np.mean([s for i, s in id_scores.items() if freq[i] > 0]))


def _reference_syntactic(gold_rows: list[dict], scores: dict[str, float]) -> float:
    groups: dict[tuple, list[float]] = {}
    for good in (r for r in gold_rows if r["correct"] == "1"):
        (bad,) = [r for r in gold_rows if r["correct"] == "0" and
                  all(r[k] == good[k] for k in ("id", "voice", "type", "subtype"))]
        a, b = scores[good["filename"]], scores[bad["filename"]]
        groups.setdefault((good["type"], good["subtype"], good["id"]), []).append(0.5 * (a == b) + (a > b))
    return float(np.mean([np.mean(v) for v in groups.values()]))


def test_pair_scoring_matches_reference_on_random_gold(tmp_path: Path) -> None:
    rng = random.Random(1)
    lex, syn, scores = [], [], {}
    freqs = [rng.choice([0, 0, 1, 4, 30, 500]) for _ in range(40)]  # per word (id), as in sLM21
    for pid, voice in itertools.product(range(40), ["v1", "v2", "v3"]):
        freq = freqs[pid]
        for correct in (1, 0):
            name = f"L{pid}{voice}{correct}x"
            # Integer scores from a small range: plenty of ties.
            scores[name] = float(rng.randint(-4, 0))
            lex.append({"id": str(pid), "filename": name, "voice": voice, "frequency": str(freq) if correct else "",
                        "word": "w", "phones": "P", "correct": str(correct)})
        for correct in (1, 0):
            name = f"S{pid}{voice}{correct}y"
            scores[name] = float(rng.randint(-4, 0))
            syn.append({"id": str(pid % 10), "filename": name, "voice": voice, "type": f"t{pid % 3}",
                        "subtype": f"s{pid // 10}", "correct": str(correct)})
    rng.shuffle(lex)
    rng.shuffle(syn)
    for name, rows in (("lexical", lex), ("syntactic", syn)):
        _write_csv(tmp_path / f"{name}.csv", list(rows[0]), [list(r.values()) for r in rows])
    r = lexical_accuracy(tmp_path / "lexical.csv", scores)
    assert (r.all, r.in_vocab) == pytest.approx(_reference_lexical(lex, scores))
    s = syntactic_accuracy(tmp_path / "syntactic.csv", scores)
    assert s.all == pytest.approx(_reference_syntactic(syn, scores))
    assert s.n_ids == 40 and s.n_pairs == 120 and set(s.by_type) == {"t0", "t1", "t2"}


def test_gold_with_unpaired_rows_is_rejected(tmp_path: Path) -> None:
    _write_csv(tmp_path / "gold.csv", ["id", "filename", "voice", "frequency", "correct"],
               [[1, "a", "v", 2, 1], [1, "b", "v", 2, 1]])
    with pytest.raises(spokenlm_plugin.core.errors.ManifestError, match=r"has 2 correct and 0 incorrect"):
        lexical_accuracy(tmp_path / "gold.csv", {"a": 0.0, "b": 0.0})
    _write_csv(tmp_path / "bad.csv", ["id", "filename", "voice", "correct"], [[1, "a", "v", 1]])
    with pytest.raises(spokenlm_plugin.core.errors.ManifestError, match=r"columns \['type', 'subtype'\] missing"):
        syntactic_accuracy(tmp_path / "bad.csv", {"a": 0.0})


def test_lm_score_with_gold_end_to_end(transformer_ckpt: Path, units: Path, tmp_path: Path) -> None:
    """Lexical pairs where the 'word' is a training-like sequence and the 'non-word' its reversal."""
    rows = [list(map(int, line.split())) for line in (units / "train.km").read_text().splitlines()[:10]]
    km, ids, gold = [], [], []
    for i, r in enumerate(rows):
        for correct, seq in ((1, r), (0, r[::-1])):
            km.append(seq)
            ids.append(f"p{i}_{correct}")
            gold.append([i, f"p{i}_{correct}", "v", i % 2, "w", "P", correct])
    write_km(tmp_path / "pairs.km", km)
    (tmp_path / "pairs.ids").write_text("\n".join(ids) + "\n")
    _write_csv(tmp_path / "gold.csv", ["id", "filename", "voice", "frequency", "word", "phones", "correct"], gold)
    assert cli.main(["lm-score", "--checkpoint", str(transformer_ckpt), "--units", str(tmp_path / "pairs.km"),
                     "--ids", str(tmp_path / "pairs.ids"), "--out", str(tmp_path / "lexical.txt"),
                     "--gold", str(tmp_path / "gold.csv"), "--task", "lexical",
                     "--results", str(tmp_path / "res.json")]) == 0
    res = json.loads((tmp_path / "res.json").read_text())
    ref = _reference_lexical([dict(zip(["id", "filename", "voice", "frequency", "word", "phones", "correct"],
                                       map(str, g))) for g in gold], read_submission(tmp_path / "lexical.txt"))
    assert (res["all"], res["in_vocab"]) == pytest.approx(ref) and res["n_ids"] == 10


# -------------------------------------------------------------------------- hydra-train


@pytest.mark.slow  # a whole CLI integration run: CI runs it (--slow)
def test_fairseq_hydra_train_with_example_config(lm_data: Path, units: Path, tmp_path: Path) -> None:
    save = tmp_path / "ckpt"
    run_cli("fairseq-hydra-train", "--config-dir", str(REPO / "examples" / "ulm" / "config"),
            "--config-name", "lstm_zs21", f"task.data={lm_data}", f"common.user_dir={USER_DIR}",
            f"hydra.run.dir={tmp_path / 'hydra'}", f"checkpoint.save_dir={save}", "common.cpu=true",
            "model.decoder_embed_dim=8", "model.decoder_hidden_size=16", "model.decoder_out_embed_dim=8",
            "model.decoder_layers=1", f"model.unit_centroids={units / 'centroids.npy'}",
            "optimization.max_update=2", "dataset.max_tokens=512", "task.tokens_per_sample=128",
            "checkpoint.no_epoch_checkpoints=true", env=ENV)
    model, task = load_unit_lm(save / "checkpoint_best.pt")
    assert type(model).__name__ == "UnitLSTMLanguageModel" and model.decoder.hidden_size == 16
    # The baseline's remaining hyper-parameters come from the example config.
    cfg = torch.load(save / "checkpoint_best.pt", weights_only=False)["cfg"]
    assert cfg["optimizer"]["adam_betas"] == "(0.9,0.98)" and cfg["lr_scheduler"]["warmup_updates"] == 1000


# ------------------------------------------------------------------------- fairseq-generate


def test_lm_generate_continues_prompts(lstm_ckpt: Path, units: Path, tmp_path: Path) -> None:
    prompts = [[1, 1, 2], [5, 6, 7, 8, 9, 9], [3]]
    write_km(tmp_path / "prompts.km", prompts)
    argv = ["lm-generate", "--checkpoint", str(lstm_ckpt), "--prompts", str(tmp_path / "prompts.km"),
            "--max-len", "12", "--min-len", "4", "--top-k", "10", "--temperature", "0.9", "--seed", "3"]
    assert cli.main([*argv, "--out", str(tmp_path / "full.km"), "--keep-prompt", "--work", str(tmp_path / "w")]) == 0
    full = [list(map(int, line.split())) for line in (tmp_path / "full.km").read_text().splitlines()]
    longest = max(map(len, prompts))
    for p, f in zip(prompts, full):
        assert f[: len(p)] == p and all(0 <= u < K for u in f)
        # at least 4 new units after the longest prompt, at most 12 (the cap is on the total length)
        assert longest + 4 <= len(f) <= longest + 12
    # The same fairseq-generate output collected again, prompt dropped: the continuations alone.
    assert cli.main(["lm-generate", "--collect", str(tmp_path / "w" / "out" / "generate-prompts.txt"),
                     "--prompts", str(tmp_path / "prompts.km"), "--checkpoint", str(lstm_ckpt),
                     "--out", str(tmp_path / "cont.km")]) == 0
    cont = [list(map(int, line.split())) for line in (tmp_path / "cont.km").read_text().splitlines()]
    assert cont == [f[len(p):] for p, f in zip(prompts, full)]


@pytest.mark.slow  # a whole CLI integration run: CI runs it (--slow)
def test_lm_generate_default_top_k_above_the_vocabulary(lstm_ckpt: Path, tmp_path: Path) -> None:
    """The default --top-k 50 on a K = 30 LM (34 symbols) samples among all of them instead of failing."""
    write_km(tmp_path / "prompts.km", [[1, 2, 3]])
    assert cli.main(["lm-generate", "--checkpoint", str(lstm_ckpt), "--prompts", str(tmp_path / "prompts.km"),
                     "--max-len", "5", "--out", str(tmp_path / "c.km")]) == 0
    assert 1 <= len((tmp_path / "c.km").read_text().split()) <= 5


def test_lm_generate_rejects_empty_prompt(lstm_ckpt: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "prompts.km").write_text("1 2\n\n3\n")
    assert cli.main(["lm-generate", "--checkpoint", str(lstm_ckpt), "--prompts", str(tmp_path / "prompts.km"),
                     "--out", str(tmp_path / "c.km")]) == 2
    assert f"{tmp_path / 'prompts.km'}:2: empty prompt" in capsys.readouterr().err


def test_fairseq_generate_prefix_size_on_a_split(transformer_ckpt: Path, lm_data: Path, units: Path) -> None:
    """The other recipe: continue the first P units of every held-out utterance (--prefix-size P)."""
    proc = run_cli("fairseq-generate", str(lm_data), "--user-dir", USER_DIR, "--task", "language_modeling",
                   "--path", str(transformer_ckpt), "--gen-subset", "test", "--sample-break-mode", "eos",
                   "--prefix-size", "5", "--sampling", "--sampling-topk", "5", "--beam", "1", "--nbest", "1",
                   "--max-len-a", "0", "--max-len-b", "15", "--min-len", "10", "--batch-size", "8", "--cpu",
                   "--seed", "1", env=ENV)
    rows = [list(map(int, line.split())) for line in (units / "test.km").read_text().splitlines()]
    hyps = {int(h.split("\t")[0][2:]): list(map(int, h.split("\t")[2].split()))
            for h in proc.stdout.splitlines() if h.startswith("H-")}
    assert sorted(hyps) == list(range(len(rows)))
    for i, hyp in hyps.items():
        assert hyp[:5] == rows[i][:5] and 10 <= len(hyp) <= 15
