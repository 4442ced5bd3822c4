"""`spokenlm labels --timing paper`: the paper's frame labels (100 Hz alignment tokens, ``tokens[::2]``)
against an independent transcription of its rule, on the committed corpus; how often it differs from
the default frame-centre labels."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import pytest

from spokenlm_plugin.cli import main
from spokenlm_plugin.core.errors import LabelMismatchError
from spokenlm_plugin.core.io import read_manifest
from spokenlm_plugin.data.alignments import Alignment, Segment
from spokenlm_plugin.data.labels import frame_labels

SPLITS = ("train", "valid", "test")

#: HuBERT Base's CNN (torchaudio's extractor_conv_layer_config), as the paper's conv_output_length reads it.
CONV_LAYERS = [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2


def tokens_100hz(phones: list[list]) -> list[str]:
    """100 Hz alignment tokens of JSON intervals ``[start, end, phone]``: slot ``j`` (``[10 j, 10 j + 10)``
    ms) holds the phone at its centre, ``10 j + 5`` ms (a centre on a boundary belongs to the phone that
    starts there; uncovered time is SIL); slots run while their centre is before the last interval's end.
    This is what a 100 Hz frame alignment (the paper's input format) says about those intervals."""
    segments = [(Fraction(str(a)), Fraction(str(b)), p) for a, b, p in phones]
    tokens = []
    j = 0
    while Fraction(2 * j + 1, 200) < segments[-1][1]:
        centre = Fraction(2 * j + 1, 200)
        tokens.append(next((p for a, b, p in segments if a <= centre < b), "SIL"))
        j += 1
    return tokens


def paper_subsample(tokens: list[str], num_samples: int) -> list[str]:
    """The paper's ``subsample_tokens`` (bootphon/spokenlm-phoneme, src/phonslm/data.py), transcribed:
    ``tokens[::SUBSAMPLE]`` with SUBSAMPLE = 100 Hz // 50 Hz, cut by one if one too long, else an error."""
    subsampled = tokens[:: 100 // 50]
    length = num_samples
    for _, kernel, stride in CONV_LAYERS:
        length = math.floor((length - kernel) / stride + 1)
    if len(subsampled) == length:
        return subsampled
    if len(subsampled) == length + 1:
        return subsampled[:-1]
    raise ValueError(f"Length mismatch: {len(tokens)} vs {length}")


def _labels(corpus: Path, split: str, out: Path, *extra: str) -> list[list[str]]:
    assert main(["labels", "--manifest", str(corpus / "manifests" / f"{split}.tsv"), "--alignments",
                 str(corpus / "alignments"), "--format", "json", "--out", str(out), *extra]) == 0
    return [line.split() for line in (out / f"{split}.phn").read_text().splitlines()]


def test_paper_timing_is_the_papers_rule_on_the_corpus(corpus_dir: Path, tmp_path: Path) -> None:
    frames = differ = 0
    for split in SPLITS:
        paper = _labels(corpus_dir, split, tmp_path / "paper", "--timing", "paper")
        centre = _labels(corpus_dir, split, tmp_path / "center", "--timing", "center")
        assert centre == _labels(corpus_dir, split, tmp_path / "default")  # centre stays the default
        assert centre == [line.split() for line in (corpus_dir / "labels" / f"{split}.phn").read_text().splitlines()]
        manifest = read_manifest(corpus_dir / "manifests" / f"{split}.tsv")
        assert len(paper) == len(manifest.rows)
        for row, ours, theirs_centre in zip(manifest.rows, paper, centre):
            phones = json.loads((corpus_dir / "alignments" / f"{row.utt_id}.json").read_text())["phones"]
            assert ours == paper_subsample(tokens_100hz(phones), row.num_samples), row.utt_id
            frames += len(ours)
            differ += sum(a != b for a, b in zip(ours, theirs_centre))
    # How often the two conventions disagree on the committed corpus (51 utterances).
    assert (differ, frames) == (373, 7428)  # 5.02 % of the frames


def test_paper_timing_of_a_100hz_frame_file_is_every_second_token(corpus_dir: Path, tmp_path: Path) -> None:
    """Given the 100 Hz tokens themselves (``--format frames``), the labels are literally ``tokens[::2]``."""
    manifest = read_manifest(corpus_dir / "manifests" / "test.tsv")
    tokens = {row.utt_id: tokens_100hz(json.loads((corpus_dir / "alignments" / f"{row.utt_id}.json")
                                                  .read_text())["phones"]) for row in manifest.rows}
    (tmp_path / "ali.txt").write_text("".join(f"{u}\t{' '.join(t)}\n" for u, t in tokens.items()))
    assert main(["labels", "--manifest", str(corpus_dir / "manifests" / "test.tsv"), "--alignments",
                 str(tmp_path / "ali.txt"), "--format", "frames", "--frame-rate", "100", "--timing", "paper",
                 "--out", str(tmp_path / "out")]) == 0
    lines = (tmp_path / "out" / "test.phn").read_text().splitlines()
    for row, line in zip(manifest.rows, lines, strict=True):
        n = len(line.split())
        assert line.split() == tokens[row.utt_id][::2][:n]
        assert len(tokens[row.utt_id][::2]) - n in (0, 1)


def test_paper_timing_hand_computed() -> None:
    # A boundary at 7 ms: the frame-centre rule reads 10 ms (AH), the paper's 5 ms (SIL); one at 27 ms:
    # centre 30 ms (T), paper 25 ms (AH). 0.1 s = 1680 samples = 5 frames.
    ali = Alignment("u", "test", (Segment(Fraction(0), Fraction("0.007"), "SIL"),
                                  Segment(Fraction("0.007"), Fraction("0.027"), "AH"),
                                  Segment(Fraction("0.027"), Fraction("0.105"), "T")))
    assert frame_labels(ali, 1680) == ["AH", "T", "T", "T", "T"]
    assert frame_labels(ali, 1680, timing="paper") == ["SIL", "AH", "T", "T", "T"]
    # The paper's length rule: its frame count or one more (cut), nothing else (the centre rule repeats one).
    short = Alignment("s", "test", (Segment(Fraction(0), Fraction("0.08"), "AH"),))  # 8 tokens -> 4 labels
    assert frame_labels(short, 1680) == ["AH"] * 5
    with pytest.raises(LabelMismatchError, match=r"4 labels under the paper's rule .* accepts 5 or 6"):
        frame_labels(short, 1680, timing="paper")
    long = Alignment("l", "test", (Segment(Fraction(0), Fraction("0.12"), "AH"),))  # 12 tokens -> 6 labels
    assert frame_labels(long, 1680, timing="paper") == ["AH"] * 5
