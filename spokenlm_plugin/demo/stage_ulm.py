"""Demo stage: unit LMs, the paper's table of unit sets x embedding initialisation x unit sequences.

Unit sets (``ctx.artifacts["units"]``): ``base`` (k-means on the base model), ``finetuned``
(k-means on the fine-tuned layer), ``finetuned-logits`` (argmax of the fine-tuned phone logits,
the paper's best units); beside them the gold 50 Hz phone labels (``spokenlm phone-units``, the
topline). Every set is binarized twice (``spokenlm lm-data``, with and without ``--dedup``) and
LSTM LMs are trained with the real ``fairseq-train`` (:data:`ROWS`: random vs k-means-centroid
initialised embeddings). The unit sequence of :data:`DEFAULT_DEDUP` gets every row; the other
one the rows that answer its question (:data:`OTHER_ROWS`).

Each LM is scored on the synthetic minimal pairs: lexical (sWUGGY-like) and syntactic
(sBLIMP-like) accuracy with two scores, the sum of the log-probabilities (ZeroSpeech 2021, the
paper) and their mean per unit (SlamKit), each with its 95 % bootstrap interval over pair ids
(:mod:`spokenlm_plugin.ulm.discrimination`), and test perplexity. Differences between rows (fine-
tuned vs base units, logits vs layer units, centroid vs random init, deduplicated vs not, gold vs
fine-tuned) get paired bootstrap intervals over the same ids. The baseline row is the length-only
scorer (score = minus the number of units, no LM).

The LM of the paper's best setting among the fine-tuned units continues a few test prompts with
``fairseq-generate``; ``ctx.artifacts["ulm"]`` hands them on (``prompts``, ``continuations``:
``.km`` files, one line per prompt; ``dedup``: whether they need durations to be voiced).

The LMs are the paper's LSTM scaled down to the demo's CPU budget (the paper's is 3 x 1024,
embedding 200, 100k updates of 163840 tokens): 2 layers of 256, embedding 64, a fixed number of
updates per unit sequence (:class:`LMSize`); the optimiser is the ZeroSpeech 2021 baseline's (adam
(0.9, 0.98), inverse-sqrt schedule, weight decay 0.01, dropout 0.1) with a higher peak learning rate
and a warm-up of a quarter of the updates.
"""

from __future__ import annotations

import itertools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import numpy as np

from ..core.errors import SpokenLMError
from ..core.io import read_manifest
from ..core.km import deduplicate, read_km, write_km
from ..core.report import pct, save_figure, use_agg
from ..core.runtime import torch_threads
from ..core.tools import run_tool
from ..ulm.data import make_lm_dataset
from ..ulm.discrimination import (
    LexicalResult,
    PairTask,
    SyntacticResult,
    lexical_accuracy,
    paired_difference,
    read_gold,
    syntactic_accuracy,
)
from ..ulm.generate import continue_units
from ..ulm.score import load_unit_lm, sequence_logprobs, unit_count_scores, unit_indices
from ..units.phone_units import write_phone_units
from ..units.quality import read_phone_dict
from .context import DemoContext, StageResult, Table

Init = Literal["random", "centroids"]
Score = Literal["sum", "mean"]
TASKS: tuple[PairTask, ...] = ("lexical", "syntactic")
SCORES: tuple[Score, ...] = ("sum", "mean")
#: The gold-phone topline's unit set name.
PHONES = "phones"


@dataclass(frozen=True)
class LMRow:
    """One LM of the table: which units, how its embeddings start, which unit sequence."""

    units: str
    init: Init
    dedup: bool

    @property
    def key(self) -> str:
        return f"{self.units}/{self.init}/{'dedup' if self.dedup else 'raw'}"

    @property
    def folder(self) -> str:
        return f"{self.units}/lm_{self.init}_{'dedup' if self.dedup else 'raw'}"


