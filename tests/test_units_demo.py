"""The units demo stage on the test corpus with tiny checkpoints (quick mode)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spokenlm_plugin.demo import stage_units
from spokenlm_plugin.demo.context import DemoContext
from spokenlm_plugin.core.io import read_manifest
from spokenlm_plugin.core.phones import num_frames
from spokenlm_plugin.units.encoder import DenseModel
from spokenlm_plugin.core.audio import read_audio
from spokenlm_plugin.core.km import read_km_arrays
from spokenlm_plugin.units.quality import unit_quality
from tests.units_support import make_frame_cls_checkpoint, make_hubert_checkpoint


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_stage_units_quick(corpus_dir: Path, pairs_dir: Path, tmp_path: Path) -> None:
    base = make_hubert_checkpoint(tmp_path / "base.pt")
    finetuned = make_frame_cls_checkpoint(tmp_path / "ft.pt", base, corpus_dir / "labels")
    ctx = DemoContext(work=tmp_path / "demo", quick=True, log=lambda _: None)
    ctx.artifacts.update(corpus=corpus_dir, pairs=pairs_dir, base_checkpoint=base, finetuned_checkpoint=finetuned,
                         base_layer=2, finetuned_layer=3)
    result = stage_units.run(ctx)

    units = ctx.artifacts["units"]
    assert set(units) == {"base", "finetuned", "finetuned-logits"}
    manifests = {s: read_manifest(corpus_dir / "manifests" / f"{s}.tsv") for s in ("train", "valid", "test")}
    manifests |= {t: read_manifest(pairs_dir / "manifests" / f"{t}.tsv") for t in ("lexical", "syntactic")}
    for name, info in units.items():
        k, dim = np.load(info["centroids"]).shape
        assert (k, dim) == ((40, 40) if name == "finetuned-logits" else (stage_units.QUICK["k"], 32))
        for split, manifest in manifests.items():
            rows = read_km_arrays(Path(info["km_dir"]) / f"{split}.km")
            assert [len(r) for r in rows] == [num_frames(r.num_samples) for r in manifest.rows]
            assert all(0 <= r.min() and r.max() < k for r in rows if len(r))
    assert units["finetuned-logits"]["layer"] == "logits" and units["base"]["layer"] == 2

    # "layer 13" units are the argmax of the classifier's logits, computed here by a plain forward pass.
    test = manifests["test"]
    logits = DenseModel.from_checkpoint(finetuned, layer="logits", device="cpu")
    first = logits(read_audio(test.path(test.rows[0]))).numpy()
    assert read_km_arrays(Path(units["finetuned-logits"]["km_dir"]) / "test.km")[0].tolist() == first.argmax(1).tolist()

    assert [t.title.split(" ")[0] for t in result.tables] == ["Triphone", "Units"]
    assert len(result.tables[1].rows) == 5 and all(p.is_file() and p.suffix == ".png" for p in result.plots)
    # Each unit set is scored on the test split's units against the test labels (not another split).
    labels = [line.split() for line in (corpus_dir / "labels" / "test.phn").read_text().splitlines()]
    for name, m in result.metrics["units"].items():
        q = unit_quality(read_km_arrays(Path(units[name]["km_dir"]) / "test.km"), labels)
        assert (m["pnmi"], m["phone_purity"], m["units_used"]) == (q.pnmi, q.phone_purity, q.units_used), name
    assert set(result.metrics["features"]) == {"base L2", "finetuned L3", "finetuned logits"}

    # Baselines (log-mel / MFCC frames and k-means units) and the gold-phone topline, in the same tables.
    baseline = result.metrics["baseline_features"]
    assert set(baseline) == {"log-mel 40 mels (baseline)", "MFCC 13+d+dd (baseline)", "gold-phones one-hot (topline)"}
    assert [r[0] for r in result.tables[0].rows][-3:] == ["log-mel", "MFCC", "gold-phones"]
    assert [r[0] for r in result.tables[1].rows][-2:] == ["log-mel", "MFCC"]
    topline = baseline["gold-phones one-hot (topline)"]
    assert topline["abx_within"] == topline["abx_across"] == 0.0
    assert baseline["log-mel 40 mels (baseline)"]["abx_across"] > 0.0
    for m in result.metrics["baseline_units"].values():
        assert m["pnmi"] > 0.05 and m["units_used"] > 1
