"""Demo stage: unit LMs on base and fine-tuned units, with and without centroid initialisation.

For each unit set (``ctx.artifacts["units"]``: ``base``, ``finetuned``) the units are binarized
(``spokenlm lm-data``), then LSTM LMs are trained with the real ``fairseq-train`` (random vs
k-means-centroid initialised embeddings; the full demo skips base units with random init,
``FULL.skip``), and each is evaluated: lexical (sWUGGY-like) and
syntactic (sBLIMP-like) accuracy on the synthetic minimal pairs, and test perplexity. The LM of
the paper's best setting (fine-tuned units, centroid init) continues a few test prompts with
``fairseq-generate``; ``ctx.artifacts["ulm"]`` hands them on (``prompts``, ``continuations``:
``.km`` files, one line per prompt).

Baseline and topline rows of the same table: the length-only scorer (score = minus the number of
units, no LM; ``spokenlm lm-score --scorer length``) and an LM trained with the same recipe on the
gold 50 Hz phone labels as units (``spokenlm phone-units``; the paper's phoneme topline). Every
sWUGGY / sBLIMP accuracy is given with its 95 % bootstrap interval over pair ids
(:mod:`spokenlm_plugin.ulm.discrimination`).

The LMs are the paper's LSTM scaled down to fit the demo's CPU budget (the paper's is 3 x 1024,
embedding 200, 100k updates of 163840 tokens): 2 layers of 256, embedding 64, five
epochs of the demo corpus (one layer of 64 and a few updates in ``--quick``); the optimiser is
the ZeroSpeech 2021 baseline's (adam (0.9, 0.98), inverse-sqrt schedule, weight decay 0.01,
dropout 0.1) with a higher peak learning rate and a short warm-up for so few updates.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..core.errors import SpokenLMError
from ..core.io import read_manifest
from ..core.km import read_km, write_km
from ..core.runtime import torch_threads
from ..core.tools import run_tool
from ..ulm.data import make_lm_dataset
from ..ulm.generate import continue_units
from ..ulm.discrimination import lexical_accuracy, syntactic_accuracy
from ..ulm.score import load_unit_lm, sequence_logprobs, unit_count_scores, unit_indices
from ..units.phone_units import write_phone_units
from ..units.quality import read_phone_dict
from .context import DemoContext, StageResult, Table

UNIT_SETS = ("base", "finetuned")
INITS = ("random", "centroids")


@dataclass(frozen=True)
class LMSize:
    """The demo LM and its training budget."""

    embed: int
    hidden: int
    layers: int
    tokens_per_sample: int
    max_tokens: int
    epochs: float
    min_updates: int
    lr: float
    warmup: int
    #: (unit set, init) pairs not trained: base units with random embeddings answer neither of the
    #: paper's questions (fine-tuned vs base units: both centroid-initialised; centroid vs random
    #: init: on fine-tuned units), and four LMs train in two rounds of two cores where five take three.
    skip: tuple[tuple[str, str], ...] = ()


#: Wide batches of short samples: fairseq's LSTM steps through time in Python, so the cost of an
#: update grows with the sample length far more than with the number of samples.
#: Epochs measured on the gold-phone topline (demo corpus, 200 / 100 pair ids): 150 updates (8
#: epochs) gave sWUGGY / sBLIMP 66.0 / 66.0 %, 300 updates 67.8 / 66.0 %, 7 epochs 64.0 / 61.5 %: the
#: first few epochs buy most of it; 3 epochs (the old recipe) left every LM near chance. 5 epochs
#: keep the demo within its 15 minutes (one LM: ~80 s on one core).
FULL = LMSize(embed=64, hidden=256, layers=2, tokens_per_sample=128, max_tokens=8192, epochs=5.0, min_updates=30,
              lr=3e-3, warmup=10, skip=(("base", "random"),))
QUICK = LMSize(embed=16, hidden=64, layers=1, tokens_per_sample=128, max_tokens=2048, epochs=1.0, min_updates=5,
               lr=3e-3, warmup=2)
#: Prompts for the continuation: the first PROMPT_UNITS units (0.5 s at 50 Hz) of a few test utterances.
PROMPT_UNITS, N_PROMPTS, NEW_UNITS = 25, 3, 100


def _train_lm(data: Path, save: Path, *, size: LMSize, centroids: Path | None, mode: str, updates: int) -> Path:
    args = [
        str(data), "--user-dir", str(Path(__file__).resolve().parents[1]),
        "--task", "language_modeling", "--arch", "unit_lstm_lm_small",
        "--decoder-embed-dim", str(size.embed), "--decoder-hidden-size", str(size.hidden),
        "--decoder-out-embed-dim", str(size.embed), "--decoder-layers", str(size.layers),
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--clip-norm", "0.0",
        "--lr-scheduler", "inverse_sqrt", "--lr", str(size.lr), "--warmup-updates", str(size.warmup),
        "--warmup-init-lr", "1e-07", "--dropout", "0.1", "--weight-decay", "0.01",
        "--sample-break-mode", "none", "--tokens-per-sample", str(size.tokens_per_sample),
        "--max-tokens", str(size.max_tokens), "--max-update", str(updates),
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


def _pair_accuracies(info: dict[str, Any], pairs: Path | None, score: Callable[[list[list[int]]], Iterable[float]],
                     *, vocab_size: int | None = None) -> dict[str, Any]:
    """sWUGGY / sBLIMP accuracies (and 95 % bootstrap intervals) of ``score`` on the pair sets' units."""
    metrics: dict[str, Any] = {"lexical": None, "lexical_ci": None, "lexical_invocab": None,
                               "lexical_invocab_ci": None, "syntactic": None, "syntactic_ci": None}
    for kind in ("lexical", "syntactic"):
        km = _pairs_km(info, kind)
        if pairs is None or km is None:
            continue
        ids = read_manifest(pairs / "manifests" / f"{kind}.tsv").utt_ids
        rows = read_km(km, vocab_size=vocab_size, allow_empty=False)
        if len(rows) != len(ids):
            raise SpokenLMError(f"demo ulm: {km} has {len(rows)} lines, its manifest {len(ids)} rows")
        scores = dict(zip(ids, [float(v) for v in score(rows)]))
        if kind == "lexical":
            lex = lexical_accuracy(pairs / "lexical" / "gold.csv", scores)
            metrics["lexical"], metrics["lexical_invocab"] = lex.all, lex.in_vocab
            metrics["lexical_ci"], metrics["lexical_invocab_ci"] = lex.all_ci, lex.in_vocab_ci
        else:
            syn = syntactic_accuracy(pairs / "syntactic" / "gold.csv", scores)
            metrics["syntactic"], metrics["syntactic_ci"] = syn.all, syn.all_ci
    return metrics