#: (unit set, init) of the table, every one trained on the default unit sequence. Logits units have
#: one-hot "centroids" (nothing to initialise from) and gold phones none: both start at random.
ROWS: tuple[tuple[str, Init], ...] = (
    ("base", "centroids"), ("finetuned", "random"), ("finetuned", "centroids"),
    ("finetuned-logits", "random"), (PHONES, "random"),
)
#: The rows also trained on the other unit sequence: deduplication measured on k-means units and on gold phones.
OTHER_ROWS: tuple[tuple[str, Init], ...] = (("finetuned", "centroids"), (PHONES, "random"))
#: Deduplicated units by default. Measured on the story world (demo corpus, fine-tuned units and gold
#: phones): see docs/NOTES.md; the report's table carries both sequences every run.
DEFAULT_DEDUP = True
#: The headline score of the targets (both are in the table): ZeroSpeech 2021's and the paper's sum.
DEFAULT_SCORE: Score = "sum"


@dataclass(frozen=True)
class LMSize:
    """The demo LM and its training budget on one unit sequence: a fixed number of updates, so every
    unit set of a sequence gets the same compute whatever its length."""

    embed: int
    hidden: int
    layers: int
    tokens_per_sample: int
    max_tokens: int
    updates: int
    lr: float
    warmup: int


#: Short samples, wide batches: an LSTM steps through time, so an update's cost grows with the sample
#: length far more than with the number of samples. Measured on the story world (demo corpus, gold
#: phones, 2 x 256): the old schedule (10 warm-up updates, then lr ~ 1/sqrt(update)) left the LMs near
#: chance: deduplicated gold phones 56.5 / 61.5 % (sWUGGY / sBLIMP) after 81 updates of 4096 tokens,
#: 73.8 / 70.5 % after 800 of 1024; with 100 warm-up updates, 400 of 1024 reach 82.5 / 76.5 % (64-token
#: samples) and 83.0 / 80.5 % (32-token samples, 34 s). Raw 50 Hz gold phones need 128-token samples
#: (a word lasts 15-20 frames): 200 updates of 4096 tokens reach 83.0 / 68.0 % in 76 s (the demo trains
#: 150 to keep its 15 minutes). Deduplicated sequences are the default: as good or better for less compute.
FULL = {
    False: LMSize(embed=64, hidden=256, layers=2, tokens_per_sample=128, max_tokens=4096, updates=150, lr=3e-3,
                  warmup=40),
    True: LMSize(embed=64, hidden=256, layers=2, tokens_per_sample=32, max_tokens=1024, updates=400, lr=3e-3,
                 warmup=100),
}
QUICK = {d: LMSize(embed=16, hidden=64, layers=1, tokens_per_sample=32, max_tokens=1024, updates=10, lr=3e-3,
                   warmup=2) for d in (False, True)}
#: Prompts for the continuation: the first PROMPT_FRAMES frames (0.5 s) of a few test utterances.
PROMPT_FRAMES, N_PROMPTS, NEW_UNITS = 25, 3, 100


def _train_lm(data: Path, save: Path, *, size: LMSize, centroids: Path | None, mode: str) -> Path:
    args = [
        str(data), "--user-dir", str(Path(__file__).resolve().parents[1]),
        "--task", "language_modeling", "--arch", "unit_lstm_lm_small",
        "--decoder-embed-dim", str(size.embed), "--decoder-hidden-size", str(size.hidden),
        "--decoder-out-embed-dim", str(size.embed), "--decoder-layers", str(size.layers),
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--clip-norm", "0.0",
        "--lr-scheduler", "inverse_sqrt", "--lr", str(size.lr), "--warmup-updates", str(size.warmup),
        "--warmup-init-lr", "1e-07", "--dropout", "0.1", "--weight-decay", "0.01",
        "--sample-break-mode", "none", "--tokens-per-sample", str(size.tokens_per_sample),
        "--max-tokens", str(size.max_tokens), "--max-update", str(size.updates),
        "--save-dir", str(save), "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "10",
        "--num-workers", "0", "--seed", "1", "--cpu",
    ]
    if centroids is not None:
        args += ["--unit-centroids", str(centroids), "--centroid-init", mode]
    # One intra-op thread per training: two trainings share the cores, and torch's spinning
    # threads slow an LSTM several-fold on a busy small CPU.
    # fairseq-train resumes from save/checkpoint_last.pt, so a rerun of the stage does not retrain.
    run_tool("fairseq-train", args, log_path=save.parent / f"{save.name}.log", threads=1)
    return save / "checkpoint_best.pt"


