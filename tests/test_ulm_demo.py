"""The unit-LM demo stage: what its rows, scores and diagnostics are made of."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from spokenlm_plugin.core.km import write_km
from spokenlm_plugin.demo import stage_ulm, stage_units
from spokenlm_plugin.demo.context import DemoContext
from tests.units_support import make_frame_cls_checkpoint, make_hubert_checkpoint


def _pairs(root: Path, units: dict[str, list[int]]) -> tuple[Path, Path]:
    """A lexical pair set (gold.csv, manifest) and its .km, from filename -> units."""
    (root / "lexical").mkdir(parents=True)
    (root / "manifests").mkdir()
    with (root / "lexical" / "gold.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "filename", "voice", "frequency", "correct"])
        for name in units:
            pid, voice, correct = name.split("_")
            w.writerow([pid, name, voice, "" if correct == "0" else 3, correct])
    (root / "manifests" / "lexical.tsv").write_text("/x\n" + "".join(f"{n}.wav\t16000\n" for n in units))
    km = root / "km"
    write_km(km / "lexical.km", list(units.values()))
    return root, km


def test_unit_consistency_hand_computed(tmp_path: Path) -> None:
    # id 1: voice a says the word 1 2 3, voice b 1 2 4 (one of three units differs: 1/3); its non-word
    # in voice a is 1 5 3 (1/3), in voice b 1 5 4 5 (2/4). id 2: both voices 7 7 8 (dedup: 7 8, the
    # same), non-words 7 9 in a (1/2), 9 9 in b (dedup 9: 2/2).
    pairs, km = _pairs(tmp_path, {
        "1_a_1": [1, 2, 3], "1_b_1": [1, 2, 4], "1_a_0": [1, 5, 3], "1_b_0": [1, 5, 4, 5],
        "2_a_1": [7, 7, 8], "2_b_1": [7, 8], "2_a_0": [7, 9], "2_b_0": [9, 9],
    })
    c = stage_ulm._unit_consistency({"km_dir": km}, pairs, dedup=True)
    # across voices: word 1 1/3, non-word 1 (1 5 3 vs 1 5 4 5) 2/4, word 2 0, non-word 2 (7 9 vs 9) 1/2
    assert c == pytest.approx({"across_voices": (1 / 3 + 2 / 4 + 0 + 1 / 2) / 4,
                               "word_vs_nonword": (1 / 3 + 2 / 4 + 1 / 2 + 2 / 2) / 4})
    raw = stage_ulm._unit_consistency({"km_dir": km}, pairs, dedup=False)
    assert raw["across_voices"] == pytest.approx((1 / 3 + 2 / 4 + 1 / 3 + 1 / 2) / 4)  # 7 7 8 vs 7 8: 1/3


def test_table_rows_and_comparisons() -> None:
    rows = stage_ulm._rows({"base": {}, "finetuned": {}, "finetuned-logits": {}, "phones": {}}, quick=False)
    default = [(r.units, r.init) for r in rows if r.dedup == stage_ulm.DEFAULT_DEDUP]
    other = [(r.units, r.init) for r in rows if r.dedup != stage_ulm.DEFAULT_DEDUP]
    assert default == list(stage_ulm.ROWS) and other == list(stage_ulm.OTHER_ROWS)
    assert len({r.key for r in rows}) == len(rows)
    # every comparison names two rows the table trains
    for label, a, b in stage_ulm._comparisons(stage_ulm.DEFAULT_DEDUP):
        assert a in rows and b in rows and a != b, label
    # the same compute for every unit set of a sequence
    assert {stage_ulm.FULL[d].updates * stage_ulm.FULL[d].max_tokens for d in (True, False)} == {409_600, 614_400}


@pytest.mark.slow  # about a minute: the units stage and four tiny LMs through fairseq-train
def test_stage_ulm_quick(corpus_dir: Path, pairs_dir: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    base = make_hubert_checkpoint(tmp_path / "base.pt")
    finetuned = make_frame_cls_checkpoint(tmp_path / "ft.pt", base, corpus_dir / "labels")
    ctx = DemoContext(work=tmp_path / "demo", quick=True, log=lambda _: None)
    ctx.artifacts.update(corpus=corpus_dir, pairs=pairs_dir, base_checkpoint=base, finetuned_checkpoint=finetuned,
                         base_layer=2, finetuned_layer=3)
    stage_units.run(ctx)
    result = stage_ulm.run(ctx)

    table, diffs, consistency = result.tables
    assert [r[:3] for r in table.rows] == [
        ["finetuned", "centroids (pca)", "dedup"], ["gold phones (topline)", "random", "dedup"],
        ["finetuned", "centroids (pca)", "raw"], ["gold phones (topline)", "random", "raw"],
        ["any (baseline)", "no LM: length only", "dedup"], ["any (baseline)", "no LM: length only", "raw"]]
    m = result.metrics
    for key in ("finetuned/centroids/dedup", "phones/random/dedup", "finetuned/centroids/raw", "phones/random/raw"):
        row = m["rows"][key]
        for score in ("lexical", "lexical_mean", "syntactic", "syntactic_mean"):
            assert 0 <= row[score] <= 1 and row[f"{score}_ci"][0] <= row[score] <= row[f"{score}_ci"][1]
    assert m["finetuned/centroids"] is m["rows"]["finetuned/centroids/dedup"]  # the default sequence's alias
    assert set(m["differences"]) == {"deduplicated vs raw (fine-tuned units)", "deduplicated vs raw (gold phones)"}
    # gold phones of one item are the same in both voices once deduplicated (the aligner's durations differ)
    assert m["consistency"]["phones"]["across_voices"] == 0.0
    assert m["consistency"]["phones"]["word_vs_nonword"] > 0
    assert [r[0] for r in consistency.rows] == ["finetuned", "gold phones (topline)"]
    handed = ctx.artifacts["ulm"]
    assert handed["dedup"] is stage_ulm.DEFAULT_DEDUP and Path(handed["continuations"]).is_file()
