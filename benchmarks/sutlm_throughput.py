"""Joint speech-unit / text LM (SUTLM): training tokens/s vs a plain unit LM, and unit SentencePiece speed.

Training: each shape is fairseq's ``transformer_lm`` under the plugin's architectures
(``sutlm_transformer_lm_tiny`` narrowed to 64 / 256 as the demo trains it; the paper's
``sutlm_transformer_lm_350m``), built by ``TransformerLanguageModel.build_model`` over a joint
dictionary (the two markers, unit pieces, text pieces) and, as the baseline, over the unit pieces
alone (a plain unit LM of the same layers): the two differ only by the embedding / softmax size.
Full training steps (forward, cross-entropy, backward, Adam) on random tokens of the dictionary, in
batches of ``--batch`` x ``--tokens-per-sample``, timed by ``benchmarks/timing.py``; the 350M shape
runs ``--big-steps`` steps at batch ``--big-batch``. GPU rows are added when torch sees a GPU.

SentencePiece: deduplicated unit utterances (a seeded random walk over ``--units`` units that
favours a few successors per unit, so SentencePiece finds recurring runs) as characters
(:mod:`spokenlm_plugin.sutlm.tokens`), a unigram model of ``--sp-vocab`` pieces trained on them;
units/s of (a) the plain-Python raw-unit path (units -> characters -> one token per unit,
``Tokenizer(None)``), (b) the project's ``Tokenizer.encode_units`` (SentencePiece + unknown check
+ pieces as strings), (c) SentencePiece's batched C++ ``encode`` to ids (the floor of (b)).

    OMP_NUM_THREADS=1 python benchmarks/sutlm_throughput.py --threads 1 [--no-big]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from timing import lm_tokens_per_second  # benchmarks/timing.py, beside this script

import spokenlm_plugin  # noqa: F401  (registers the sutlm architectures)
from fairseq.data import Dictionary
from fairseq.models.transformer_lm import TransformerLanguageModel
from fairseq.tasks.language_modeling import LanguageModelingTask
from spokenlm_plugin.sutlm.models import sutlm_transformer_lm_350m, sutlm_transformer_lm_tiny
from spokenlm_plugin.sutlm.tokens import MARKERS, Tokenizer, train_sentencepiece, unit_char, units_to_string


@dataclass(frozen=True)
class Shape:
    name: str
    arch: Callable[[argparse.Namespace], None]  # a fairseq architecture function: fills in the defaults
    overrides: dict
    unit_vocab: int
    text_vocab: int


TINY = Shape("demo tiny (2 x 64, ffn 256)", sutlm_transformer_lm_tiny,
             dict(decoder_embed_dim=64, decoder_ffn_embed_dim=256), unit_vocab=300, text_vocab=1000)
BIG = Shape("paper 350M (24 x 1024, ffn 4096)", sutlm_transformer_lm_350m, {}, unit_vocab=10000, text_vocab=10000)


def build(shape: Shape, *, joint: bool, tokens_per_sample: int) -> tuple[torch.nn.Module, Dictionary]:
    """The shape's LM over a joint (markers + units + text) or a unit-only dictionary."""
    dictionary = Dictionary()
    symbols = [unit_char(u) for u in range(shape.unit_vocab)]
    if joint:
        symbols = [*MARKERS, *symbols, *(f"\u2581w{i}" for i in range(shape.text_vocab))]
    for s in symbols:
        dictionary.add_symbol(s)
    task = LanguageModelingTask(argparse.Namespace(data=None), dictionary)
    args = argparse.Namespace(tokens_per_sample=tokens_per_sample, max_target_positions=tokens_per_sample,
                              add_bos_token=False, **shape.overrides)
    shape.arch(args)
    return TransformerLanguageModel.build_model(args, task), dictionary


def train_tps(shape: Shape, *, joint: bool, device: str, tokens_per_sample: int, batch: int, steps: int,
              warmup: int) -> tuple[float, float]:
    """(training tokens/s, parameters in millions)."""
    torch.manual_seed(0)
    model, dictionary = build(shape, joint=joint, tokens_per_sample=tokens_per_sample)
    model.to(device).train()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    tps = lm_tokens_per_second(model, low=dictionary.nspecial, high=len(dictionary), device=device,
                               tokens_per_sample=tokens_per_sample, batch=batch, steps=steps, warmup=warmup, lr=3e-4)
    return tps, params


def unit_utterances(*, n: int, units: int, length: int, seed: int) -> list[list[int]]:
    """Deduplicated pseudo-utterances: each unit moves to one of 3 favoured successors 80 % of the time."""
    rng = random.Random(seed)
    successors = [[rng.randrange(units) for _ in range(3)] for _ in range(units)]
    out = []
    for _ in range(n):
        u = rng.randrange(units)
        seq: list[int] = []
        while len(seq) < length:
            u = rng.choice(successors[u]) if rng.random() < 0.8 else rng.randrange(units)
            if not seq or seq[-1] != u:
                seq.append(u)
        out.append(seq)
    return out