def _pairs_km(info: dict[str, Any], task: str) -> Path | None:
    for key in ("pairs_km_dir", "km_dir"):
        if info.get(key) is not None and (Path(info[key]) / f"{task}.km").is_file():
            return Path(info[key]) / f"{task}.km"
    return None


Results = dict[str, LexicalResult | SyntacticResult]


def _pair_results(info: dict[str, Any], pairs: Path | None,
                  score: Callable[[list[list[int]]], dict[Score, Iterable[float]]], *,
                  vocab_size: int | None = None, dedup: bool = False) -> dict[Score, Results]:
    """sWUGGY / sBLIMP results of each of ``score``'s scores on the pair sets' units."""
    out: dict[Score, Results] = {}
    for kind in TASKS:
        km = _pairs_km(info, kind)
        if pairs is None or km is None:
            continue
        ids = read_manifest(pairs / "manifests" / f"{kind}.tsv").utt_ids
        rows = read_km(km, vocab_size=vocab_size, allow_empty=False)
        if len(rows) != len(ids):
            raise SpokenLMError(f"demo ulm: {km} has {len(rows)} lines, its manifest {len(ids)} rows")
        if dedup:
            rows = [deduplicate(r)[0] for r in rows]
        accuracy = lexical_accuracy if kind == "lexical" else syntactic_accuracy
        gold_path = pairs / kind / "gold.csv"
        gold = read_gold(gold_path, task=kind)  # once for every score
        for name, values in score(rows).items():
            scores = dict(zip(ids, [float(v) for v in values]))
            out.setdefault(name, {})[kind] = accuracy(gold, scores, source=str(gold_path))
    return out


def _flat(results: dict[Score, Results]) -> dict[str, Any]:
    """The JSON-able metrics of a row: ``lexical`` / ``syntactic`` (sum), ``*_mean``, intervals, in-vocab."""
    m: dict[str, Any] = {}
    for name, by_task in results.items():
        suffix = "" if name == "sum" else f"_{name}"
        for kind, r in by_task.items():
            m[f"{kind}{suffix}"], m[f"{kind}{suffix}_ci"] = r.all, r.all_ci
            if isinstance(r, LexicalResult):
                m[f"lexical_invocab{suffix}"], m[f"lexical_invocab{suffix}_ci"] = r.in_vocab, r.in_vocab_ci
    return m


def _evaluate(ckpt: Path, info: dict[str, Any], pairs: Path | None, *, dedup: bool) -> tuple[dict[str, Any],
                                                                                              dict[Score, Results]]:
    model, task = load_unit_lm(ckpt)
    dictionary = task.source_dictionary
    k = len(unit_indices(dictionary))
    test = read_km(Path(info["km_dir"]) / "test.km", vocab_size=k, allow_empty=False)
    if dedup:
        test = [deduplicate(r)[0] for r in test]
    sums, counts = sequence_logprobs(model, dictionary, test)

    def both(rows: list[list[int]]) -> dict[Score, Iterable[float]]:
        s, n = sequence_logprobs(model, dictionary, rows)
        return {"sum": s, "mean": s / n}

    results = _pair_results(info, pairs, both, vocab_size=k, dedup=dedup)
    return {"ppl": math.exp(-sums.sum() / counts.sum()), **_flat(results)}, results


def _unit_consistency(info: dict[str, Any], pairs: Path, *, dedup: bool) -> dict[str, float] | None:
    """How much the units of one lexical item change between the test voices, against how much a word's
    units differ from its non-word's in one voice (normalised edit distances, means over items).

    An LM can only prefer the word if the second is larger: the units must carry the phone that
    tells them apart more than they carry the voice.
    """
    import editdistance

    km = _pairs_km(info, "lexical")
    gold = pairs / "lexical" / "gold.csv"
    if km is None or not gold.is_file():
        return None
    ids = read_manifest(pairs / "manifests" / "lexical.tsv").utt_ids
    rows = dict(zip(ids, (deduplicate(r)[0] if dedup else r for r in read_km(km, allow_empty=False))))
    items: dict[tuple[str, bool], dict[str, list[int]]] = {}  # (id, correct) -> voice -> units
    for row in read_gold(gold, task="lexical"):
        voice, pid = row.key
        items.setdefault((pid, row.correct), {})[voice] = rows[row.filename]

    def distance(a: Sequence[int], b: Sequence[int]) -> float:
        return editdistance.eval(a, b) / max(len(a), len(b), 1)

    across = [distance(a, b) for by_voice in items.values() for a, b in itertools.combinations(by_voice.values(), 2)]
    pair = [distance(units, items[(pid, False)][voice]) for (pid, correct), by_voice in items.items()
            if correct for voice, units in by_voice.items() if voice in items.get((pid, False), {})]
    if not across or not pair:
        return None
    return {"across_voices": float(np.mean(across)), "word_vs_nonword": float(np.mean(pair))}