def _evaluate(ckpt: Path, info: dict[str, Any], pairs: Path | None) -> dict[str, Any]:
    model, task = load_unit_lm(ckpt)
    k = len(unit_indices(task.source_dictionary))
    test = read_km(Path(info["km_dir"]) / "test.km", vocab_size=k, allow_empty=False)
    sums, counts = sequence_logprobs(model, task.source_dictionary, test)
    metrics: dict[str, Any] = {"ppl": math.exp(-sums.sum() / counts.sum())}
    metrics |= _pair_accuracies(info, pairs, lambda rows: sequence_logprobs(model, task.source_dictionary, rows)[0],
                                vocab_size=k)
    return metrics


def _phone_units(corpus: Path, pairs: Path | None, out: Path) -> dict[str, Any]:
    """Gold 50 Hz phone labels as units (ids from the corpus' dict.phn.txt) for every split and pair set."""
    km_dir, dict_path = out / "km", corpus / "labels" / "dict.phn.txt"
    labels = {s: corpus / "labels" / f"{s}.phn" for s in ("train", "valid", "test")}
    if pairs is not None:
        labels |= {t: pairs / "labels" / f"{t}.phn" for t in ("lexical", "syntactic")
                   if (pairs / "labels" / f"{t}.phn").is_file()}
    for name, path in labels.items():
        write_phone_units(path, dict_path, km_dir / f"{name}.km")
    return {"km_dir": km_dir, "pairs_km_dir": km_dir, "vocab": len(read_phone_dict(dict_path))}