def best_rate(fn, *, units: int, repeats: int) -> float:
    """Units per second of the fastest of ``repeats`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return units / best


def sp_rows(*, units: int, sp_vocab: int, utterances: int, length: int, repeats: int) -> list[tuple[str, float]]:
    """(method, units/s) of the three encoding paths on the same utterances."""
    utts = unit_utterances(n=utterances, units=units, length=length, seed=0)
    total = sum(map(len, utts))
    with tempfile.TemporaryDirectory() as tmp:
        model = train_sentencepiece((units_to_string(u) for u in utts), Path(tmp) / "u", vocab_size=sp_vocab,
                                    kind="units")
        sp_tok, raw_tok = Tokenizer(model, kind="units"), Tokenizer(None, kind="units")
        strings = [units_to_string(u) for u in utts]
        sp = sp_tok._sp
        assert sp is not None  # the tokenizer of a SentencePiece model
        pieces = sum(len(sp_tok.encode_units(u)) for u in utts)
        rows = [
            ("plain Python: units -> characters, one token per unit (no SP)",
             best_rate(lambda: [raw_tok.encode_units(u) for u in utts], units=total, repeats=repeats)),
            (f"Tokenizer.encode_units, SP {len(sp_tok.pieces())} pieces ({total / pieces:.2f} units/piece)",
             best_rate(lambda: [sp_tok.encode_units(u) for u in utts], units=total, repeats=repeats)),
            ("SentencePiece batched encode to ids (C++ only, strings given)",
             best_rate(lambda: sp.encode(strings, out_type=int), units=total, repeats=repeats)),
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens-per-sample", type=int, default=256, help="sequence length")
    parser.add_argument("--batch", type=int, default=8, help="sequences per step (tiny shape)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (tiny shape)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--big-batch", type=int, default=1, help="sequences per step (350M shape)")
    parser.add_argument("--big-steps", type=int, default=1, help="timed steps (350M shape)")
    parser.add_argument("--no-big", action="store_true", help="skip the 350M shape (~6 GB of memory, minutes on CPU)")
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()], help="CPU thread counts")
    parser.add_argument("--units", type=int, default=100, help="k-means units of the SentencePiece utterances")
    parser.add_argument("--sp-vocab", type=int, default=1000, help="unit SentencePiece size requested")
    parser.add_argument("--sp-utterances", type=int, default=1000, help="utterances encoded")
    parser.add_argument("--sp-length", type=int, default=150, help="deduplicated units per utterance")
    parser.add_argument("--repeats", type=int, default=3, help="SentencePiece timing: best of this many")
    args = parser.parse_args()

    shapes = [TINY] + ([] if args.no_big else [BIG])
    devices = [("cpu", t) for t in args.threads] + ([("cuda", None)] if torch.cuda.is_available() else [])
    rows = []
    for device, threads in devices:
        if threads is not None:
            torch.set_num_threads(threads)
        where = f"CPU ({threads} thread{'s' if threads != 1 else ''})" if threads else torch.cuda.get_device_name()
        for shape in shapes:
            big = shape is BIG
            batch = args.big_batch if big else args.batch
            steps = args.big_steps if big else args.steps
            res = {joint: train_tps(shape, joint=joint, device=device, tokens_per_sample=args.tokens_per_sample,
                                    batch=batch, steps=steps, warmup=args.warmup) for joint in (False, True)}
            (unit_tps, unit_p), (joint_tps, joint_p) = res[False], res[True]
            rows.append((shape.name, where, batch, joint_p, unit_p, joint_tps, unit_tps))
            print(f"  {shape.name} on {where}: joint {joint_tps:,.0f}, unit-only {unit_tps:,.0f} tokens/s", flush=True)
    sp = sp_rows(units=args.units, sp_vocab=args.sp_vocab, utterances=args.sp_utterances, length=args.sp_length,
                 repeats=args.repeats)

    print()
    print(f"SUTLM training throughput, {args.tokens_per_sample} tokens per sequence; joint dictionary = 2 markers + "
          f"unit pieces + text pieces ({TINY.unit_vocab} + {TINY.text_vocab} tiny, {BIG.unit_vocab} + {BIG.text_vocab} "
          f"350M), unit LM = unit pieces only; {args.warmup} warm-up step(s)")
    print()
    print("| shape | device | batch | params joint / unit-only (M) | joint tokens/s | unit LM tokens/s | joint / unit LM |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, where, batch, jp, up, jt, ut in rows:
        print(f"| {name} | {where} | {batch} x {args.tokens_per_sample} | {jp:.1f} / {up:.1f} | {jt:,.0f} | {ut:,.0f} "
              f"| {jt / ut:.2f}x |")
    print()
    print(f"Unit SentencePiece encoding, {args.sp_utterances} utterances x {args.sp_length} deduplicated units "
          f"(K = {args.units}), best of {args.repeats}, single process")
    print()
    print("| method | units/s | vs plain Python |")
    print("|---|---:|---:|")
    for name, rate in sp:
        print(f"| {name} | {rate:,.0f} | {rate / sp[0][1]:.2f}x |")


if __name__ == "__main__":
    main()