def _phone_units(corpus: Path, pairs: Path | None, out: Path) -> dict[str, Any]:
    """Gold 50 Hz phone labels as units (ids from the corpus' dict.phn.txt) for every split and pair set."""
    km_dir, dict_path = out / "km", corpus / "labels" / "dict.phn.txt"
    labels = {s: corpus / "labels" / f"{s}.phn" for s in ("train", "valid", "test")}
    if pairs is not None:
        labels |= {t: pairs / "labels" / f"{t}.phn" for t in TASKS if (pairs / "labels" / f"{t}.phn").is_file()}
    for name, path in labels.items():
        write_phone_units(path, dict_path, km_dir / f"{name}.km")
    return {"km_dir": km_dir, "pairs_km_dir": km_dir, "vocab": len(read_phone_dict(dict_path))}


#: Paired comparisons of the report: (label, row a, row b); the difference is b - a.
def _comparisons(default: bool) -> list[tuple[str, LMRow, LMRow]]:
    d, o = default, not default
    seq = "deduplicated" if default else "raw"
    other = "raw" if default else "deduplicated"
    return [
        ("fine-tuned vs base units (centroid init)", LMRow("base", "centroids", d), LMRow("finetuned", "centroids", d)),
        ("logits-argmax vs fine-tuned layer units", LMRow("finetuned", "centroids", d),
         LMRow("finetuned-logits", "random", d)),
        ("centroid vs random init (fine-tuned units)", LMRow("finetuned", "random", d),
         LMRow("finetuned", "centroids", d)),
        (f"{seq} vs {other} (fine-tuned units)", LMRow("finetuned", "centroids", o), LMRow("finetuned", "centroids", d)),
        (f"{seq} vs {other} (gold phones)", LMRow(PHONES, "random", o), LMRow(PHONES, "random", d)),
        ("gold phones vs logits-argmax units", LMRow("finetuned-logits", "random", d), LMRow(PHONES, "random", d)),
    ]


def _plot(metrics: dict[str, dict[str, Any]], rows: Sequence[LMRow], out: Path) -> Path:
    use_agg()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    x = np.arange(len(rows))
    for ax, kind, title in zip(axes, TASKS, ("lexical accuracy (%, sum score)", "syntactic accuracy (%, sum score)")):
        values = [np.nan if metrics[r.key].get(kind) is None else 100 * metrics[r.key][kind] for r in rows]
        errs = [[0, 0] if metrics[r.key].get(f"{kind}_ci") is None else
                [100 * (metrics[r.key][kind] - metrics[r.key][f"{kind}_ci"][0]),
                 100 * (metrics[r.key][f"{kind}_ci"][1] - metrics[r.key][kind])] for r in rows]
        colors = ["tab:orange" if r.dedup else "tab:blue" for r in rows]
        ax.bar(x, values, color=colors, yerr=np.array(errs).T, capsize=2)
        ax.set_xticks(x, [f"{r.units}\n{r.init}\n{'dedup' if r.dedup else 'raw'}" for r in rows], fontsize=7)
        ax.set_title(title + ": orange deduplicated, blue raw", fontsize=9)
        ax.axhline(50, color="0.5", lw=0.8, ls="--")
        ax.set_ylim(0, 100)
    fig.tight_layout()
    return save_figure(fig, out / "ulm_metrics.png", dpi=100)


def _rows(units: dict[str, Any], quick: bool) -> list[LMRow]:
    wanted = [LMRow(u, i, DEFAULT_DEDUP) for u, i in ROWS]
    wanted += [LMRow(u, i, not DEFAULT_DEDUP) for u, i in OTHER_ROWS]
    rows = [r for r in wanted if r.units in units]
    if quick:  # the machinery, not the table: one unit set and the topline on each sequence
        rows = [r for r in rows if (r.units, r.init) in (("finetuned", "centroids"), (PHONES, "random"))]
    return rows