def _plot(results: dict[tuple[str, str], dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, (metric, title) in zip(axes, [("lexical", "lexical accuracy (%)"), ("syntactic", "syntactic accuracy (%)"),
                                          ("ppl", "test perplexity")]):
        values = [results[k][metric] for k in keys]
        values = [np.nan if v is None else (100 * v if metric != "ppl" else v) for v in values]
        colors = ["tab:blue" if init == "random" else "tab:orange" for _, init in keys]
        ax.bar(range(len(keys)), values, color=colors)
        ax.set_xticks(range(len(keys)), [f"{u}\n{i}" for u, i in keys], fontsize=8)
        ax.set_title(title, fontsize=10)
        if metric != "ppl":
            ax.axhline(50, color="0.5", lw=0.8, ls="--")
    fig.tight_layout()
    path = out / "ulm_metrics.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(v: float | None, ci: Sequence[float] | None = None) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}" + ("" if ci is None else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]")


def run(ctx: DemoContext) -> StageResult:
    size = QUICK if ctx.quick else FULL
    out = ctx.stage_dir("ulm")
    units = ctx.artifacts["units"]
    pairs = Path(ctx.artifacts["pairs"]) if ctx.artifacts.get("pairs") else None
    names = [n for n in UNIT_SETS if n in units]
    if not names:
        raise SpokenLMError(f"demo ulm: no unit set among {UNIT_SETS} in the units stage's artifacts {list(units)}")

    # 1. units -> binarized LM datasets with fixed dictionaries (K = number of centroids)
    vocab = {n: int(np.load(units[n]["centroids"], mmap_mode="r").shape[0]) for n in names}
    with ThreadPoolExecutor(max_workers=max(1, ctx.jobs)) as pool:
        metas = dict(zip(names, pool.map(
            lambda n: make_lm_dataset(units[n]["km_dir"], out / n / "data", vocab_size=vocab[n]), names)))
    # the phoneme topline: gold phone labels as units, binarized the same way
    phones = _phone_units(Path(ctx.artifacts["corpus"]), pairs, out / "phones")
    phones_meta = make_lm_dataset(phones["km_dir"], out / "phones" / "data", vocab_size=phones["vocab"])

    # 2. the LMs: unit set x initialisation (less size.skip), trained in parallel (one core each)
    # PCA needs E <= min(K, D); otherwise the centroid-size table + learned projection.
    modes = {n: "pca" if size.embed <= min(np.load(units[n]["centroids"], mmap_mode="r").shape) else "project"
             for n in names}
    updates = {n: max(size.min_updates, round(size.epochs * metas[n]["splits"]["train"]["units"] / size.max_tokens))
               for n in names}
    jobs = [((n, init), dict(data=out / n / "data", save=out / n / f"lm_{init}", size=size, mode=modes[n],
                             centroids=Path(units[n]["centroids"]) if init == "centroids" else None,
                             updates=updates[n]))
            for n in names for init in INITS if (n, init) not in size.skip]
    # the same recipe on the gold phones (random init: phones have no centroids)
    phones["updates"] = max(size.min_updates, round(size.epochs * phones_meta["splits"]["train"]["units"]
                                                    / size.max_tokens))
    jobs.append((("phones", "random"), dict(data=out / "phones" / "data", save=out / "phones" / "lm_random", size=size,
                                            mode="pca", centroids=None, updates=phones["updates"])))
    ctx.log(f"[ulm] training {len(jobs)} LMs with fairseq-train ({ctx.jobs} at a time)")
    with ThreadPoolExecutor(max_workers=max(1, ctx.jobs)) as pool:
        ckpts = dict(zip([key for key, _ in jobs], pool.map(lambda job: _train_lm(**job[1]), jobs)))

    # 3. one continuation with fairseq-generate (in the background, while the LMs are evaluated)
    # from the paper's best configuration: fine-tuned units, centroid-initialised embeddings
    chosen = (names[-1], "centroids")
    test_rows = read_km(Path(units[chosen[0]]["km_dir"]) / "test.km", vocab_size=vocab[chosen[0]], allow_empty=False)
    prompts_km, continuations_km = out / "prompts.km", out / "continuations.km"
    write_km(prompts_km, [r[:PROMPT_UNITS] for r in test_rows[:N_PROMPTS]])
    ctx.log("[ulm] sampling continuations with fairseq-generate; scoring test utterances and minimal pairs")
    with ThreadPoolExecutor(max_workers=1) as pool:
        # data= gives the dictionary, so this thread loads no checkpoint (fairseq / hydra globals).
        generation = pool.submit(continue_units, ckpts[chosen], prompts_km, continuations_km,
                                 data=out / chosen[0] / "data", max_new=NEW_UNITS, min_new=NEW_UNITS // 2,
                                 top_k=20, temperature=0.8, seed=1)
        # 4. evaluation (one thread: small LMs, and a busy CPU makes torch's thread pool spin)
        with torch_threads(1):
            infos = {**units, "phones": phones}
            results = {key: _evaluate(ckpt, infos[key[0]], pairs) for key, ckpt in ckpts.items()}
            # the length-only baseline: score = -(number of units); non-deduplicated units of every set
            # have one unit per 50 Hz frame, so any set gives the same scores
            length = _pair_accuracies(units[names[0]], pairs, unit_count_scores)
        continuations = generation.result()
    ctx.artifacts["ulm"] = {"checkpoint": ckpts[chosen], "units": chosen[0], "prompts": prompts_km,
                            "continuations": continuations_km}

    def row(units_name: str, init: str, m: dict[str, Any]) -> list[Any]:
        ppl = "n/a" if m.get("ppl") is None else round(m["ppl"], 2)
        return [units_name, init, _pct(m["lexical"], m["lexical_ci"]),
                _pct(m["lexical_invocab"], m["lexical_invocab_ci"]), _pct(m["syntactic"], m["syntactic_ci"]), ppl]

    table = Table(
        title="Unit LMs: units x embedding initialisation",
        headers=["units", "init", "sWUGGY all %", "sWUGGY in-vocab %", "sBLIMP %", "test ppl"],
        rows=[row("gold phones (topline)" if u == "phones" else u,
                  init if init == "random" else f"centroids ({modes[u]})", m)
              for (u, init), m in results.items()]
        + [row("any (baseline)", "no LM: length only", length)],
        note="Accuracy on the synthetic minimal pairs (chance 50 %) with its 95 % bootstrap interval over pair ids "
             "[low, high] (1000 resamples); perplexity per unit on the test utterances, end of sentence included. "
             "Topline: the same LM on the gold 50 Hz phone labels as units (K = "
             f"{phones['vocab']}). Baseline: no LM, the shorter item of a pair wins (score = minus the number of "
             "units, i.e. of 50 Hz frames; ties count one half). Paper (LibriSpeech, 100k updates): sWUGGY all / "
             "in-vocab / sBLIMP 64.26 / 70.87 / 54.87 on HuBERT L11 units, 68.85 / 78.66 / 56.17 on fine-tuned L12 "
             "units with centroid init.",
    )
    sample = " ".join(map(str, continuations[0][:40]))
    text = (
        f"LSTM LMs ({size.layers} x {size.hidden}, embedding {size.embed}; the paper's is 3 x 1024, embedding 200) "
        f"trained with fairseq-train ({size.max_tokens} tokens per update) on "
        f"{', '.join(f'{n} units (K = {vocab[n]}, {updates[n]} updates)' for n in names)}, non-deduplicated, "
        f"and on gold phones (K = {phones['vocab']}, {phones['updates']} updates). Centroid init: the "
        f"embedding row of unit k from k-means centroid k (pca: fixed PCA to the embedding size; project: "
        f"centroid-size table + learned projection). Continuation (fairseq-generate, top-k 20, temperature 0.8) "
        f"of a {PROMPT_UNITS}-unit test prompt by the {chosen[0]} / {chosen[1]} LM: `{sample} ...`"
    )
    return StageResult(
        name="ulm", text=text, tables=[table], plots=[_plot(results, out)],
        metrics={**{f"{u}/{i}": m for (u, i), m in results.items()}, "length": length},
    )
