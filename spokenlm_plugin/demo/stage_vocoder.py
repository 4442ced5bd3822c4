"""Demo stage: units back to speech, the paper's resynthesis table and spoken continuations.

One code HiFi-GAN per unit set (``ctx.artifacts["units"]``: base, finetuned, finetuned-logits) is
trained on the train split. To fit the CPU budget the three are trained *together*
(:class:`spokenlm_plugin.vocoder.model.SharedGenerators`: one generator body, one unit embedding
table per set, each step a mix of the sets), then exported as three ordinary fairseq vocoders: the
sets differ only in what their units carry, as in the paper's comparison. Recipe: the
speech-resynthesis losses and optimiser, 128 channels (published 512), discriminators at 1/8
width, joining for the last sixth of the steps (mel-only before: the fastest start on a short run).
When the joint LM's unit set (:data:`~.context.JOINT_LM_UNITS`) is among them, the shared run also
trains fairseq's duration predictor (one small conv net, a few ms per step), so the sutlm stage can
voice the joint LM's deduplicated units (``Vocoder(..., durations=True)``).

A few test utterances (held-out speakers) are resynthesised with each vocoder and scored with
``spokenlm resynth-eval``'s metrics: MCD (fairseq's), F0 correlation, and the PER of the
resynthesised audio under the fine-tuned phone classifier, next to the PER of the original audio.
The unit LM's continuations (``ctx.artifacts["ulm"]``) are synthesised, prompt included.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.audio import read_audio
from ..core.io import read_lines, read_manifest, write_manifest
from ..core.km import read_km, write_km
from ..core.report import pct, save_figure, use_agg
from ..core.runtime import torch_threads
from ..vocoder.config import DiscriminatorConfig, TrainConfig
from ..vocoder.data import UnitSet, read_unit_rows
from ..vocoder.evaluate import MCD_NOTE, PhoneRecognizer, resynthesis_metrics
from ..vocoder.plots import plot_mels
from ..vocoder.synth import Vocoder, synthesize, write_wav
from ..vocoder.train import train_vocoder
from .context import JOINT_LM_UNITS, DemoContext, StageResult, Table

UNIT_SETS = ("base", "finetuned", "finetuned-logits")
#: Sizes: generator width / embedding, steps, when the discriminators join, test utterances scored.
FULL = {"channels": 128, "embedding": 128, "steps": 200, "adversarial_from": 167, "batch": 4, "segment": 28,
        "test_utterances": 12, "continuations": 3}
QUICK = {"channels": 32, "embedding": 32, "steps": 20, "adversarial_from": 16, "batch": 2, "segment": 16,
         "test_utterances": 3, "continuations": 3}


def _num_units(info: dict[str, Any]) -> int:
    return int(np.load(info["centroids"], mmap_mode="r").shape[0])


def _test_subset(corpus: Path, out: Path, n: int) -> tuple[Path, Path, list[int]]:
    """The first ``n`` test rows as a manifest + labels (and their row indices in the split)."""
    m = read_manifest(corpus / "manifests" / "test.tsv")
    rows = list(range(min(n, len(m))))
    manifest, labels = out / "test_subset.tsv", out / "test_subset.phn"
    write_manifest(manifest, m.root, [m.rows[i] for i in rows])
    lines = read_lines(corpus / "labels" / "test.phn")
    labels.write_text("".join(lines[i] + "\n" for i in rows))
    return manifest, labels, rows


def _lexical(ctx: DemoContext) -> dict[str, float]:
    """sWUGGY accuracy of each unit set's LM from the ulm stage's result, if any (centroid init, which
    every unit set's LM has; else random init)."""
    path = ctx.work / "ulm" / "result.json"
    if not path.is_file():
        return {}
    metrics = json.loads(path.read_text())["result"]["metrics"]
    out = {}
    for name in UNIT_SETS:
        for init in ("centroids", "random"):
            m = metrics.get(f"{name}/{init}")
            if isinstance(m, dict) and m.get("lexical") is not None:
                out[name] = m["lexical"]
                break
    return out


def _tradeoff_plot(results: dict[str, dict[str, Any]], lexical: dict[str, float], path: Path) -> Path | None:
    """The paper's Figure 1: lexical accuracy of a unit set's LM against its resynthesis MCD."""
    points = [(results[n]["mcd"], 100 * lexical[n], n) for n in results if n in lexical]
    if not points:
        return None
    use_agg()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for x, y, n in points:
        ax.scatter([x], [y])
        ax.annotate(n, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("resynthesis MCD (lower = more expressive)")
    ax.set_ylabel("sWUGGY accuracy % (unit LM, centroid init)")
    ax.set_title("Units: language vs expressivity", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def _continuations(ctx: DemoContext, vocoders: dict[str, dict[str, Path]], out: Path, n: int) -> list[Path]:
    """Prompt + continuation of the unit LM (``lm-generate`` output), as wavs."""
    ulm = ctx.artifacts.get("ulm")
    if not ulm or ulm.get("units") not in vocoders:
        return []
    vocoder = Vocoder.load(vocoders[ulm["units"]]["checkpoint"], vocoders[ulm["units"]]["config"])
    k = vocoder.cfg.num_embeddings
    prompts = read_unit_rows(ulm["prompts"], num_units=k)
    continuations = read_unit_rows(ulm["continuations"], num_units=k)
    # deduplicated units need the duration predictor (trained with the joint LM's unit set)
    durations = bool(ulm.get("dedup")) and vocoder.predicts_durations
    wavs = []
    for i, (p, c) in enumerate(list(zip(prompts, continuations))[:n], start=1):
        wavs.append(out / f"continuation_{i}.wav")
        write_wav(wavs[-1], vocoder(np.concatenate([p, c]), durations=durations))
        write_wav(out / f"prompt_{i}.wav", vocoder(p, durations=durations))
    return wavs


def _resynthesize(corpus: Path, units: dict[str, Any], vocoders: dict[str, dict[str, Path]], out: Path, *,
                  names: list[str], recognizer: PhoneRecognizer, n: int
                  ) -> tuple[Path, list[int], dict[str, dict[str, Any]], dict[str, float], float]:
    """Resynthesise the first ``n`` test utterances with each vocoder and score them (and, once, the originals)."""
    manifest, labels, rows = _test_subset(corpus, out, n)
    results: dict[str, dict[str, Any]] = {}
    speed: dict[str, float] = {}
    original_per = math.nan
    with torch_threads(1):
        for i, name in enumerate(names):
            km = out / "test_subset" / f"{name}.km"
            all_rows = read_km(Path(units[name]["km_dir"]) / "test.km")
            write_km(km, [all_rows[j] for j in rows])
            vocoder = Vocoder.load(vocoders[name]["checkpoint"], vocoders[name]["config"])
            stats = synthesize(vocoder, km, out / "resynth" / name, manifest=manifest, progress=False)
            speed[name] = stats["x_real_time"]
            metrics = resynthesis_metrics(manifest, out / "resynth" / name, labels=labels, recognizer=recognizer,
                                          score_original=i == 0)
            results[name] = metrics["total"]
            if i == 0:
                original_per = metrics["total"]["per_original"]
    return manifest, rows, results, speed, original_per


def _text(ctx: DemoContext, trained: dict[str, Any], *, names: list[str], size: dict[str, int], seconds: float,
          continuations: list[Path]) -> str:
    """The stage's paragraph: the vocoders' training and where the audio is."""
    history = trained["history"]
    links = " ".join(f"[{p.stem}](vocoder/continuations/{p.name})" for p in continuations)
    return (
        f"{len(names)} vocoders ({size['channels']} channels, published 512) trained together for "
        f"{trained['steps']} steps in {seconds:.0f} s (final mel L1 {history[-1]['mel']:.2f}, first "
        f"{history[0]['mel']:.2f}"
        + (f"; with a duration predictor for the joint LM's deduplicated units, final log-duration MSE "
           f"{history[-1]['dur']:.3f}, first {history[0]['dur']:.3f}, against {trained['duration_baseline_mse']:.3f} "
           "for the constant mean log duration it starts from" if "dur" in history[-1] else "")
        + "); a CPU demo budget, far from the published 400k steps, so expect buzzy speech: "
        "the comparison between unit sets, not the absolute numbers, is the point. Resynthesised audio: "
        "`vocoder/resynth/<units>/`."
        + (f" Spoken continuations of the {ctx.artifacts['ulm']['units']} unit LM (prompt + continuation): {links}."
           if continuations else "")
    )


def run(ctx: DemoContext) -> StageResult:
    size = QUICK if ctx.quick else FULL
    out = ctx.stage_dir("vocoder")
    corpus = Path(ctx.artifacts["corpus"])
    units = ctx.artifacts["units"]
    names = [n for n in UNIT_SETS if n in units]
    sets = [UnitSet(n, Path(units[n]["km_dir"]) / "train.km", _num_units(units[n])) for n in names]
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    cfg = TrainConfig(steps=size["steps"], batch_size=size["batch"], segment_units=size["segment"],
                      adversarial_from=size["adversarial_from"], checkpoint_every=max(1, size["steps"] // 3),
                      valid_every=0, seed=1, discriminator=DiscriminatorConfig(scale=0.125))
    # the sets share one generator shape: all get the duration predictor, the joint LM's set needs it
    durations = JOINT_LM_UNITS in names
    ctx.log(f"[vocoder] training {len(sets)} vocoders together ({size['steps']} steps, {size['channels']} channels"
            f"{', duration predictor' if durations else ''})")
    with torch_threads(max(1, ctx.jobs)):
        trained = train_vocoder(corpus / "manifests" / "train.tsv", sets, out / "train", train=cfg,
                                channels=size["channels"], embedding_dim=size["embedding"], progress=False,
                                duration_predictor=durations, on_change="restart", log=ctx.log)
    vocoders = {n: {"checkpoint": Path(p["checkpoint"]), "config": Path(p["config"])}
                for n, p in trained["outputs"].items()}
    timings["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    judge = ctx.artifacts.get("recognizer")
    # The judge trained on every labelled train utterance (finetune stage); an older demo folder has
    # only the fine-tuned classifier, decoded greedily.
    recognizer = (PhoneRecognizer(judge["checkpoint"], decode="viterbi", switch_prob=float(judge["switch_prob"]))
                  if judge else PhoneRecognizer(ctx.artifacts["finetuned_checkpoint"]))
    manifest, rows, results, speed, original_per = _resynthesize(corpus, units, vocoders, out, names=names,
                                                                 recognizer=recognizer, n=size["test_utterances"])
    timings["resynthesis_and_metrics"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    first = read_manifest(manifest).rows[0]
    mel_plot = plot_mels([(f"{first.utt_id} original", read_audio(read_manifest(manifest).path(first)))]
                         + [(f"resynthesised from {n} units", read_audio(out / "resynth" / n / f"{first.utt_id}.wav"))
                            for n in names], out / "mels.png", title="Original vs resynthesised (test speaker)")
    continuation_wavs = _continuations(ctx, vocoders, out / "continuations", size["continuations"])
    plots = [mel_plot]
    if continuation_wavs:
        plots.append(plot_mels([(f"{p.stem}: prompt + LM continuation", read_audio(p)) for p in continuation_wavs],
                               out / "continuations.png", title="Spoken LM continuations"))
    lexical = _lexical(ctx)
    tradeoff = _tradeoff_plot(results, lexical, out / "tradeoff.png")
    if tradeoff is not None:
        plots.append(tradeoff)
    timings["plots_and_continuations"] = time.perf_counter() - t0
    ctx.artifacts["vocoder"] = {"vocoders": vocoders, "continuations": continuation_wavs}

    table = Table(
        title=f"Resynthesis of {len(rows)} test utterances (held-out speakers)",
        headers=["units", "K", "MCD", "F0 corr", "PER % (resynthesised)", "synthesis x real time"],
        rows=[[n, s.num_units, f"{results[n]['mcd']:.2f}", f"{results[n]['f0_corr']:.3f}",
               pct(results[n]["per_resynth"]), f"{speed[n]:.0f}"] for n, s in zip(names, sets)]
        + [["original audio (reference)", "-", "-", "-", pct(original_per), "-"]],
        note=f"{MCD_NOTE}. PER: {recognizer.description()} (never trained on resynthesised speech), SIL dropped"
             + (": the finetune stage's resynthesis judge, trained on every labelled train utterance" if judge else "")
             + ". Paper (LibriSpeech / Expresso, 512-channel vocoders trained for "
             "hundreds of thousands of steps): WER 3.82 / 4.36 / 5.78 (base L11 / FT L12 / FT L13), original 1.69; "
             "MCD 7.32 / 7.97 / 8.85.",
    )
    text = _text(ctx, trained, names=names, size=size, seconds=timings["train"], continuations=continuation_wavs)
    return StageResult(
        name="vocoder", text=text, tables=[table], plots=plots,
        metrics={"resynthesis": results, "original_per": original_per, "x_real_time": speed,
                 "steps": trained["steps"], "channels": size["channels"],
                 "duration_mse": trained["history"][-1].get("dur"), "duration_baseline_mse": trained["duration_baseline_mse"],
                 "seconds": {k: round(v, 1) for k, v in timings.items()}},
    )
