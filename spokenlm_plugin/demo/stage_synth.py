"""Demo stage 0: synthesize the aligned corpus and the minimal pairs, show what the data looks like."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.audio import read_audio
from ..core.io import read_manifest
from ..core.phones import SAMPLE_RATE
from ..core.report import save_figure, use_agg
from ..synth.corpus import build_corpus
from ..synth.minimal_pairs import build_pairs
from .context import DemoContext, StageResult, Table

#: Hours of synthetic speech (train + valid + test) and pairs per voice.
FULL = {"hours": 1.0, "n_lexical": 200, "n_syntactic": 100}
QUICK = {"hours": 0.25, "n_lexical": 8, "n_syntactic": 4}  # >= 10 min of train speech for the fine-tuning subset


def _plot_example(corpus: Path, out: Path) -> Path:
    use_agg()
    import matplotlib.pyplot as plt

    manifest = read_manifest(corpus / "manifests" / "test.tsv")
    row = manifest.rows[0]
    wav, sr = read_audio(manifest.path(row)), SAMPLE_RATE
    ali = json.loads((corpus / "alignments" / f"{row.utt_id}.json").read_text())
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 5), sharex=True)
    t = np.arange(len(wav)) / sr
    ax1.plot(t, wav, lw=0.4, color="0.2")
    ax1.set_title(f"{row.utt_id}: \"{ali['text']}\"", fontsize=9)
    ax2.specgram(wav, NFFT=400, Fs=sr, noverlap=240, cmap="magma")
    ax2.set_ylim(0, 6000)
    for start, end, phone in ali["phones"]:
        for ax in (ax1, ax2):
            ax.axvline(start, color="tab:cyan", lw=0.5)
        ax2.text((start + end) / 2, 5400, phone, ha="center", fontsize=6, color="white")
    ax2.set_xlabel("time (s)")
    ax2.set_ylabel("Hz")
    fig.tight_layout()
    return save_figure(fig, out / "example_utterance.png", dpi=110)


def run(ctx: DemoContext) -> StageResult:
    size = QUICK if ctx.quick else FULL
    out = ctx.stage_dir("synth")
    corpus, pairs = out / "corpus", out / "pairs"
    build_corpus(corpus, hours=float(size["hours"]), jobs=ctx.jobs, text=ctx.world)
    build_pairs(pairs, vocab_from=corpus, n_lexical=int(size["n_lexical"]), n_syntactic=int(size["n_syntactic"]))
    ctx.artifacts["corpus"] = corpus
    ctx.artifacts["pairs"] = pairs

    rows = []
    for split in ("train", "valid", "test"):
        m = read_manifest(corpus / "manifests" / f"{split}.tsv")
        speakers = {Path(r.relpath).parent.name for r in m.rows}
        seconds = sum(r.num_samples for r in m.rows) / SAMPLE_RATE
        rows.append([split, len(speakers), len(m), round(seconds / 60, 1)])
    n_pairs = {kind: max(0, len((pairs / kind / "gold.csv").read_text().splitlines()) - 1) // 2
               for kind in ("lexical", "syntactic")}
    return StageResult(
        name="synth",
        text=(
            "Synthetic aligned corpus: flite voices with pitch / rate variants as speakers, "
            + ("generated short stories (synth/stories.py: a few hundred words with Zipfian frequencies, number "
               "agreement, tense, chained templates)" if ctx.world == "stories" else "WordNet example sentences")
            + "; phone and word boundaries come from the synthesizer itself. Valid and "
            f"test speakers and sentences are unseen in train. Minimal pairs: {n_pairs['lexical']} "
            f"word / non-word and {n_pairs['syntactic']} grammatical / ungrammatical sentence pairs."
        ),
        tables=[Table(title="Corpus", headers=["split", "speakers", "utterances", "minutes"], rows=rows)],
        plots=[_plot_example(corpus, out)],
        metrics={"pairs": n_pairs, "world": ctx.world},
    )