def _differences(results: dict[LMRow, dict[Score, Results]]) -> dict[str, dict[str, Any]]:
    """The paired comparisons of :func:`_comparisons` that ran: label -> task[_mean] -> [difference, low, high]."""
    differences: dict[str, dict[str, Any]] = {}
    for label, a, b in _comparisons(DEFAULT_DEDUP):
        if a not in results or b not in results:
            continue
        differences[label] = {}
        for score in SCORES:
            for kind in TASKS:
                ra, rb = results[a].get(score, {}).get(kind), results[b].get(score, {}).get(kind)
                if ra is not None and rb is not None:
                    d = paired_difference(ra, rb)
                    differences[label][f"{kind}{'' if score == 'sum' else '_mean'}"] = [d.difference, *(d.ci or ())]
    return differences


def run(ctx: DemoContext) -> StageResult:
    sizes = QUICK if ctx.quick else FULL
    out = ctx.stage_dir("ulm")
    pairs = Path(ctx.artifacts["pairs"]) if ctx.artifacts.get("pairs") else None
    units: dict[str, dict[str, Any]] = {n: dict(v) for n, v in ctx.artifacts["units"].items()}
    if "finetuned" not in units:
        raise SpokenLMError(f"demo ulm: no fine-tuned unit set in the units stage's artifacts {list(units)}")
    phones = _phone_units(Path(ctx.artifacts["corpus"]), pairs, out / PHONES)
    units[PHONES] = phones
    vocab = {n: phones["vocab"] if n == PHONES else int(np.load(v["centroids"], mmap_mode="r").shape[0])
             for n, v in units.items()}
    rows = _rows(units, ctx.quick)

    # 1. units -> binarized LM datasets with fixed dictionaries (K = number of centroids / phones)
    datasets = sorted({(r.units, r.dedup) for r in rows})
    with ThreadPoolExecutor(max_workers=max(1, ctx.jobs)) as pool:
        metas = dict(zip(datasets, pool.map(
            lambda nd: make_lm_dataset(units[nd[0]]["km_dir"], out / nd[0] / ("data_dedup" if nd[1] else "data_raw"),
                                       vocab_size=vocab[nd[0]], dedup=nd[1]), datasets)))

    # 2. the LMs, trained in parallel (one core each); PCA needs E <= min(K, D), else the centroid-size
    # table + learned projection
    def job(r: LMRow) -> dict[str, Any]:
        size = sizes[r.dedup]
        centroids = Path(units[r.units]["centroids"]) if r.init == "centroids" else None
        mode = "pca" if centroids is None or size.embed <= min(np.load(centroids, mmap_mode="r").shape) else "project"
        return dict(data=out / r.units / ("data_dedup" if r.dedup else "data_raw"), save=out / r.folder, size=size,
                    mode=mode, centroids=centroids)

    jobs = {r: job(r) for r in rows}
    ctx.log(f"[ulm] training {len(jobs)} LMs with fairseq-train ({ctx.jobs} at a time)")
    # the longest first: two workers finish closer together
    order = sorted(rows, key=lambda r: -jobs[r]["size"].updates * jobs[r]["size"].max_tokens)
    with ThreadPoolExecutor(max_workers=max(1, ctx.jobs)) as pool:
        ckpts = dict(zip(order, pool.map(lambda r: _train_lm(**jobs[r]), order)))

    # 3. one continuation with fairseq-generate (in the background, while the LMs are evaluated)
    # from the paper's best unit setting that ran: fine-tuned units, centroid init, default sequence
    chosen = LMRow("finetuned", "centroids", DEFAULT_DEDUP)
    test_rows = read_km(Path(units["finetuned"]["km_dir"]) / "test.km", vocab_size=vocab["finetuned"],
                        allow_empty=False)
    prompts = [r[:PROMPT_FRAMES] for r in test_rows[:N_PROMPTS]]
    if chosen.dedup:
        prompts = [deduplicate(p)[0] for p in prompts]
    prompts_km, continuations_km = out / "prompts.km", out / "continuations.km"
    write_km(prompts_km, prompts)
    new_units = NEW_UNITS // 3 if chosen.dedup else NEW_UNITS  # a deduplicated unit lasts a few frames
    ctx.log("[ulm] sampling continuations with fairseq-generate; scoring test utterances and minimal pairs")
    with ThreadPoolExecutor(max_workers=1) as pool:
        # data= gives the dictionary, so this thread loads no checkpoint (fairseq / hydra globals).
        generation = pool.submit(continue_units, ckpts[chosen], prompts_km, continuations_km,
                                 data=jobs[chosen]["data"], max_new=new_units, min_new=new_units // 2,
                                 top_k=20, temperature=0.8, seed=1)
        # 4. evaluation (one thread: small LMs, and a busy CPU makes torch's thread pool spin)
        with torch_threads(1):
            evaluated = {r: _evaluate(ckpt, units[r.units], pairs, dedup=r.dedup) for r, ckpt in ckpts.items()}
            # the length-only baseline: score = -(number of units); non-deduplicated units of every set
            # have one unit per 50 Hz frame, so any set gives the same scores
            length = {d: _pair_results(units["finetuned"], pairs, lambda rows: {"sum": unit_count_scores(rows)},
                                       dedup=d)["sum"] if pairs is not None else {} for d in (False, True)}
        continuations = generation.result()
    ctx.artifacts["ulm"] = {"checkpoint": ckpts[chosen], "units": chosen.units, "dedup": chosen.dedup,
                            "prompts": prompts_km, "continuations": continuations_km}

    metrics = {r.key: m for r, (m, _) in evaluated.items()}
    differences = _differences({r: res for r, (_, res) in evaluated.items()})
    consistency = {u: c for u in dict.fromkeys(r.units for r in rows)
                   if pairs is not None and (c := _unit_consistency(units[u], pairs, dedup=DEFAULT_DEDUP)) is not None}
    return _result(rows=rows, metrics=metrics, differences=differences, length=length, phones=phones,
                   vocab=vocab, jobs=jobs, metas=metas, continuations=continuations, chosen=chosen, out=out,
                   consistency=consistency)


