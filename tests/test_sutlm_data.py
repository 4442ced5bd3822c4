"""SUTLM data contracts: alignment -> unit positions, AST structure, markers, bad inputs (no fairseq-train)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from spokenlm_plugin.core.errors import AlignmentError, ConfigError
from spokenlm_plugin.sutlm.align import AlignedUtterance, WordAlignments, align_utterance, load_split, word_cuts
from spokenlm_plugin.sutlm.data import DataConfig, build
from spokenlm_plugin.sutlm.metrics import copy_rate, distinct_n, retrieved
from spokenlm_plugin.sutlm.sequences import AstConfig, Renderer, ast_spans, render
from spokenlm_plugin.sutlm.tokens import MARKERS, SentencePieceError, Tokenizer, modality_of, train_sentencepiece, units_to_string

from .conftest import CORPUS
from .data_support import textgrid_long
from .sutlm_support import CFG, small_corpus


def test_word_cuts_known_inputs() -> None:
    # runs of 2, 3, 1, 4 frames: centres 0.02, 0.07, 0.11, 0.16 s
    assert word_cuts([2, 3, 1, 4], [0.0, 0.06, 0.12]) == [0, 1, 3, 4]
    utt = align_utterance(utt_id="x", frame_units=[5, 5, 7, 7, 7, 9, 3, 3, 3, 3],
                          words=[(0.0, 0.06, "a"), (0.06, 0.12, "b"), (0.12, 0.2, "c")])
    assert utt.units == (5, 7, 9, 3)
    assert [utt.word_units(k, k + 1) for k in range(3)] == [[5], [7, 9], [3]]
    # a run straddling a boundary goes to the side of its centre: 7 7 7 spans 0.04-0.10, centre 0.07
    late = align_utterance(utt_id="x", frame_units=[5, 5, 7, 7, 7, 9, 3, 3, 3, 3],
                           words=[(0.0, 0.08, "a"), (0.08, 0.12, "b"), (0.12, 0.2, "c")])
    assert [late.word_units(k, k + 1) for k in range(3)] == [[5, 7], [9], [3]]


def test_alignment_longer_than_units_is_refused() -> None:
    with pytest.raises(AlignmentError, match=r"f\.km:3: the alignment of 'x' ends at 0\.500 s but its units cover only 0\.200 s"):
        align_utterance(utt_id="x", frame_units=[1] * 10, words=[(0.0, 0.2, "a"), (0.2, 0.5, "b")], where="f.km:3")
    with pytest.raises(AlignmentError, match="does not cover the units"):
        align_utterance(utt_id="x", frame_units=[1] * 50, words=[(0.0, 0.2, "a")], num_samples=3200, where="f.km:1")


def test_ast_spans_tile_and_alternate() -> None:
    cfg = AstConfig()
    for n in range(1, 17):
        for key in range(20):
            spans = ast_spans(n, cfg, key=str(key))
            assert spans[0][0] == 0 and spans[-1][1] == n
            assert all(a[1] == b[0] and a[2] != b[2] for a, b in zip(spans, spans[1:]))
            assert all(cfg.min_span <= b - a <= cfg.max_span for a, b, _ in spans[:-1])
    # without switches everything merges into one span
    assert len(ast_spans(12, AstConfig(switch_prob=0.0), key="k")) == 1


def test_render_puts_a_marker_at_every_switch(tmp_path: Path) -> None:
    text = Tokenizer(train_sentencepiece(["the cat sat on the mat", "a dog ran"] * 20, tmp_path / "t", vocab_size=30,
                                         kind="text"), kind="text")
    r = Renderer(units=Tokenizer(None, kind="units"), text=text)
    utt = AlignedUtterance("u", ("the", "cat", "sat", "on", "the", "mat"), (1, 2, 3, 4, 5, 6, 7), (0, 1, 2, 4, 5, 6, 7))
    for key in range(10):
        toks = r.kind(utt, "ast", ast=AstConfig(min_span=1, max_span=2), index=key)
        spans = ast_spans(6, AstConfig(min_span=1, max_span=2), key=f"u/{key}")
        assert sum(t in MARKERS for t in toks) == len(spans)
        assert toks[0] in MARKERS
        groups, cur = [], None
        for t in toks:
            if t in MARKERS:
                cur = "speech" if t == "[SPEECH]" else "text"
                groups.append(cur)
            else:
                assert modality_of(t) == cur
        assert groups == [m for _, _, m in spans]
    assert r.kind(utt, "cst")[0] == "[SPEECH]" and r.kind(utt, "tsc")[0] == "[TEXT]"
    assert render([("speech", []), ("text", ["x"])]) == ["[TEXT]", "x"]


def test_unit_outside_the_sentencepiece_model(tmp_path: Path) -> None:
    tok = Tokenizer(train_sentencepiece([units_to_string([1, 2, 3, 2, 1] * 10)] * 5, tmp_path / "u", vocab_size=8,
                                        kind="units"), kind="units")
    assert "".join(tok.encode_units([1, 2, 3])) == units_to_string([1, 2, 3])
    with pytest.raises(SentencePieceError, match=r"x\.km:7: units \[9\] are outside the SentencePiece model"):
        tok.encode_units([1, 9], where="x.km:7")


def test_metrics_definitions() -> None:
    import numpy as np

    s = np.array([[0.0, -1.0, -5.0], [-1.0, -2.0, -5.0], [-3.0, -2.0, -5.0]])
    # column 0: own best; column 1: context 0 wins; column 2: three-way tie
    assert retrieved(s).tolist() == [1.0, 0.0, pytest.approx(1 / 3)]
    assert copy_rate([["a", "b", "c"]], [["b", "c", "d"]]) == 0.5
    assert distinct_n([["a", "a", "a"]], n=1) == pytest.approx(1 / 3)


def test_bad_inputs_leave_nothing(tmp_path: Path) -> None:
    corpus, km = small_corpus(tmp_path)
    # units of the 3rd train utterance cut to 20 frames: the alignment no longer fits them
    lines = (km / "train.km").read_text().splitlines()
    lines[2] = " ".join(lines[2].split()[:20])
    (km / "train.km").write_text("\n".join(lines) + "\n")
    with pytest.raises(AlignmentError, match=rf"^{km / 'train.km'}:3: the alignment of '\S+' ends at"):
        build(corpus, km, tmp_path / "out", cfg=CFG)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    _, km = small_corpus(tmp_path / "b")
    wrd = corpus / "transcripts" / "valid.wrd"
    wrd.write_text("\n".join(wrd.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(AlignmentError, match=rf"^{wrd}:9: transcript missing for utterance"):
        build(corpus, km, tmp_path / "out", cfg=CFG)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    with pytest.raises(ConfigError, match="AST spans 3-2"):
        build(corpus, km, tmp_path / "out", cfg=DataConfig(ast=AstConfig(min_span=3, max_span=2)))


def _textgrids(corpus: Path, out: Path) -> Path:
    """MFA-style TextGrids of the corpus' own alignments: ``<speaker>/<utt>.TextGrid``, a ``words`` tier
    with empty silent intervals spanning the audio, and a ``phones`` tier."""
    for path in sorted((corpus / "alignments").glob("*.json")):
        d = json.loads(path.read_text())
        end, t, words = d["num_samples"] / d["sample_rate"], 0.0, []
        for a, b, w in d["words"]:
            words += [(t, a, "")] * (a > t) + [(a, b, w)]
            t = b
        words += [(t, end, "")] * (end > t)
        tg = out / d["speaker"] / f"{d['utt_id']}.TextGrid"
        tg.parent.mkdir(parents=True, exist_ok=True)
        tg.write_text(textgrid_long(end, {"words": words, "phones": [tuple(x) for x in d["phones"]]}))
    return out


def test_textgrid_word_tiers_align_like_the_corpus_json(tmp_path: Path) -> None:
    corpus, km = small_corpus(tmp_path)
    tg = WordAlignments(_textgrids(corpus, tmp_path / "mfa"), "textgrid")
    shutil.rmtree(corpus / "transcripts")  # the word tier is the transcript
    for split in ("train", "valid", "test"):
        want = load_split(corpus=CORPUS, units_dir=km, split=split)
        assert load_split(corpus=corpus, units_dir=km, split=split, alignments=tg) == want
        assert len(want) > 5


@pytest.mark.slow
def test_sutlm_data_from_textgrids_gives_the_same_subsets(tmp_path: Path) -> None:
    corpus, km = small_corpus(tmp_path)
    cfg = DataConfig(vocab_size=40, unit_vocab_sizes=(0,), text_vocab_size=200, text_max_sentences=150)
    build(corpus, km, tmp_path / "json", cfg=cfg, workers=2)
    tg = _textgrids(corpus, tmp_path / "mfa")
    shutil.rmtree(corpus / "transcripts")
    build(corpus, km, tmp_path / "tg", cfg=cfg, workers=2, alignments=tg, alignment_format="textgrid")

    def data_files(root: Path) -> list[Path]:  # the metadata and fairseq-preprocess logs name their own paths
        return sorted(p.relative_to(root) for p in root.rglob("*")
                      if p.is_file() and p.name != "sutlm-data.json" and p.suffix != ".log")

    files = data_files(tmp_path / "json")
    assert data_files(tmp_path / "tg") == files
    assert any(f.suffix == ".bin" for f in files)
    for f in files:
        if f.suffix == ".model":  # a model records its training path: compare its pieces (the .bin files use them)
            assert Tokenizer(tmp_path / "tg" / f, kind="text").pieces() == Tokenizer(tmp_path / "json" / f,
                                                                                     kind="text").pieces()
        else:
            assert (tmp_path / "tg" / f).read_bytes() == (tmp_path / "json" / f).read_bytes(), f


def test_bad_textgrids_are_one_line_and_leave_nothing(tmp_path: Path) -> None:
    corpus, km = small_corpus(tmp_path)
    shutil.rmtree(corpus / "transcripts")
    mfa = _textgrids(corpus, tmp_path / "mfa")
    grids = sorted(mfa.rglob("*.TextGrid"))

    def refused(match: str) -> None:
        with pytest.raises(AlignmentError, match=match) as e:
            build(corpus, km, tmp_path / "out", cfg=CFG, alignments=mfa, alignment_format="textgrid")
        assert "\n" not in str(e.value)
        assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))

    # a words tier ending before the units do: the first word only, the audio cut after it
    first = json.loads((corpus / "alignments" / f"{grids[0].stem}.json").read_text())["words"][0]
    grids[0].write_text(textgrid_long(first[1], {"words": [tuple(first)], "phones": [(0, first[1], "AH")]}))
    refused(rf"{grids[0]}\) does not cover the units")
    # no words tier
    grids[0].write_text(textgrid_long(1.0, {"phones": [(0, 1.0, "AH")]}))
    refused(rf"^{grids[0]}: expected one 'words' tier, found tiers \['phones'\]")
    # no TextGrid for an utterance
    grids[0].unlink()
    refused(rf"{grids[0].stem}\.TextGrid: not found \(searched {mfa} recursively\) for utterance '{grids[0].stem}'")
