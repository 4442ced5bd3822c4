"""Phone decoding of a frame classifier: the Viterbi path against an exhaustive search, its limits
(never switch / frame argmax), flicker smoothing, the switch probability of training labels, and
``resynth-eval --decode`` on a tiny fine-tuned checkpoint."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spokenlm_plugin.core.errors import ConfigError, LabelMismatchError
from spokenlm_plugin.core.phone_metrics import (SWITCH_PROB_RANGE, collapse, phone_errors, switch_probability,
                                                viterbi_frames)

from .conftest import fails_in_one_line
from .units_support import make_frame_cls_checkpoint, make_hubert_checkpoint


def _log_posteriors(rng: np.random.Generator, frames: int, classes: int, *, scale: float = 1.0) -> np.ndarray:
    logits = scale * rng.normal(size=(frames, classes))
    return logits - np.log(np.exp(logits).sum(1, keepdims=True))


def _path_score(log_probs: np.ndarray, path: tuple[int, ...] | list[int], switch_prob: float) -> float:
    """The model written out: emissions plus log(1 - p) per stay and log(p / (K - 1)) per move."""
    k = log_probs.shape[1]
    score = sum(log_probs[t, c] for t, c in enumerate(path))
    for a, b in zip(path, path[1:]):
        score += math.log(1 - switch_prob) if a == b else math.log(switch_prob / (k - 1))
    return float(score)


def test_viterbi_path_is_the_best_of_all_paths() -> None:
    rng = np.random.default_rng(0)
    for frames, classes in [(1, 3), (2, 2), (3, 3), (4, 2), (5, 3), (4, 4)]:
        # below, at and above (K-1)/K, where moving is likelier than staying
        for switch_prob in [0.01, 0.2, (classes - 1) / classes, 0.9]:
            for _ in range(3):
                lp = _log_posteriors(rng, frames, classes, scale=2.0)
                best = max(_path_score(lp, p, switch_prob) for p in itertools.product(range(classes), repeat=frames))
                path = viterbi_frames(lp, switch_prob=switch_prob)
                assert len(path) == frames and all(0 <= c < classes for c in path)
                assert _path_score(lp, path, switch_prob) == pytest.approx(best, abs=1e-9)


def test_viterbi_limits_never_switch_and_frame_argmax() -> None:
    rng = np.random.default_rng(1)
    for frames, classes in [(30, 5), (100, 41)]:
        lp = _log_posteriors(rng, frames, classes, scale=0.5)
        # All transitions equal: the path is the frame argmax (also on a torch tensor).
        assert viterbi_frames(torch.tensor(lp), switch_prob=(classes - 1) / classes) == lp.argmax(1).tolist()
        # A switch costs more than the whole utterance's emissions could gain: one class, the best
        # constant path, for the whole utterance.
        gain = float((lp.max(1) - lp.min(1)).sum())
        switch_prob = 1e-300
        assert math.log(1 - switch_prob) - math.log(switch_prob / (classes - 1)) > gain
        path = viterbi_frames(lp, switch_prob=switch_prob)
        assert path == [int(lp.sum(0).argmax())] * frames
        assert len(set(lp.argmax(1).tolist())) > 1  # the greedy path of these inputs does switch


def test_viterbi_smooths_a_flicker_that_greedy_counts_as_phones() -> None:
    sil, a, b, c = 0, 1, 2, 3
    gold = [sil, sil, a, a, a, a, a, b, b, b, b, sil]
    probs = np.full((len(gold), 4), 0.05)
    for t, g in enumerate(gold):
        probs[t, g] = 0.85
    probs[4] = [0.05, 0.40, 0.05, 0.50]  # one frame inside the a flickers to c
    probs[8] = [0.05, 0.45, 0.45, 0.05]  # and one inside the b to a (a tie the argmax breaks for a)
    log_probs = np.log(probs)
    greedy = log_probs.argmax(1).tolist()
    assert collapse(greedy, drop=sil) == [a, c, a, b, a, b]
    assert phone_errors(greedy, gold, sil=sil) == (4, 2)
    path = viterbi_frames(log_probs, switch_prob=0.2)
    assert path == gold
    assert phone_errors(path, gold, sil=sil) == (0, 2)


def test_viterbi_edge_cases() -> None:
    assert viterbi_frames(np.zeros((0, 4)), switch_prob=0.1) == []
    assert viterbi_frames(np.zeros((3, 1)), switch_prob=0.1) == [0, 0, 0]
    for bad in [0.0, 1.0, -0.1, 1.5, math.nan]:
        with pytest.raises(ConfigError, match="between 0 and 1"):
            viterbi_frames(np.zeros((3, 2)), switch_prob=bad)


def test_switch_probability_of_a_labels_file(tmp_path: Path) -> None:
    labels = tmp_path / "train.phn"
    # runs: SIL, AH, B | B (runs end at the end of an utterance) = 4 runs in 12 frames
    labels.write_text("SIL SIL SIL AH AH AH AH B\nB B B B\n")
    assert switch_probability(labels) == pytest.approx(4 / 12)
    assert switch_probability(str(labels)) == switch_probability([["SIL"] * 3 + ["AH"] * 4 + ["B"], ["B"] * 4])
    # every frame a new phone: clipped to the top of the range
    flicker = tmp_path / "flicker.phn"
    flicker.write_text("AH B AH B\n")
    assert switch_probability(flicker) == SWITCH_PROB_RANGE[1]
    assert switch_probability([["SIL"] * 5000], clip=(0.01, 0.5)) == 0.01
    empty = tmp_path / "empty.phn"
    empty.write_text("")
    with pytest.raises(LabelMismatchError, match="no frame labels"):
        switch_probability(empty)


def _resynth_eval(corpus_dir: Path, *extra: str) -> list[str]:
    return ["resynth-eval", "--manifest", str(corpus_dir / "manifests" / "test.tsv"),
            "--wavs", str(corpus_dir / "audio"), "--phone-model", "model.pt",
            "--labels", str(corpus_dir / "labels" / "test.phn"), *extra]


@pytest.mark.parametrize("value", ["0", "1", "-0.2", "1.5", "nan"])
def test_cli_refuses_a_switch_prob_outside_0_1(corpus_dir: Path, capsys: pytest.CaptureFixture[str],
                                               value: str) -> None:
    fails_in_one_line(_resynth_eval(corpus_dir, "--decode", "viterbi", "--switch-prob", value), capsys,
                      "--switch-prob", "between 0 and 1")


def test_cli_refuses_inconsistent_decoding_options(corpus_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails_in_one_line(_resynth_eval(corpus_dir, "--decode", "viterbi"), capsys, "--switch-prob", "--switch-from-labels")
    fails_in_one_line(_resynth_eval(corpus_dir, "--switch-prob", "0.2"), capsys, "--decode viterbi")
    fails_in_one_line(_resynth_eval(corpus_dir, "--decode", "viterbi", "--switch-from-labels",
                                    str(corpus_dir / "labels" / "test.phn")), capsys, "training labels")


@pytest.fixture(scope="module")
def phone_model(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("phone_model")
    return make_frame_cls_checkpoint(work / "ft.pt", make_hubert_checkpoint(work / "base.pt"), corpus_dir / "labels")


def test_resynth_eval_decodes_as_asked(corpus_dir: Path, phone_model: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The originals as their own resynthesis (two utterances, to stay fast): greedy and Viterbi PER,
    the decoding named in the printout and the JSON."""
    from spokenlm_plugin import cli
    from spokenlm_plugin.core.audio import read_audio
    from spokenlm_plugin.core.io import read_manifest, write_manifest
    from spokenlm_plugin.vocoder.evaluate import PhoneRecognizer
    from spokenlm_plugin.vocoder.synth import write_wav

    torch.set_num_threads(1)
    m = read_manifest(corpus_dir / "manifests" / "test.tsv")
    manifest, labels = tmp_path / "two.tsv", tmp_path / "two.phn"
    write_manifest(manifest, m.root, m.rows[:2])
    wavs = tmp_path / "wavs"
    for row in m.rows[:2]:
        write_wav(wavs / f"{row.utt_id}.wav", read_audio(m.path(row)))
    labels.write_text("".join(line + "\n" for line in (corpus_dir / "labels" / "test.phn").read_text().splitlines()[:2]))
    train = corpus_dir / "labels" / "train.phn"
    recognizer = PhoneRecognizer(phone_model)
    classes = len(recognizer.phones)

    def run(*extra: str) -> tuple[dict, str]:
        out = tmp_path / f"{len(list(tmp_path.glob('*.json')))}.json"
        argv = ["resynth-eval", "--manifest", str(manifest), "--wavs", str(wavs),
                "--phone-model", str(phone_model), "--labels", str(labels), "--json", str(out), *extra]
        assert cli.main(argv) == 0
        return json.loads(out.read_text()), capsys.readouterr().out

    greedy, printed = run()
    assert greedy["phone_decoding"] == {"decode": "greedy", "switch_prob": None} and "greedy" in printed
    # all transitions equal: Viterbi is the frame argmax, the same PER
    uniform, _ = run("--decode", "viterbi", "--switch-prob", str((classes - 1) / classes))
    assert uniform["total"]["per_original"] == greedy["total"]["per_original"]
    smoothed, printed = run("--decode", "viterbi", "--switch-from-labels", str(train))
    p = switch_probability(train)
    assert smoothed["phone_decoding"] == {"decode": "viterbi", "switch_prob": p, "switch_from_labels": str(train)}
    assert "Viterbi" in printed and str(train) in printed
    # an untrained head flickers: greedy inserts phones that the smoothed path does not
    assert smoothed["total"]["per_original"] < greedy["total"]["per_original"]
    # the recognizer's own frames: Viterbi over its logits' log-softmax
    wav = read_audio(m.path(m.rows[0]))
    viterbi = PhoneRecognizer(phone_model, decode="viterbi", switch_prob=p)
    expected = viterbi_frames(recognizer.dense(wav).double().log_softmax(-1), switch_prob=p)
    assert viterbi.frames(wav) == expected and len(collapse(expected)) < len(collapse(recognizer.frames(wav)))
    with pytest.raises(ConfigError, match="switch probability"):
        PhoneRecognizer(phone_model, decode="viterbi")


def test_phone_scores_add_the_smoothed_per_of_each_utterance() -> None:
    """PhoneScores' smoothed PER: the Viterbi path of each utterance's labelled frames, scored like greedy."""
    from spokenlm_plugin.core.phone_metrics import PhoneScores

    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(2, 12, 4)))
    target = torch.tensor(rng.integers(0, 4, size=(2, 12)))
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 9:] = False  # padding: not scored
    log_probs = logits.log_softmax(-1)
    scores = PhoneScores()
    scores.add(logits.argmax(-1), target, mask, sil=0, log_probs=log_probs, switch_prob=0.2)
    expected = sum(phone_errors(viterbi_frames(log_probs[b][mask[b]], switch_prob=0.2), target[b][mask[b]], sil=0)[0]
                   for b in range(2))
    assert scores.smoothed_edits == expected and scores.per_smoothed == expected / scores.ref_phones
    assert PhoneScores().per_smoothed is None  # not computed
    with pytest.raises(ValueError, match="go together"):
        PhoneScores().add(logits.argmax(-1), target, mask, sil=0, log_probs=log_probs)