def _result(*, rows: Sequence[LMRow], metrics: dict[str, dict[str, Any]], differences: dict[str, dict[str, Any]],
            length: dict[bool, Results], phones: dict[str, Any], vocab: dict[str, int], jobs: dict[LMRow, dict],
            metas: dict, continuations: list[list[int]], chosen: LMRow, out: Path,
            consistency: dict[str, dict[str, float]]) -> StageResult:
    def name(u: str) -> str:
        return "gold phones (topline)" if u == PHONES else u

    def row(r: LMRow) -> list[Any]:
        m = metrics[r.key]
        init = r.init if r.init == "random" else f"centroids ({jobs[r]['mode']})"
        return [name(r.units), init, "dedup" if r.dedup else "raw", f"{jobs[r]['size'].updates} x {jobs[r]['size'].max_tokens}",
                pct(m.get("lexical"), m.get("lexical_ci")), pct(m.get("lexical_mean"), m.get("lexical_mean_ci")),
                pct(m.get("syntactic"), m.get("syntactic_ci")),
                pct(m.get("syntactic_mean"), m.get("syntactic_mean_ci")), round(m["ppl"], 2)]

    def length_row(dedup: bool) -> list[Any]:
        r = length[dedup]
        lex, syn = r.get("lexical"), r.get("syntactic")
        return ["any (baseline)", "no LM: length only", "dedup" if dedup else "raw", 0,
                pct(lex.all if lex else None, lex.all_ci if lex else None), "",
                pct(syn.all if syn else None, syn.all_ci if syn else None), "", "n/a"]

    ordered = sorted(rows, key=lambda r: (r.dedup != DEFAULT_DEDUP, [u for u, _ in ROWS].index(r.units), r.init))
    table = Table(
        title="Unit LMs: units x embedding initialisation x unit sequence",
        headers=["units", "init", "sequence", "updates x tokens", "sWUGGY sum %", "sWUGGY mean %", "sBLIMP sum %",
                 "sBLIMP mean %", "test ppl"],
        rows=[row(r) for r in ordered] + [length_row(d) for d in (DEFAULT_DEDUP, not DEFAULT_DEDUP)],
        note="Accuracy on the synthetic minimal pairs of the unseen test voices (chance 50 %) with its 95 % bootstrap "
             "interval over pair ids [low, high] (1000 resamples). sum: log-probability of the utterance (ZeroSpeech "
             "2021, the paper); mean: per unit (SlamKit). Sequence: raw 50 Hz units (the paper, ZeroSpeech 2021) or "
             f"deduplicated (GSLM, SlamKit); the default here is {'dedup' if DEFAULT_DEDUP else 'raw'}. Perplexity "
             "per unit on the test utterances, end of sentence included (not comparable across sequences). Topline: "
             f"the same LM on the gold 50 Hz phone labels (K = {phones['vocab']}). Baseline: no LM, the shorter item "
             "wins (ties count one half). Paper (LibriSpeech, 100k updates, raw units): sWUGGY all / sBLIMP 64.26 / "
             "54.87 on HuBERT L11 units, 68.85 / 56.17 fine-tuned L12 with centroid init, 73.4 logits (L13), gold "
             "phones 81.6.",
    )
    diff_rows = [[label, *[pct(v[0], v[1:] or None, signed=True) if (v := d.get(k)) else "n/a"
                           for k in ("lexical", "lexical_mean", "syntactic", "syntactic_mean")]]
                 for label, d in differences.items()]
    diff_table = Table(
        title="Paired differences between LMs (points; second minus first)",
        headers=["comparison", "sWUGGY sum", "sWUGGY mean", "sBLIMP sum", "sBLIMP mean"],
        rows=diff_rows,
        note="Paired percentile bootstrap over pair ids (1000 resamples): each resample recomputes both accuracies on "
             "the same ids, so an interval that excludes 0 is a difference the pair sets can tell apart.",
    )
    consistency_table = Table(
        title="What the units of the lexical pairs carry: the voice or the phone",
        headers=["units", "one item, two test voices", "word vs its non-word, one voice", "LM sWUGGY sum %"],
        rows=[[name(u), f"{c['across_voices']:.3f}", f"{c['word_vs_nonword']:.3f}",
               pct(metrics.get(LMRow(u, "centroids" if u in ("base", "finetuned") else "random",
                                      DEFAULT_DEDUP).key, {}).get("lexical"))] for u, c in consistency.items()],
        note=f"Mean edit distance between {'deduplicated ' if DEFAULT_DEDUP else ''}unit sequences, divided by the "
             "longer one's length. A word and its non-word differ in one phone; an LM can prefer the word only when "
             "the units of one item change less from voice to voice than from word to non-word.",
    )
    sample = " ".join(map(str, continuations[0][:40])) if continuations else ""
    size = jobs[chosen]["size"]
    trained = sorted({(r.units, r.dedup) for r in rows})
    text = (
        f"LSTM LMs ({size.layers} x {size.hidden}, embedding {size.embed}; the paper's is "
        f"3 x 1024, embedding 200) trained with fairseq-train on "
        + ", ".join(f"{name(u)} ({'dedup' if d else 'raw'}: K = {vocab[u]}, "
                    f"{metas[(u, d)]['splits']['train']['units']} train units)" for u, d in trained)
        + ". Centroid init: the embedding row of unit k from k-means centroid k (pca: fixed PCA to the embedding "
        "size; project: centroid-size table + learned projection). Continuation (fairseq-generate, top-k 20, "
        f"temperature 0.8) of a {PROMPT_FRAMES}-frame test prompt by the {chosen.key} LM: `{sample} ...`"
    )
    aliases = {f"{r.units}/{r.init}": metrics[r.key] for r in rows if r.dedup == DEFAULT_DEDUP}
    return StageResult(
        name="ulm", text=text, tables=[table, diff_table, consistency_table], plots=[_plot(metrics, ordered, out)],
        metrics={"rows": metrics, **aliases, "dedup_default": DEFAULT_DEDUP, "differences": differences,
                 "consistency": consistency,
                 "length": _flat({"sum": length[DEFAULT_DEDUP]}),
                 "length_other": _flat({"sum": length[not DEFAULT_DEDUP]})},
    )


__all__ = ["DEFAULT_DEDUP", "LMRow", "LMSize", "OTHER_ROWS", "ROWS", "run"]
