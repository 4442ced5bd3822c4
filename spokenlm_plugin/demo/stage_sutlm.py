"""Demo stage: the joint speech-unit / text LM (SUTLM) and the paper's ablation on the fine-tuned units.

``spokenlm sutlm-data`` turns the fine-tuned units (``ctx.artifacts["units"][JOINT_LM_UNITS]``) and the
corpus' word alignments into joint-LM data (raw units and unit SentencePiece; text SentencePiece; a
WordNet text-only corpus without the corpus' sentences). Four tiny transformer LMs
(``sutlm_transformer_lm_tiny`` narrowed to 64 / 256) are trained with the real
``fairseq-train --task speech_text_lm`` for a fixed number of updates, two at a time, one core each,
beside the external text LM of PELM (``--task language_modeling`` on the text-only corpus):

1. units + text: raw units, speech-only and text-only (1/2 each);
2. SP units: the same with unit SentencePiece;
3. + CST: speech-only, speech-text (CST both orders), text-only, 1/3 each;
4. + AST: as 3 with AST added to the speech-text third.

Each is scored on the held-out test utterances (new speakers, new sentences): CRA in the four
conditions (candidate sets of 10 utterances of one speaker, so that u2u cannot win by matching the
voice; chance 10 % when every set holds 10; 95 % bootstrap intervals) and PELM of u2t / t2t
continuations with copy rate and distinct-2. Row 4 (full mode) also gets the zero-shot cross-modal
transfer of :mod:`spokenlm_plugin.sutlm.transfer`: a linear classifier of each sentence's tense
(story world) or WordNet part of speech on the LM's mean-pooled hidden states, trained on the train
utterances as text and tested on the test utterances as units (and the reverse, and within each modality), beside chance
and majority (a few seconds; no extra training of LMs). The paper's claims (SP units help; AST beats CST on
cross-modal CRA) are checked against these numbers, not assumed. Budget: about 2 minutes on 2
cores (``--quick``: ~20 s, a few updates: numbers there only show that the pipeline runs).
The last row's LM also continues a few test prompts in units (u2u, t2u), voiced by the vocoder
stage's vocoder of the same units through its duration predictor (``vocoder-synth``'s
:func:`~spokenlm_plugin.vocoder.synth.synthesize`, ``durations=True``): ``sutlm/voiced/{u2u,t2u}.km``
and ``sutlm/voiced/<condition>/<line>.wav`` (a second or two).
``ctx.artifacts["sutlm"]`` hands on the data folder and the checkpoints.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import numpy as np

from ..core.errors import SpokenLMError
from ..core.km import write_km
from ..core.report import pct
from ..core.runtime import torch_threads
from ..core.tools import run_tool
from ..sutlm.data import DataConfig, build, read_aligned, variant_name
from ..sutlm.align import AlignedUtterance
from ..sutlm.evaluate import CONDITIONS, cra, eval_items, pelm, renderer_for
from ..sutlm.generate import prompt_tokens, sample_continuations
from ..sutlm.metrics import paired_difference_ci
from ..sutlm.score import indices, load_lm
from ..sutlm.sequences import Renderer
from ..sutlm.tokens import decode_units
from ..sutlm.transfer import LABEL_MEANINGS, LABEL_NAMES, Label, ZeroShotReport, labels_for, zero_shot
from ..vocoder.synth import Vocoder, synthesize
from .context import JOINT_LM_UNITS, DemoContext, StageResult, Table


@dataclass(frozen=True)
class Budget:
    updates: int
    text_sentences: int
    unit_sp: int
    items: int
    pelm_prompts: int
    rows: tuple[str, ...]
    zero_shot: bool
    voiced: int = 3


FULL = Budget(updates=120, text_sentences=3000, unit_sp=1000, items=60, pelm_prompts=20,
              rows=("(1) units + text", "(2) SP units", "(3) + CST", "(4) + AST"), zero_shot=True)
#: Quick: every fairseq-train costs seconds of start-up alone, so two LMs on raw units, no PELM.
QUICK = Budget(updates=10, text_sentences=200, unit_sp=0, items=20, pelm_prompts=0,
               rows=("(1) units + text", "(4) + AST"), zero_shot=False)
CANDIDATES = 10
#: Unit continuations voiced by the vocoder (prompt modality -> units).
VOICED = ("u2u", "t2u")

#: name -> (unit variant: SP or raw, ratios speech / paired / text, paired kinds)
ROWS = {
    "(1) units + text": (False, (0.5, 0.0, 0.5), "cst"),
    "(2) SP units": (True, (0.5, 0.0, 0.5), "cst"),
    "(3) + CST": (True, (1 / 3, 1 / 3, 1 / 3), "cst,tsc"),
    "(4) + AST": (True, (1 / 3, 1 / 3, 1 / 3), "cst,tsc,ast"),
}
ARCH = ["--arch", "sutlm_transformer_lm_tiny", "--decoder-embed-dim", "64", "--decoder-ffn-embed-dim", "256",
        "--sample-break-mode", "eos", "--tokens-per-sample", "1024", "--max-tokens", "2048", "--optimizer", "adam",
        "--adam-betas", "(0.9, 0.98)", "--lr", "3e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "20",
        "--dropout", "0.1", "--no-epoch-checkpoints", "--no-save-optimizer-state", "--cpu", "--num-workers", "0",
        "--seed", "1", "--log-format", "simple", "--log-interval", "50", "--skip-invalid-size-inputs-valid-test"]


def _train(data: Path, save: Path, *, updates: int, task: list[str]) -> Path:
    user_dir = str(Path(__file__).resolve().parents[1])
    run_tool("fairseq-train", [str(data), "--user-dir", user_dir, *task, *ARCH, "--max-update", str(updates),
                               "--save-dir", str(save)], log_path=save.with_suffix(".log"), threads=1)
    return save / "checkpoint_last.pt"


def run(ctx: DemoContext) -> StageResult:
    budget = QUICK if ctx.quick else FULL
    out = ctx.stage_dir("sutlm")
    units = ctx.artifacts.get("units", {})
    if JOINT_LM_UNITS not in units:
        raise SpokenLMError(f"demo sutlm: no {JOINT_LM_UNITS} unit set in the units stage's artifacts {list(units)}")
    info = units[JOINT_LM_UNITS]
    k = int(np.load(info["centroids"], mmap_mode="r").shape[0])
    data = out / "data"
    ctx.log("[sutlm] sutlm-data: alignments -> unit positions, SentencePiece, subsets (fairseq-preprocess)")
    build(ctx.artifacts["corpus"], info["km_dir"], data, workers=ctx.jobs,
          cfg=DataConfig(vocab_size=k, unit_vocab_sizes=tuple(sorted({0, budget.unit_sp})), text_vocab_size=1000,
                         text_max_sentences=budget.text_sentences))
    jobs = {}
    for name in budget.rows:
        sp, (s, p, t), kinds = ROWS[name]
        folder = data / variant_name(budget.unit_sp if sp else 0)
        jobs[name] = (folder, out / f"lm{name[1]}", ["--task", "speech_text_lm", "--speech-ratio", str(s),
                                                     "--paired-ratio", str(p), "--text-ratio", str(t),
                                                     "--paired-kinds", kinds, "--valid-subset", "valid_speech,valid_text"])
    if budget.pelm_prompts:
        jobs["text LM"] = (data / "textlm", out / "textlm", ["--task", "language_modeling", "--valid-subset", "valid"])
    ctx.log(f"[sutlm] training {len(jobs)} LMs ({budget.updates} updates each, {ctx.jobs} at a time)")
    with ThreadPoolExecutor(max_workers=max(1, ctx.jobs)) as pool:
        ckpts = dict(zip(jobs, pool.map(lambda j: _train(j[0], j[1], updates=budget.updates, task=j[2]), jobs.values())))

    ctx.log("[sutlm] CRA (4 conditions) and PELM on the test utterances")
    items = eval_items(read_aligned(data / "aligned" / "test.jsonl"), max_items=budget.items)
    results: dict[str, dict] = {}
    transfer: ZeroShotReport | None = None
    voiced: Voiced | None = None
    with torch_threads(1):
        text = load_lm(ckpts["text LM"], data=data / "textlm") if budget.pelm_prompts else None
        for name in budget.rows:
            folder = jobs[name][0]
            model, task = load_lm(ckpts[name], data=folder)
            renderer = renderer_for(folder)
            r: dict = {"cra": {c: cra(model, task.source_dictionary, renderer, items, condition=c,
                                      candidates=CANDIDATES, pool="same-speaker", where=name) for c in CONDITIONS}}
            r["pelm"] = {c: pelm(model, task, renderer, items[: budget.pelm_prompts], condition=c, text_model=text[0],
                                 text_task=text[1], where=name) if text else None for c in ("u2t", "t2t")}
            results[name] = r
            if name == "(4) + AST" and budget.zero_shot:
                label: Label = "tense" if ctx.world == "stories" else "pos"
                ctx.log(f"[sutlm] zero-shot cross-modal transfer (row 4): sentence {LABEL_NAMES[label]} classifier "
                        "text <-> units")
                train, test = (read_aligned(data / "aligned" / f"{split}.jsonl") for split in ("train", "test"))
                labels = labels_for(label, world=ctx.world, cover=[u.words for u in (*train, *test)])
                transfer = zero_shot(model, task.source_dictionary, renderer, train, test, labels=labels, label=label,
                                     where=name)
            if name == budget.rows[-1]:
                voiced = _voice(ctx, model, task, renderer, items[: budget.voiced], out / "voiced", row=name)
    return _report(results, ckpts=ckpts, data=data, budget=budget, ctx=ctx, transfer=transfer, voiced=voiced)


@dataclass
class Voiced:
    """Unit continuations voiced by the vocoder: a report table and files, or why there are none."""

    note: str
    table: Table | None = None
    files: dict[str, Path] | None = None
    seconds: float = 0.0


def _short(xs: list, n: int = 12) -> str:
    return " ".join(map(str, xs[:n])) + (f" ... ({len(xs)})" if len(xs) > n else "")


def _voice(ctx: DemoContext, model, task, renderer: Renderer, items: list[AlignedUtterance], out: Path, *,
           row: str) -> Voiced:
    """Continue the first half of each item in units (u2u, t2u) and voice prompt units + continuation
    with the vocoder of the joint LM's units (its duration predictor sets each unit's length)."""
    import time

    t0 = time.perf_counter()
    paths = ctx.artifacts.get("vocoder", {}).get("vocoders", {}).get(JOINT_LM_UNITS)
    if paths is None:
        return Voiced(f"No {JOINT_LM_UNITS} vocoder from the vocoder stage: unit continuations not voiced.")
    vocoder = Vocoder.load(paths["checkpoint"], paths["config"])
    if not vocoder.predicts_durations:
        return Voiced(f"The {JOINT_LM_UNITS} vocoder ({paths['checkpoint']}) has no duration predictor (made before "
                      "the demo trained one: rerun `--stages vocoder sutlm --force`): unit continuations not voiced.")
    d = task.source_dictionary
    rows, files = [], {}
    for cond in VOICED:
        src = CONDITIONS[cond][0]
        prompts = [renderer.segment(u, 0, len(u.words) // 2, src, where=row)[1] for u in items]
        conts = sample_continuations(model, task, [indices(d, prompt_tokens(src, p, to="speech"), where=row)
                                                   for p in prompts], to="speech", max_new=40, seed=1)
        lines = []
        for u, c in zip(items, conts):
            cut = len(u.words) // 2
            units = decode_units(c)
            if not units:
                rows.append([cond, "-", " ".join(u.words[:cut]), "", "(empty: the LM switched or ended)",
                             " ".join(u.words[cut:])])
                continue
            prompt_units = u.word_units(0, cut) if src == "speech" else []
            lines.append(prompt_units + units)
            wav = f"{len(lines):06d}.wav"
            rows.append([cond, f"[{cond}/{wav}](sutlm/voiced/{cond}/{wav})", " ".join(u.words[:cut]),
                         _short(prompt_units), _short(units), " ".join(u.words[cut:])])
        if lines:
            files[cond] = out / f"{cond}.km"
            write_km(files[cond], lines)
            synthesize(vocoder, files[cond], out / cond, durations=True, progress=False)
    seconds = time.perf_counter() - t0
    table = Table(
        title=f"Unit continuations of row {row[1]}, voiced ({JOINT_LM_UNITS} units' vocoder, duration predictor)",
        headers=["condition", "wav", "prompt (its words)", "prompt units (u2u)", "continuation units (sampled)",
                 "true continuation"],
        rows=rows,
        note=f"Test utterances cut at the middle word; the prompt in units (u2u: its deduplicated units) or text "
             f"(t2u), then [SPEECH]; up to 40 sampled tokens (top-k 20, temperature 0.8), cut at a switch. The wav "
             f"is line i of `sutlm/voiced/<condition>.km` (prompt units + continuation for u2u), run lengths from "
             f"the vocoder's duration predictor. Voicing took {seconds:.1f} s.",
    )
    return Voiced(f"Row {row[1]}'s unit continuations are voiced below (`sutlm/voiced/`).", table, files, seconds)


def _mean(r: dict, conds: tuple[str, ...]) -> float:
    return float(np.mean([r["cra"][c].accuracy for c in conds]))


def _report(results: dict[str, dict], *, ckpts: dict, data: Path, budget: Budget, ctx: DemoContext,
            transfer: ZeroShotReport | None = None, voiced: Voiced | None = None) -> StageResult:
    chance = next(iter(results.values()))["cra"]["u2u"].chance
    n_items = next(iter(results.values()))["cra"]["u2u"].items
    ppl = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
    rows = []
    for name, r in results.items():
        u2t, t2t = r["pelm"]["u2t"], r["pelm"]["t2t"]
        pelm_cells = ([ppl(u2t.pelm), ppl(t2t.pelm), f"{pct(t2t.copy_rate)} / {pct(t2t.distinct_2)}",
                       f"{u2t.empty + t2t.empty}/{u2t.prompts + t2t.prompts}"] if u2t else ["n/a (quick)"] * 4)
        rows.append([name, *[pct(r["cra"][c].accuracy, r["cra"][c].ci) for c in CONDITIONS], *pelm_cells])
    t2t_any = next(iter(results.values()))["pelm"]["t2t"]
    reference = t2t_any.reference_ppl if t2t_any else None
    table = Table(
        title="SUTLM ablation (fine-tuned units): CRA % [95 % CI] and PELM",
        headers=["row", "CRA u2u", "CRA u2t", "CRA t2u", "CRA t2t", "PELM u2t", "PELM t2t",
                 "t2t copy / distinct-2 %", "empty"],
        rows=rows,
        note=f"CRA: {n_items} held-out test utterances (new speakers and sentences) cut at the middle word, candidate "
             f"sets of up to {CANDIDATES} utterances of one speaker, so that no continuation is retrieved by its voice "
             f"(u2u): chance {100 * chance:.0f} %; intervals: 1000 bootstrap resamples of the items. "
             f"PELM: perplexity per text piece of sampled continuations (top-k 20, temperature 0.8) under the external "
             f"text LM (same tiny transformer, text-only corpus); the true continuations score {ppl(reference)}. "
             "Copy rate: share of continuation word bigrams found in the prompt.",
    )
    cross = ("u2t", "t2u")

    def verdict(a: dict, b: dict, conds: tuple[str, ...]) -> str:
        # Paired over the same items: mean over the conditions of (row b - row a) per item.
        diff = paired_difference_ci(np.mean([a["cra"][c].hits for c in conds], axis=0),
                                    np.mean([b["cra"][c].hits for c in conds], axis=0))
        if diff is None:
            return "not measured"
        where = f"95 % paired interval [{100 * diff[0]:+.1f}, {100 * diff[1]:+.1f}]"
        if diff[0] > 0:
            return f"holds ({where})"
        if diff[1] < 0:
            return f"contradicted ({where})"
        return f"not shown: the {where} contains 0"
    if ctx.quick:
        sp_gain = ast_gain = None
        text = ("Quick mode: two joint LMs (raw units; rows 1 and 4) after a few updates, CRA only: the numbers only "
                "show that the pipeline runs; the claims are checked in full mode.")
        return _result(results, text=text, tables=[table], ckpts=ckpts, data=data, ctx=ctx, chance=chance,
                       sp_gain=sp_gain, ast_gain=ast_gain, voiced=voiced)
    tables = [table] + ([_transfer_table(transfer)] if transfer is not None else [])
    r1, r2, r3, r4 = (results[k] for k in ("(1) units + text", "(2) SP units", "(3) + CST", "(4) + AST"))
    sp_gain = _mean(r2, tuple(CONDITIONS)) - _mean(r1, tuple(CONDITIONS))
    ast_gain = _mean(r4, cross) - _mean(r3, cross)
    cst_cross = _mean(results["(3) + CST"], cross)
    text = (
        f"Four joint LMs ({budget.updates} updates of fairseq-train each, 2 layers of 64; the paper's is ~350M "
        f"parameters, `sutlm_transformer_lm_350m`) on the fine-tuned units, unit SentencePiece {budget.unit_sp} "
        f"(SentencePiece stops at what the data supports). Claims checked here: SP units help "
        f"(mean CRA over the 4 conditions, row 2 - row 1: {100 * sp_gain:+.1f} points): "
        f"{verdict(r1, r2, tuple(CONDITIONS))}; AST beats CST on cross-modal CRA (mean of u2t / t2u, row 4 - row 3: "
        f"{100 * ast_gain:+.1f} points; row 3 at {100 * cst_cross:.1f} %, chance {100 * chance:.0f} %): "
        f"{verdict(r3, r4, cross)}."
    )
    if transfer is not None:
        acc = {r.name: r.accuracy for r in transfer.results}
        text += (f" Zero-shot cross-modal transfer (row 4, sentence {LABEL_NAMES[transfer.label]}): text -> speech "
                 f"{pct(acc['t->u'])} %, speech -> text {pct(acc['u->t'])} % against a majority baseline of "
                 f"{pct(transfer.majority)} % (within text {pct(acc['t->t'])} %, within speech "
                 f"{pct(acc['u->u'])} %).")
    return _result(results, text=text, tables=tables, transfer=transfer, ckpts=ckpts, data=data, ctx=ctx, chance=chance,
                   sp_gain=sp_gain, ast_gain=ast_gain, voiced=voiced)


def _transfer_table(z: ZeroShotReport) -> Table:
    return Table(
        title=f"SUTLM zero-shot cross-modal transfer (row 4): sentence {LABEL_NAMES[z.label]} accuracy % [95 % CI]",
        headers=["train -> test", "accuracy", "chance", "majority"],
        rows=[[f"{r.train} -> {r.test}", pct(r.accuracy, r.ci), pct(z.chance), pct(z.majority)]
              for r in z.results],
        note=f"Label: {LABEL_MEANINGS[z.label]} ({len(z.classes)} classes: {', '.join(z.classes)}). "
             f"Features: row 4's last hidden states mean-pooled over the utterance in one modality; logistic "
             f"regression on standardised features, trained on {z.train_items} train utterances, tested on "
             f"{z.test_items} test utterances (new sentences). text -> speech and speech -> text are the zero-shot "
             "transfer; majority: the train split's most frequent class.",
    )


def _result(results: dict[str, dict], *, text: str, tables: list[Table], ckpts: dict, data: Path, ctx: DemoContext,
            chance: float, sp_gain: float | None, ast_gain: float | None,
            transfer: ZeroShotReport | None = None, voiced: Voiced | None = None) -> StageResult:
    ctx.artifacts["sutlm"] = {"data": data, "checkpoints": {n: c for n, c in ckpts.items()},
                              "voiced": (voiced.files if voiced else None) or {}}
    if voiced is not None:
        text += " " + voiced.note
        tables = tables + ([voiced.table] if voiced.table else [])
    metrics: dict[str, Any] = {name: {**{f"cra_{c}": r["cra"][c].accuracy for c in CONDITIONS},
                      **{f"cra_{c}_ci": r["cra"][c].ci for c in CONDITIONS},
                      **{f"pelm_{c}": r["pelm"][c].pelm if r["pelm"][c] else None for c in ("u2t", "t2t")}}
               for name, r in results.items()}
    metrics |= {"chance": chance, "sp_gain": sp_gain, "ast_gain_cross": ast_gain,
                "voice_seconds": round(voiced.seconds, 2) if voiced else None}
    if transfer is not None:
        metrics["zero_shot"] = {"chance": transfer.chance, "majority": transfer.majority,
                                **{r.name: r.accuracy for r in transfer.results}}
    return StageResult(name="sutlm", text=text, tables=tables, metrics=metrics)
