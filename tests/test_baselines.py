"""Baselines and toplines: log-mel / MFCC / gold-phone features in the dump-features format, the
linear log-mel phone classifier, gold-phone units for an LM, the length-only scorer, and the
bootstrap intervals of the minimal-pair accuracies."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio

from spokenlm_plugin import cli
from spokenlm_plugin.core.io import read_lines, read_manifest
from spokenlm_plugin.ulm.discrimination import bootstrap_intervals, lexical_accuracy, read_gold, syntactic_accuracy
from spokenlm_plugin.units.baseline import dump_baseline_features, spectral_features
from spokenlm_plugin.core.audio import read_audio
from spokenlm_plugin.core.km import read_km_arrays
from spokenlm_plugin.units.phone_classifier import linear_phone_baseline, stack_context
from spokenlm_plugin.units.shards import open_shards


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _phones(corpus: Path) -> list[str]:
    return [line.split()[0] for line in read_lines(corpus / "labels" / "dict.phn.txt")]


# ------------------------------------------------------------------------------------ features


@pytest.mark.parametrize("n", [0, 399, 400, 401, 719, 720, 721, 16000, 16319, 16320, 40417])
def test_spectral_frame_count_is_the_hubert_rule(n: int) -> None:
    wav = np.random.default_rng(n).normal(scale=0.1, size=n).astype(np.float32)
    expected = max(0, (n - 400) // 320 + 1) if n >= 400 else 0
    assert spectral_features(wav, "logmel").shape == (expected, 40)
    assert spectral_features(wav, "mfcc").shape == (expected, 39)


def test_spectral_frames_are_kaldi_frames_at_hubert_hops() -> None:
    """Frame i covers samples [320 i, 320 i + 400): it is frame 2 i of Kaldi's 10 ms framing."""
    wav = np.random.default_rng(0).normal(scale=0.1, size=16000 + 123).astype(np.float32)
    x = torch.from_numpy(wav)[None]
    fbank100 = torchaudio.compliance.kaldi.fbank(x, num_mel_bins=40, frame_shift=10.0, dither=0.0).numpy()
    mfcc100 = torchaudio.compliance.kaldi.mfcc(x, use_energy=False, frame_shift=10.0, dither=0.0).numpy()
    logmel = spectral_features(wav, "logmel", normalize=False)
    mfcc = spectral_features(wav, "mfcc", normalize=False)
    np.testing.assert_allclose(logmel, fbank100[::2][: len(logmel)], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(mfcc[:, :13], mfcc100[::2][: len(mfcc)], rtol=1e-5, atol=1e-4)
    normed = spectral_features(wav, "logmel")
    np.testing.assert_allclose(normed.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(normed.std(0), 1, atol=1e-4)
    np.testing.assert_allclose(normed, (logmel - logmel.mean(0)) / logmel.std(0), atol=1e-4)


def test_phone_features_argmax_equals_labels(corpus_dir: Path, tmp_path: Path) -> None:
    manifest = corpus_dir / "manifests" / "test.tsv"
    labels = corpus_dir / "labels" / "test.phn"
    assert cli.main(["baseline-features", "--kind", "phones", "--manifest", str(manifest), "--labels", str(labels),
                     "--dict", str(corpus_dir / "labels" / "dict.phn.txt"), "--out", str(tmp_path),
                     "--per-utterance", "--no-progress"]) == 0
    phones = _phones(corpus_dir)
    lines = [line.split() for line in read_lines(labels)]
    (shard,) = open_shards(tmp_path, split="test")
    assert shard.lengths.tolist() == [len(y) for y in lines]
    for utt, y, x in zip(read_manifest(manifest).utt_ids, lines, shard.utterances()):
        per_utt = np.load(tmp_path / f"{utt}.npy")
        np.testing.assert_array_equal(per_utt, x)
        assert x.shape[1] == len(phones) and (x.sum(axis=1) == 1).all()
        assert [phones[i] for i in x.argmax(axis=1)] == y


def test_baseline_dumps_feed_kmeans_abx_and_unit_quality(corpus_dir: Path, tmp_path: Path) -> None:
    """The dump-features format: shards for k-means, per-utterance files for ABX; gold phones are the topline."""
    m = {s: corpus_dir / "manifests" / f"{s}.tsv" for s in ("train", "test")}
    # ABX on the train split (6 speakers; the test split has too few items). Within a flite voice
    # every phone sounds the same, so the across-speaker condition is the informative one.
    item = corpus_dir / "items" / "train.triphone.item"
    d = tmp_path / "logmel"
    for split in ("train", "test"):
        assert cli.main(["baseline-features", "--kind", "logmel", "--manifest", str(m[split]), "--out", str(d),
                         "--no-progress", *(["--per-utterance"] if split == "train" else [])]) == 0
    test_rows = read_manifest(m["test"]).rows
    (shard,) = open_shards(d, split="test")
    assert shard.lengths.tolist() == [(r.num_samples - 400) // 320 + 1 for r in test_rows]
    first = spectral_features(read_audio(read_manifest(m["test"]).path(test_rows[0])), "logmel")
    np.testing.assert_array_equal(next(shard.utterances()), first)
    before = (d / "test_0_1.npy").read_bytes()
    dump_baseline_features("logmel", m["test"], d)  # a rerun resumes: nothing left to do
    assert (d / "test_0_1.npy").read_bytes() == before

    assert cli.main(["kmeans", "fit", "--features", str(d), "--split", "train", "--k", "10", "--out",
                     str(tmp_path / "km.npy")]) == 0
    assert cli.main(["kmeans", "assign", "--features", str(d), "--split", "test", "--centroids",
                     str(tmp_path / "km.npy"), "--out", str(tmp_path / "test.km")]) == 0
    assert [len(u) for u in read_km_arrays(tmp_path / "test.km")] == shard.lengths.tolist()
    assert cli.main(["unit-quality", "--units", str(tmp_path / "test.km"), "--labels",
                     str(corpus_dir / "labels" / "test.phn"), "--json", str(tmp_path / "q.json")]) == 0
    assert json.loads((tmp_path / "q.json").read_text())["pnmi"] > 0.05

    ph = tmp_path / "phones"
    assert cli.main(["baseline-features", "--kind", "phones", "--manifest", str(m["train"]), "--labels",
                     str(corpus_dir / "labels" / "train.phn"), "--dict", str(corpus_dir / "labels" / "dict.phn.txt"),
                     "--out", str(ph), "--per-utterance"]) == 0
    abx = {}
    for name, feats in (("logmel", d), ("phones", ph)):
        assert cli.main(["abx", "--features", str(feats), "--item", str(item), "--speaker", "across",
                         "--device", "cpu", "--json", str(tmp_path / f"{name}.json")]) == 0
        abx[name] = json.loads((tmp_path / f"{name}.json").read_text())["results"][0]["error"]
    assert abx["logmel"] < 0.3  # chance is 0.5
    assert abx["phones"] < 0.01 < abx["logmel"]  # the topline


def test_baseline_features_errors(corpus_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = str(corpus_dir / "manifests" / "test.tsv")
    assert cli.main(["baseline-features", "--kind", "phones", "--manifest", manifest, "--out", str(tmp_path)]) == 2
    assert "--labels X.phn" in capsys.readouterr().err
    bad = tmp_path / "bad.phn"
    bad.write_text("SIL\n")
    assert cli.main(["baseline-features", "--kind", "phones", "--manifest", manifest, "--labels", str(bad),
                     "--dict", str(corpus_dir / "labels" / "dict.phn.txt"), "--out", str(tmp_path)]) == 2
    assert "regenerate them with `spokenlm labels`" in capsys.readouterr().err


# ------------------------------------------------------------------------------ linear classifier


def test_stack_context_oracle() -> None:
    x = np.arange(12.0).reshape(4, 3)
    stacked = stack_context(x, 2)
    for t in range(4):
        expected = np.concatenate([x[min(max(t + k, 0), 3)] for k in range(-2, 3)])
        np.testing.assert_array_equal(stacked[t], expected)


def test_linear_classifier_beats_chance_and_is_deterministic(corpus_dir: Path, tmp_path: Path) -> None:
    lab = corpus_dir / "labels"
    args = [corpus_dir / "manifests" / "train.tsv", lab / "train.phn", corpus_dir / "manifests" / "test.tsv",
            lab / "test.phn", lab / "dict.phn.txt"]
    res = linear_phone_baseline(*args)
    # Chance: always answer the most frequent training phone.
    train = [p for line in read_lines(lab / "train.phn") for p in line.split()]
    test = [p for line in read_lines(lab / "test.phn") for p in line.split()]
    majority = max(set(train), key=train.count)
    chance = test.count(majority) / len(test)
    assert res.converged and res.test_frames == len(test) and res.train_frames == len(train)
    assert res.frame_accuracy > chance + 0.15, (res.frame_accuracy, chance)
    assert res.per < 1.5  # a few flickers, not noise (a random frame classifier's PER is several times 1)

    out = tmp_path / "clf.json"
    assert cli.main(["baseline-classifier", "--train-manifest", str(args[0]), "--train-labels", str(args[1]),
                     "--test-manifest", str(args[2]), "--test-labels", str(args[3]), "--dict", str(args[4]),
                     "--json", str(out)]) == 0
    again = json.loads(out.read_text())
    assert (again["frame_accuracy"], again["per"], again["iterations"]) == (res.frame_accuracy, res.per,
                                                                              res.iterations)


# ------------------------------------------------------------------------ gold-phone units for LMs


def test_phone_units_are_the_labels_and_binarize(corpus_dir: Path, pairs_dir: Path, tmp_path: Path) -> None:
    lab, out = corpus_dir / "labels", tmp_path / "units"
    files = [lab / f"{s}.phn" for s in ("train", "valid", "test")] + [pairs_dir / "labels" / "lexical.phn"]
    assert cli.main(["phone-units", "--labels", *map(str, files), "--dict", str(lab / "dict.phn.txt"),
                     "--out-dir", str(out)]) == 0
    phones = _phones(corpus_dir)
    for f in files:
        units = read_km_arrays(out / f"{f.stem}.km")
        assert [[phones[u] for u in row] for row in units] == [line.split() for line in read_lines(f)]
    assert cli.main(["lm-data", "--units-dir", str(out), "--splits", "train", "valid", "test", "--out",
                     str(tmp_path / "bin"), "--vocab-size", str(len(phones))]) == 0
    assert (tmp_path / "bin" / "train.bin").is_file()


# ------------------------------------------------------------------------------- length scorer


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_length_scorer_hand_computed(tmp_path: Path) -> None:
    # (id, voice, frequency, units of the word, units of the non-word)
    # id 0: the word is shorter for both voices -> 1; id 1: shorter for a, longer for b -> 0.5;
    # id 2: same length (ties) -> 0.5; id 3: longer -> 0.
    # all = 2 / 4 = 0.5; in-vocab (ids 0 and 2, frequency >= 1) = 0.75.
    spec = [(0, "a", 5, 3, 5), (0, "b", 5, 2, 4), (1, "a", 0, 4, 6), (1, "b", 0, 7, 6),
            (2, "a", 2, 5, 5), (2, "b", 2, 3, 3), (3, "a", 0, 9, 4), (3, "b", 0, 8, 1)]
    rows, km, ids = [], [], []
    for pid, voice, freq, n_word, n_non in spec:
        for correct, n in ((1, n_word), (0, n_non)):
            name = f"w{pid}{voice}{correct}"
            rows.append([pid, name, voice, freq if correct else "", "w", "P", correct])
            km.append(" ".join(["7"] * n))
            ids.append(name)
    _write_csv(tmp_path / "gold.csv", ["id", "filename", "voice", "frequency", "word", "phones", "correct"], rows)
    (tmp_path / "x.km").write_text("\n".join(km) + "\n")
    (tmp_path / "x.ids").write_text("\n".join(ids) + "\n")
    assert cli.main(["lm-score", "--scorer", "length", "--units", str(tmp_path / "x.km"), "--ids",
                     str(tmp_path / "x.ids"), "--out", str(tmp_path / "sub.txt"), "--gold", str(tmp_path / "gold.csv"),
                     "--task", "lexical", "--results", str(tmp_path / "r.json")]) == 0
    assert read_lines(tmp_path / "sub.txt")[:2] == ["w0a1 -3.0", "w0a0 -5.0"]
    r = json.loads((tmp_path / "r.json").read_text())
    assert (r["scorer"], r["all"], r["in_vocab"], r["n_ids"]) == ("length", 0.5, 0.75, 4)
    assert r["all_ci"][0] <= 0.5 <= r["all_ci"][1] and r["all_ci"][0] < r["all_ci"][1]


def test_length_scorer_syntactic_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Two (type, subtype, id) groups: the grammatical sentence is shorter in 1 of 2 voices, then in both.
    rows = [[0, "s0a1", "a", "agr", "sv", 1], [0, "s0a0", "a", "agr", "sv", 0],
            [0, "s0b1", "b", "agr", "sv", 1], [0, "s0b0", "b", "agr", "sv", 0],
            [1, "s1a1", "a", "agr", "sv", 1], [1, "s1a0", "a", "agr", "sv", 0]]
    lengths = {"s0a1": 2, "s0a0": 3, "s0b1": 4, "s0b0": 3, "s1a1": 1, "s1a0": 5}
    _write_csv(tmp_path / "gold.csv", ["id", "filename", "voice", "type", "subtype", "correct"], rows)
    (tmp_path / "x.km").write_text("".join(" ".join(["1"] * n) + "\n" for n in lengths.values()))
    (tmp_path / "x.ids").write_text("".join(f"{k}\n" for k in lengths))
    base = ["lm-score", "--units", str(tmp_path / "x.km"), "--ids", str(tmp_path / "x.ids"), "--out",
            str(tmp_path / "s.txt")]
    assert cli.main([*base, "--scorer", "length", "--gold", str(tmp_path / "gold.csv"), "--task", "syntactic",
                     "--results", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["all"] == 0.75
    assert cli.main(base) == 2
    assert "--scorer lm needs --checkpoint" in capsys.readouterr().err
    assert cli.main([*base, "--scorer", "length", "--checkpoint", "x.pt"]) == 2
    assert "--scorer length uses no LM" in capsys.readouterr().err


# ---------------------------------------------------------------------------- bootstrap intervals


def _lexical_gold(path: Path, outcomes: list[float], freqs: list[int]) -> dict[str, float]:
    """A gold.csv with one voice per id; the word wins (1), ties (0.5) or loses (0) as ``outcomes`` say."""
    rows, scores = [], {}
    for pid, (o, f) in enumerate(zip(outcomes, freqs)):
        rows += [[pid, f"w{pid}", "v", f, "w", "P", 1], [pid, f"n{pid}", "v", "", "", "P", 0]]
        scores[f"w{pid}"], scores[f"n{pid}"] = {1.0: (0.0, -1.0), 0.5: (0.0, 0.0), 0.0: (-1.0, 0.0)}[o]
    _write_csv(path, ["id", "filename", "voice", "frequency", "word", "phones", "correct"], rows)
    return scores


def test_bootstrap_matches_recomputing_the_accuracy_on_resampled_ids(tmp_path: Path) -> None:
    """Oracle: draw the ids, build the resampled gold.csv (each drawn id a new pair id, all its voices),
    score it with the unchanged accuracy function, take the percentiles."""
    rng = np.random.default_rng(3)
    rows, scores = [], {}
    for pid in range(12):
        freq = int(rng.choice([0, 2, 30]))
        for voice in ("a", "b"):
            w, n = rng.integers(-3, 1, size=2)
            rows += [[pid, f"w{pid}{voice}", voice, freq, "w", "P", 1], [pid, f"n{pid}{voice}", voice, "", "", "P", 0]]
            scores[f"w{pid}{voice}"], scores[f"n{pid}{voice}"] = float(w), float(n)
    _write_csv(tmp_path / "gold.csv", ["id", "filename", "voice", "frequency", "word", "phones", "correct"], rows)
    result = lexical_accuracy(tmp_path / "gold.csv", scores, resamples=200, seed=7)

    gold = read_gold(tmp_path / "gold.csv", task="lexical")
    ids = list(dict.fromkeys(r.group[0] for r in gold))
    draws = np.random.default_rng(7).integers(0, len(ids), size=(200, len(ids)))
    all_values, in_vocab_values = [], []
    for draw in draws:
        resampled = [type(r)(f"{k}:{r.filename}", (r.key[0], str(k)), (str(k),), r.correct, r.frequency)
                     for k, i in enumerate(draw) for r in gold if r.group[0] == ids[i]]
        res = lexical_accuracy(resampled, {f"{k}:{f}": scores[f] for k, i in enumerate(draw) for f in scores},
                               resamples=0)
        all_values.append(res.all)
        if res.in_vocab is not None:
            in_vocab_values.append(res.in_vocab)
    assert result.all_ci == pytest.approx(tuple(np.percentile(all_values, [2.5, 97.5])))
    assert result.in_vocab_ci == pytest.approx(tuple(np.percentile(in_vocab_values, [2.5, 97.5])))


def test_bootstrap_interval_contains_estimate_shrinks_and_is_seeded(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 500):
        outcomes = rng.choice([1.0, 0.5, 0.0], p=[0.6, 0.1, 0.3], size=n).tolist()
        scores = _lexical_gold(tmp_path / f"g{n}.csv", outcomes, [1] * n)
        r = lexical_accuracy(tmp_path / f"g{n}.csv", scores)
        assert r.all_ci[0] < r.all < r.all_ci[1]
        assert r.in_vocab_ci == r.all_ci  # every id is in the vocabulary
        assert lexical_accuracy(tmp_path / f"g{n}.csv", scores) == r  # seeded: identical
        assert lexical_accuracy(tmp_path / f"g{n}.csv", scores, seed=1).all_ci != r.all_ci
        widths.append(r.all_ci[1] - r.all_ci[0])
    assert widths[1] < widths[0] / 3  # ~ 1 / sqrt(n): 5x narrower for 25x more ids
    # A subset without any id has no interval; all-equal scores a zero-width one.
    ci = bootstrap_intervals(np.ones(5), {"all": np.ones(5, bool), "none": np.zeros(5, bool)})
    assert ci == {"all": (1.0, 1.0), "none": None}


def test_syntactic_intervals_per_type(tmp_path: Path) -> None:
    rows, scores = [], {}
    for pid in range(30):
        type_ = "agr" if pid < 20 else "island"
        rows += [[pid, f"g{pid}", "v", type_, "s", 1], [pid, f"b{pid}", "v", type_, "s", 0]]
        scores[f"g{pid}"], scores[f"b{pid}"] = (0.0, -1.0) if pid % 3 else (-1.0, 0.0)
    _write_csv(tmp_path / "gold.csv", ["id", "filename", "voice", "type", "subtype", "correct"], rows)
    r = syntactic_accuracy(tmp_path / "gold.csv", scores)
    assert r.all_ci[0] < r.all < r.all_ci[1]
    for t, ci in r.by_type_ci.items():
        assert ci[0] <= r.by_type[t] <= ci[1]


def test_demo_length_row_is_the_lm_score_length_scorer(corpus_dir: Path, pairs_dir: Path, tmp_path: Path) -> None:
    """The ulm demo stage's gold-phone units and length row: the same numbers as the commands."""
    from spokenlm_plugin.demo import stage_ulm

    info = stage_ulm._phone_units(corpus_dir, pairs_dir, tmp_path / "phones")
    assert info["vocab"] == len(_phones(corpus_dir))
    assert {p.name for p in info["km_dir"].iterdir()} == {f"{s}.km" for s in
                                                          ("train", "valid", "test", "lexical", "syntactic")}
    row = stage_ulm._pair_results(info, pairs_dir, lambda rows: {"sum": stage_ulm.unit_count_scores(rows)})["sum"]
    for task, key in (("lexical", "lexical"), ("syntactic", "syntactic")):
        assert cli.main(["lm-score", "--scorer", "length", "--units", str(info["km_dir"] / f"{task}.km"),
                         "--manifest", str(pairs_dir / "manifests" / f"{task}.tsv"), "--out", str(tmp_path / "s.txt"),
                         "--gold", str(pairs_dir / task / "gold.csv"), "--task", task,
                         "--results", str(tmp_path / f"{task}.json")]) == 0
        r = json.loads((tmp_path / f"{task}.json").read_text())
        assert (row[key].all, list(row[key].all_ci)) == (r["all"], r["all_ci"])
