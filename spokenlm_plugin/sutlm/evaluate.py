"""``spokenlm sutlm-eval``: CRA in four conditions, PELM and zero-shot cross-modal transfer of a joint LM.

Items are held-out paired utterances (``aligned/{split}.jsonl`` from ``spokenlm sutlm-data``) of at
least two words, cut at the word boundary ``floor(n / 2)``: the first half is the prompt, the rest
the continuation. Condition ``u2t`` renders the prompt as units and the continuation as text, etc.;
when the modality switches, the continuation's marker belongs to the context (it is given, not
scored), so every condition scores content tokens only. CRA (:mod:`.metrics`) uses candidate sets
of ``--candidates`` consecutive items (chance = 1 / C); ``--max-items`` caps the items.

PELM: for ``u2t`` and ``t2t``, the joint LM samples a text continuation of each prompt
(:mod:`.generate`); an external text LM (a fairseq ``transformer_lm`` trained with the
``language_modeling`` task on the text-only corpus, never on the evaluated transcripts: the
``textlm`` folder of ``sutlm-data``) scores it after the prompt's transcript; PELM =
``exp(-sum log p / tokens)`` over the continuations' text pieces. Beside it: the same perplexity
of the true continuations (reference), the prompt-copy rate and distinct-1 / distinct-2, and the
number of empty continuations (excluded).

``--zero-shot``: a sentence classifier (WordNet part of speech or lexname of each sentence) on the
LM's mean-pooled hidden states, trained on the train split in one modality and tested on the
items in each (:mod:`.transfer`), with chance and majority baselines.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.errors import ConfigError
from ..core.io import atomic_write
from ..core.runtime import torch_threads
from .align import AlignedUtterance
from .data import read_aligned
from .generate import prompt_tokens, sample_continuations
from .metrics import bootstrap_ci, copy_rate, distinct_n, retrieved
from .score import continuation_logprobs, indices, load_lm
from .sequences import Renderer
from .tokens import Modality, Tokenizer, decode_text
from .transfer import sentence_labels, zero_shot

CONDITIONS: dict[str, tuple[Modality, Modality]] = {
    "u2u": ("speech", "speech"), "u2t": ("speech", "text"), "t2u": ("text", "speech"), "t2t": ("text", "text"),
}


@dataclass
class CRAResult:
    condition: str
    accuracy: float
    ci: tuple[float, float] | None
    chance: float
    items: int
    candidates: int
    #: Per continuation: 1 retrieved, 0 not, 1/k on a k-way tie (item order: the items file's), so two
    #: models scored on the same items compare pairwise.
    hits: list[float] = field(default_factory=list, repr=False)


@dataclass
class PELMResult:
    condition: str
    pelm: float | None
    reference_ppl: float | None
    copy_rate: float | None
    distinct_1: float | None
    distinct_2: float | None
    prompts: int
    empty: int
    sample: str


def eval_items(utts: Sequence[AlignedUtterance], *, max_items: int | None) -> list[AlignedUtterance]:
    items = [u for u in utts if len(u.words) >= 2]
    return items[:max_items] if max_items is not None else items


def split_pair(renderer: Renderer, utt: AlignedUtterance, condition: str, *, where: str = "") -> tuple[list[str], list[str]] | None:
    """Context (prompt + switch marker) and scored continuation tokens; None if a part renders empty."""
    src, dst = CONDITIONS[condition]
    cut = len(utt.words) // 2
    prompt = renderer.segment(utt, 0, cut, src, where=where)[1]
    cont = renderer.segment(utt, cut, len(utt.words), dst, where=where)[1]
    if not prompt or not cont:
        return None
    return prompt_tokens(src, prompt, to=dst), cont


def cra(model, dictionary, renderer: Renderer, utts: Sequence[AlignedUtterance], *, condition: str,
        candidates: int = 10, resamples: int = 1000, seed: int = 0, where: str = "") -> CRAResult:
    """Context retrieval accuracy of one condition over candidate sets of ``candidates`` items."""
    pairs = [p for p in (split_pair(renderer, u, condition, where=where) for u in utts) if p is not None]
    c = min(candidates, len(pairs))
    if c < 2:
        raise ConfigError(f"{where}: {len(pairs)} usable items for {condition}: CRA needs at least 2")
    pairs = pairs[: len(pairs) - len(pairs) % c]
    ctx, cont, blocks = [], [], []
    for b in range(0, len(pairs), c):
        block = pairs[b:b + c]
        for i in range(c):
            for j in range(c):
                ctx.append(indices(dictionary, block[i][0], where=where))
                cont.append(indices(dictionary, block[j][1], where=where))
        blocks.append(b)
    scores = continuation_logprobs(model, dictionary, ctx, cont).reshape(len(blocks), c, c)
    hits = np.concatenate([retrieved(s) for s in scores])
    return CRAResult(condition, float(hits.mean()), bootstrap_ci(hits, resamples=resamples, seed=seed), 1.0 / c,
                     len(hits), c, hits.tolist())


def _ppl(text_model, text_task, text_tok: Tokenizer, prompts: Sequence[Sequence[str]],
         conts: Sequence[Sequence[str]]) -> float | None:
    d = text_task.source_dictionary
    ctx = [indices(d, text_tok.encode_words(p), where="external LM") for p in prompts]
    cont = [indices(d, text_tok.encode_words(c), where="external LM") for c in conts]
    n = sum(map(len, cont))
    if n == 0:
        return None
    return math.exp(-continuation_logprobs(text_model, d, ctx, cont).sum() / n)


def pelm(model, task, renderer: Renderer, utts: Sequence[AlignedUtterance], *, condition: str, text_model, text_task,
         max_new: int = 30, top_k: int = 20, temperature: float = 0.8, seed: int = 1, where: str = "") -> PELMResult:
    """PELM of text continuations sampled from prompts of ``condition`` (u2t or t2t)."""
    src, dst = CONDITIONS[condition]
    if dst != "text":
        raise ConfigError(f"PELM scores text continuations: condition {condition} continues in speech")
    d = task.source_dictionary
    prompts, words, refs = [], [], []
    for u in utts:
        cut = len(u.words) // 2
        toks = renderer.segment(u, 0, cut, src, where=where)[1]
        if toks:
            prompts.append(indices(d, prompt_tokens(src, toks, to=dst), where=where))
            words.append(list(u.words[:cut]))
            refs.append(list(u.words[cut:]))
    conts = [decode_text(c) for c in sample_continuations(model, task, prompts, to="text", max_new=max_new,
                                                           min_new=1, top_k=top_k, temperature=temperature, seed=seed)]
    kept = [(p, c) for p, c in zip(words, conts) if c]
    text_tok = renderer.text
    value = _ppl(text_model, text_task, text_tok, [p for p, _ in kept], [c for _, c in kept]) if kept else None
    reference = _ppl(text_model, text_task, text_tok, words, refs)
    sample = f"{' '.join(words[0])} || {' '.join(conts[0])}" if conts else ""
    return PELMResult(condition, value, reference, copy_rate([p for p, _ in kept], [c for _, c in kept]),
                      distinct_n([c for _, c in kept], n=1), distinct_n([c for _, c in kept], n=2), len(prompts),
                      len(prompts) - len(kept), sample)


def renderer_for(data: Path, *, text_model: Path | None = None) -> Renderer:
    unit_model = data / "unit.model"
    return Renderer(units=Tokenizer(unit_model if unit_model.is_file() else None, kind="units"),
                    text=Tokenizer(text_model or data.parent / "text.model", kind="text"))


def fmt_pct(v: float | None, ci: Sequence[float] | None = None) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}" + ("" if ci is None else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]")


# ----------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, help="joint LM checkpoint (fairseq-train)")
    parser.add_argument("--data", type=Path, required=True, help="its data folder (units-raw / units-spN of sutlm-data)")
    parser.add_argument("--items", type=Path, required=True, help="held-out utterances: aligned/test.jsonl of sutlm-data")
    parser.add_argument("--text-model", type=Path, default=None, help="text SentencePiece (default: DATA/../text.model)")
    parser.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS),
                        help="CRA conditions (default: all four)")
    parser.add_argument("--candidates", type=int, default=10, help="CRA candidate set size (chance = 1/C; default 10)")
    parser.add_argument("--max-items", type=int, default=None, help="use at most this many items")
    parser.add_argument("--text-lm", type=Path, default=None, help="external text LM checkpoint: also compute PELM")
    parser.add_argument("--text-lm-data", type=Path, default=None, help="its data folder (default: DATA/../textlm)")
    parser.add_argument("--pelm-prompts", type=int, default=20, help="prompts per PELM condition (default 20)")
    parser.add_argument("--ci-resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--zero-shot", action="store_true",
                        help="also zero-shot cross-modal transfer: a classifier trained on text, tested on units and back")
    parser.add_argument("--zero-shot-train", type=Path, default=None,
                        help="its training utterances (default: train.jsonl beside --items)")
    parser.add_argument("--zero-shot-label", choices=["pos", "lexname"], default="pos",
                        help="sentence label: WordNet part of speech (default) or lexicographer file of its synset")
    parser.add_argument("--zero-shot-min-count", type=int, default=5, help="drop classes with fewer training items")
    parser.add_argument("--wordnet", type=Path, default=None, help="WordNet 3.0 folder (default: /usr/share/wordnet)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")


def run(args: argparse.Namespace) -> int:
    if args.candidates < 2:
        raise ConfigError(f"--candidates {args.candidates}: must be >= 2")
    for option, value, least in (("--max-items", args.max_items, 2), ("--ci-resamples", args.ci_resamples, 0),
                                 ("--pelm-prompts", args.pelm_prompts, 1)):
        if value is not None and value < least:
            raise ConfigError(f"{option} {value}: must be >= {least}")
    renderer = renderer_for(args.data, text_model=args.text_model)
    utts = eval_items(read_aligned(args.items), max_items=args.max_items)
    results: dict = {"cra": [], "pelm": [], "zero_shot": None}
    with torch_threads(1):
        model, task = load_lm(args.checkpoint, data=args.data)
        if args.text_lm is not None:  # loaded before the CRA runs: a bad text LM fails at once
            text_model, text_task = load_lm(args.text_lm, data=args.text_lm_data or args.data.parent / "textlm",
                                            data_option="--text-lm-data")
        for cond in args.conditions:
            r = cra(model, task.source_dictionary, renderer, utts, condition=cond, candidates=args.candidates,
                    resamples=args.ci_resamples, where=str(args.items))
            results["cra"].append(asdict(r))
            print(f"CRA {cond}: {fmt_pct(r.accuracy, r.ci)} %  (chance {100 * r.chance:.1f} %, {r.items} items, "
                  f"candidate sets of {r.candidates})")
        if args.text_lm is not None:
            for cond in ("u2t", "t2t"):
                p = pelm(model, task, renderer, utts[: args.pelm_prompts], condition=cond, text_model=text_model,
                         text_task=text_task, where=str(args.items))
                results["pelm"].append(asdict(p))
                print(f"PELM {cond}: {p.pelm if p.pelm is None else round(p.pelm, 1)} (true continuations "
                      f"{p.reference_ppl and round(p.reference_ppl, 1)}; copy rate {fmt_pct(p.copy_rate)} %, distinct-1/2 "
                      f"{fmt_pct(p.distinct_1)} / {fmt_pct(p.distinct_2)} %, {p.empty}/{p.prompts} empty)")
        if args.zero_shot:
            train_items = args.zero_shot_train or args.items.parent / "train.jsonl"
            z = zero_shot(model, task.source_dictionary, renderer, read_aligned(train_items), read_aligned(args.items),
                          labels=sentence_labels(wordnet=args.wordnet, label=args.zero_shot_label),
                          label=args.zero_shot_label, min_count=args.zero_shot_min_count,
                          resamples=args.ci_resamples, where=str(args.items))
            results["zero_shot"] = asdict(z)
            print(f"zero-shot {z.label} ({len(z.classes)} classes, {z.train_items} train / {z.test_items} test "
                  f"sentences; chance {fmt_pct(z.chance)} %, majority {fmt_pct(z.majority)} %): "
                  + ", ".join(f"{r.name} {fmt_pct(r.accuracy, r.ci)} %" for r in z.results))
    if args.json is not None:
        with atomic_write(args.json) as f:
            json.dump(results, f, indent=1)
    return 0
